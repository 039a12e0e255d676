/**
 * The framing between the native Runner.Worker shim (src/preload/worker-shim.c) and the
 * mux's dispatch socket (docs/worker-shim.md): `uint32 LE type | uint32 LE length | body`,
 * each type with its own maximum body size. Pure: no sockets here.
 */
import { TYPE_LENGTH_HEADER_BYTES, TypeLengthReader } from '../protocol/type-length-reader.js';
import { CbactionsError } from '../util/errors.js';

export const SHIM_HEADER_BYTES = TYPE_LENGTH_HEADER_BYTES;

/** Shim → mux. */
export const ShimMessage = {
  Hello: 1,
  Data: 2,
  Eof: 3,
  Signal: 4,
} as const;

/** Mux → shim. */
export const MuxMessage = {
  Accept: 101,
  Line: 102,
  Exit: 103,
} as const;

export type ShimMessageType = (typeof ShimMessage)[keyof typeof ShimMessage];
export type MuxMessageType = (typeof MuxMessage)[keyof typeof MuxMessage];
export type DispatchMessageType = ShimMessageType | MuxMessageType;

/** The per-type maximum body, from the contract's tables. */
export const MAX_SHIM_BODY: Readonly<Record<DispatchMessageType, number>> = {
  [ShimMessage.Hello]: 64 * 1024,
  [ShimMessage.Data]: 1024 * 1024,
  [ShimMessage.Eof]: 4 * 1024,
  [ShimMessage.Signal]: 4,
  [MuxMessage.Accept]: 0,
  [MuxMessage.Line]: 4 * 1024,
  [MuxMessage.Exit]: 4,
};

/** The first HELLO entry: names the protocol and its version. */
export const SHIM_HELLO_MAGIC = 'cbactions-shim 1';

export const ShimProtocolErrorCode = {
  UnknownType: 'SHIM_UNKNOWN_MESSAGE_TYPE',
  TooLarge: 'SHIM_MESSAGE_TOO_LARGE',
  Truncated: 'SHIM_TRUNCATED_MESSAGE',
  BadBody: 'SHIM_BAD_MESSAGE',
} as const;

export interface DispatchMessage {
  type: DispatchMessageType;
  body: Buffer;
}

/** One message, header and body. Refuses a body above the type's maximum. */
export function encodeDispatchMessage(type: DispatchMessageType, body: Buffer = Buffer.alloc(0)): Buffer {
  const max = MAX_SHIM_BODY[type];
  if (body.length > max) throw new CbactionsError(ShimProtocolErrorCode.TooLarge, `a dispatch message of type ${type} has ${body.length} bytes; its limit is ${max}`);
  const message = Buffer.allocUnsafe(SHIM_HEADER_BYTES + body.length);
  message.writeUInt32LE(type, 0);
  message.writeUInt32LE(body.length, 4);
  body.copy(message, SHIM_HEADER_BYTES);
  return message;
}

export function encodeUint32(value: number): Buffer {
  const body = Buffer.allocUnsafe(4);
  body.writeUInt32LE(value, 0);
  return body;
}

/** LINE: one line of UTF-8, cut to the limit on a character boundary, newlines folded. */
export function encodeLine(text: string): Buffer {
  const max = MAX_SHIM_BODY[MuxMessage.Line];
  let body = Buffer.from(text.replace(/[\r\n]+/g, ' '), 'utf8');
  if (body.length > max) {
    // Back to the first byte of a character, so the cut leaves valid UTF-8.
    let end = max;
    while (end > 0 && ((body[end] as number) & 0xc0) === 0x80) end--;
    body = body.subarray(0, end);
  }
  return encodeDispatchMessage(MuxMessage.Line, body);
}

export function encodeExit(code: number): Buffer {
  return encodeDispatchMessage(MuxMessage.Exit, encodeUint32(code));
}

/** A uint32 body (SIGNAL, EXIT); anything but 4 bytes is malformed. */
export function decodeUint32(message: DispatchMessage): number {
  if (message.body.length !== 4) throw new CbactionsError(ShimProtocolErrorCode.BadBody, `a message of type ${message.type} must carry 4 bytes, got ${message.body.length}`);
  return message.body.readUInt32LE(0);
}

export interface ShimHello {
  pid: number;
  /** The shim's `CBACTIONS_*` environment (the listener's). */
  env: Record<string, string>;
}

