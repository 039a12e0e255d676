import { connect, type Socket } from 'node:net';
import { encodeFrame } from '../../src/protocol/codec.js';
import { MessageType } from '../../src/protocol/messages.js';
import { decodeUint32, encodeDispatchMessage, encodeHello, encodeUint32, MuxMessage, muxToShimDecoder, ShimMessage } from '../../src/dispatch/shim-protocol.js';

export interface FakeShimResult {
  accepted: boolean;
  lines: string[];
  /** null: the connection closed without EXIT. */
  exitCode: number | null;
}

/**
 * The shim's side of the dispatch socket in TypeScript (docs/worker-shim.md), for
 * component tests of the mux's dispatch server: HELLO, then relays what the test sends.
 */
export class FakeShim {
  readonly lines: string[] = [];
  accepted = false;
  exitCode: number | null = null;
  /** Settles at ACCEPT, or with false when the mux answered without accepting. */
  readonly acceptance: Promise<boolean>;
  /** Settles when the mux closed the connection. */
  readonly result: Promise<FakeShimResult>;
  private decoded = muxToShimDecoder();

  private constructor(private readonly socket: Socket) {
    let onAccept!: (accepted: boolean) => void;
    this.acceptance = new Promise((resolve) => (onAccept = resolve));
    this.result = new Promise((resolve) => {
      socket.on('data', (chunk: Buffer) => {
        for (const message of this.decoded.push(chunk)) {
          if (message.type === MuxMessage.Accept) {
            this.accepted = true;
            onAccept(true);
          } else if (message.type === MuxMessage.Line) this.lines.push(message.body.toString('utf8'));
          else if (message.type === MuxMessage.Exit) {
            this.exitCode = decodeUint32(message);
            onAccept(this.accepted);
          }
        }
      });
      socket.on('error', () => {});
      socket.on('close', () => {
        onAccept(this.accepted);
        resolve({ accepted: this.accepted, lines: [...this.lines], exitCode: this.exitCode });
      });
    });
  }

  static async connect(socketPath: string, env: Record<string, string>, pid = 4242): Promise<FakeShim> {
    const socket = await new Promise<Socket>((resolve, reject) => {
      const candidate = connect(socketPath);
      candidate.once('connect', () => resolve(candidate));
      candidate.once('error', reject);
    });
    const shim = new FakeShim(socket);
    shim.raw(encodeHello({ pid, env }));
    return shim;
  }

  /** Bytes as they are, for malformed input. */
  raw(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  /** Relays bytes of the listener's pipe, in DATA messages of at most `chunk` bytes. */
  data(bytes: Buffer, chunk = 1024 * 1024): void {
    for (let offset = 0; offset < bytes.length; offset += chunk) this.raw(encodeDispatchMessage(ShimMessage.Data, bytes.subarray(offset, offset + chunk)));
  }

  /** The listener's frame, relayed. */
  frame(type: MessageType, body: string | Buffer = ''): void {
    this.data(encodeFrame(type, body));
  }

  job(body: string): void {
    this.frame(MessageType.NewJobRequest, body);
  }

  eof(): void {
    this.raw(encodeDispatchMessage(ShimMessage.Eof));
  }

  signal(signal: number): void {
    this.raw(encodeDispatchMessage(ShimMessage.Signal, encodeUint32(signal)));
  }

  /** As if the shim were SIGKILLed. */
  kill(): void {
    this.socket.destroy();
  }
}
