/**
 * The worker shim's socket framing (docs/worker-shim.md), written independently of the
 * production codec so the shim's tests check the C program against the document, not
 * against code that could share its mistakes: `uint32 LE type | uint32 LE length | body`.
 */

export const ShimMessage = {
  Hello: 1,
  Data: 2,
  Eof: 3,
  Signal: 4,
  Accept: 101,
  Line: 102,
  Exit: 103,
} as const;

export const SHIM_HEADER_BYTES = 8;

/** The doc's maximum body per type; anything else is unknown. */
export const SHIM_MAX_BODY: Readonly<Record<number, number>> = {
  [ShimMessage.Hello]: 64 * 1024,
  [ShimMessage.Data]: 1024 * 1024,
  [ShimMessage.Eof]: 4096,
  [ShimMessage.Signal]: 4,
  [ShimMessage.Accept]: 0,
  [ShimMessage.Line]: 4096,
  [ShimMessage.Exit]: 4,
};

export interface ShimFrame {
  type: number;
  body: Buffer;
}

/** One message; the length is whatever `body` is (tests also build invalid ones on purpose). */
export function encodeShimMessage(type: number, body: Buffer | string = Buffer.alloc(0)): Buffer {
  const payload = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  const header = Buffer.alloc(SHIM_HEADER_BYTES);
  header.writeUInt32LE(type, 0);
  header.writeUInt32LE(payload.length, 4);
  return Buffer.concat([header, payload]);
}

export function encodeUint32(value: number): Buffer {
  const body = Buffer.alloc(4);
  body.writeUInt32LE(value, 0);
  return body;
}

/** A header alone, announcing `length` bytes (for oversized or truncated messages). */
export function encodeShimHeader(type: number, length: number): Buffer {
  const header = Buffer.alloc(SHIM_HEADER_BYTES);
  header.writeUInt32LE(type, 0);
  header.writeUInt32LE(length, 4);
  return header;
}

/**
 * Streaming decoder of shim → mux messages: feed chunks split anywhere. Throws on an
 * unknown type or a length above the type's maximum, as the doc requires of a receiver.
 * DATA bodies can be handed on without being kept (`onData`), so a 5 MB job is hashed,
 * not buffered.
 */
export class ShimMessageDecoder {
  #buffered: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): ShimFrame[] {
    this.#buffered = this.#buffered.length === 0 ? chunk : Buffer.concat([this.#buffered, chunk]);
    const frames: ShimFrame[] = [];
    while (this.#buffered.length >= SHIM_HEADER_BYTES) {
      const type = this.#buffered.readUInt32LE(0);
      const length = this.#buffered.readUInt32LE(4);
      const max = SHIM_MAX_BODY[type];
      if (max === undefined) throw new Error(`shim sent unknown message type ${type}`);
      if (length > max) throw new Error(`shim sent a type ${type} message of ${length} bytes (max ${max})`);
      if (this.#buffered.length < SHIM_HEADER_BYTES + length) break;
      frames.push({ type, body: Buffer.from(this.#buffered.subarray(SHIM_HEADER_BYTES, SHIM_HEADER_BYTES + length)) });
      this.#buffered = this.#buffered.subarray(SHIM_HEADER_BYTES + length);
    }
    return frames;
  }

  /** Bytes of an unfinished message (non-zero at close = the shim died mid-message). */
  get pending(): number {
    return this.#buffered.length;
  }
}

export interface Hello {
  version: string;
  pid: number;
  env: Record<string, string>;
  /** Every entry as sent, for checks that nothing else is in it. */
  entries: string[];
}

/** Parses a HELLO body: NUL-terminated entries, version first, then pid=, then env:NAME=VALUE. */
export function parseHello(body: Buffer): Hello {
  const text = body.toString('utf8');
  if (!text.endsWith('\0')) throw new Error('HELLO body does not end with a NUL');
  const entries = text.slice(0, -1).split('\0');
  const [version, pidEntry, ...rest] = entries;
  const pidMatch = /^pid=(\d+)$/.exec(pidEntry ?? '');
  if (version === undefined || !pidMatch) throw new Error(`HELLO does not start with a version and pid=: ${JSON.stringify(entries.slice(0, 2))}`);
  const env: Record<string, string> = {};
  for (const entry of rest) {
    const match = /^env:([^=]+)=(.*)$/s.exec(entry);
    if (!match) throw new Error(`HELLO entry is not env:NAME=VALUE: ${JSON.stringify(entry)}`);
    env[match[1] as string] = match[2] as string;
  }
  return { version, pid: Number(pidMatch[1]), env, entries };
}