/** HELLO: NUL-terminated entries, the magic first. */
export function encodeHello(hello: ShimHello): Buffer {
  const entries = [SHIM_HELLO_MAGIC, `pid=${hello.pid}`, ...Object.entries(hello.env).map(([name, value]) => `env:${name}=${value}`)];
  return encodeDispatchMessage(ShimMessage.Hello, Buffer.from(entries.map((entry) => `${entry}\0`).join(''), 'utf8'));
}

export function decodeHello(body: Buffer): ShimHello {
  const text = body.toString('utf8');
  if (!text.endsWith('\0')) throw new CbactionsError(ShimProtocolErrorCode.BadBody, 'HELLO does not end with a NUL-terminated entry');
  const [magic, ...entries] = text.slice(0, -1).split('\0');
  if (magic !== SHIM_HELLO_MAGIC) throw new CbactionsError(ShimProtocolErrorCode.BadBody, `HELLO starts with "${String(magic).slice(0, 40)}", not "${SHIM_HELLO_MAGIC}" (a shim of another version?)`);
  let pid: number | undefined;
  const env: Record<string, string> = {};
  for (const entry of entries) {
    if (entry.startsWith('pid=')) {
      const value = entry.slice(4);
      if (!/^\d{1,10}$/.test(value)) throw new CbactionsError(ShimProtocolErrorCode.BadBody, `HELLO has a bad pid entry "${value.slice(0, 20)}"`);
      pid = Number(value);
    } else if (entry.startsWith('env:')) {
      const assignment = entry.slice(4);
      const equals = assignment.indexOf('=');
      const name = equals > 0 ? assignment.slice(0, equals) : '';
      // The shim forwards every variable whose name starts with CBACTIONS_ (docs/worker-shim.md),
      // whatever follows: one oddly named variable in a listener's environment must not refuse every job.
      if (!name.startsWith('CBACTIONS_')) throw new CbactionsError(ShimProtocolErrorCode.BadBody, `HELLO has an env entry that is not a CBACTIONS_ variable ("${assignment.slice(0, 40)}")`);
      env[name] = assignment.slice(equals + 1);
    } else {
      throw new CbactionsError(ShimProtocolErrorCode.BadBody, `HELLO has an unknown entry "${entry.slice(0, 40)}"`);
    }
  }
  if (pid === undefined) throw new CbactionsError(ShimProtocolErrorCode.BadBody, 'HELLO has no pid entry');
  return { pid, env };
}

/**
 * Streaming decoder for one direction: feed chunks split anywhere, get whole messages.
 * `accepted` is the set of types this side may receive; a length above the type's maximum
 * is refused from the header alone, before any body is buffered.
 */
export class DispatchDecoder {
  readonly #reader: TypeLengthReader<DispatchMessageType>;

  constructor(accepted: readonly DispatchMessageType[]) {
    this.#reader = new TypeLengthReader((header) => readDispatchHeader(header, accepted));
  }

  push(chunk: Buffer): DispatchMessage[] {
    return this.#reader.push(chunk);
  }

  get idle(): boolean {
    return this.#reader.idle;
  }

  /** End of stream: inside a message it is an error. */
  end(): void {
    if (this.idle) return;
    throw new CbactionsError(ShimProtocolErrorCode.Truncated, `the dispatch connection closed in the middle of a message (${this.#reader.received} received)`);
  }
}

function readDispatchHeader(header: Buffer, accepted: readonly DispatchMessageType[]): { type: DispatchMessageType; length: number } {
  const type = header.readUInt32LE(0);
  const length = header.readUInt32LE(4);
  if (!(accepted as readonly number[]).includes(type)) {
    throw new CbactionsError(ShimProtocolErrorCode.UnknownType, `dispatch message of unknown type ${type} (expected ${accepted.join(', ')})`);
  }
  const known = type as DispatchMessageType;
  const max = MAX_SHIM_BODY[known];
  if (length > max) throw new CbactionsError(ShimProtocolErrorCode.TooLarge, `dispatch message of type ${type} announces ${length} bytes; its limit is ${max}`);
  return { type: known, length };
}

/** What the mux receives. */
export function shimToMuxDecoder(): DispatchDecoder {
  return new DispatchDecoder(Object.values(ShimMessage));
}

/** What a shim (or the test's fake shim) receives. */
export function muxToShimDecoder(): DispatchDecoder {
  return new DispatchDecoder(Object.values(MuxMessage));
}
