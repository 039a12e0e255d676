import { CbactionsError } from '../util/errors.js';
import type { MessageType} from './messages.js';
import { isKnownMessageType, type Frame } from './messages.js';
import { TYPE_LENGTH_HEADER_BYTES, TypeLengthReader } from './type-length-reader.js';

/** actions/runner StreamString.cs refuses bodies above this many bytes. */
export const MAX_BODY_BYTES = 50_000_000;
export const HEADER_BYTES = TYPE_LENGTH_HEADER_BYTES;

export const CodecErrorCode = {
  UnknownType: 'PIPE_UNKNOWN_MESSAGE_TYPE',
  BadLength: 'PIPE_BAD_LENGTH',
  TooLarge: 'PIPE_FRAME_TOO_LARGE',
  Truncated: 'PIPE_TRUNCATED_FRAME',
} as const;

/**
 * Encodes one frame: int32 LE type | int32 LE byte length | UTF-16LE body.
 * Byte order is written explicitly (the runner uses host order, little-endian on x64/arm64).
 */
export function encodeFrame(type: MessageType, body: string | Buffer = ''): Buffer {
  const payload = typeof body === 'string' ? Buffer.from(body, 'utf16le') : body;
  if (payload.length > MAX_BODY_BYTES) {
    throw new CbactionsError(
      CodecErrorCode.TooLarge,
      `pipe message body is ${payload.length} bytes; the runner accepts at most ${MAX_BODY_BYTES}`,
    );
  }
  const header = Buffer.alloc(HEADER_BYTES);
  header.writeInt32LE(type, 0);
  header.writeInt32LE(payload.length, 4);
  return Buffer.concat([header, payload]);
}

/**
 * Streaming decoder. Feed it chunks split anywhere; it returns whole frames (one allocation
 * per body, see TypeLengthReader).
 */
export class FrameDecoder {
  readonly #reader = new TypeLengthReader<MessageType>(readPipeHeader);

  /** Returns the frames completed by this chunk; throws on a malformed header. */
  push(chunk: Buffer): Frame[] {
    return this.#reader.push(chunk);
  }

  /** True when no partial frame is buffered. */
  get idle(): boolean {
    return this.#reader.idle;
  }

  /** Call at end of stream: an EOF inside a frame is an error, never a wait. */
  end(): void {
    if (this.idle) return;
    throw new CbactionsError(CodecErrorCode.Truncated, `pipe closed in the middle of a message (${this.#reader.received} received)`);
  }
}

function readPipeHeader(header: Buffer): { type: MessageType; length: number } {
  const type = header.readInt32LE(0);
  const length = header.readInt32LE(4);
  if (!isKnownMessageType(type)) {
    throw new CbactionsError(CodecErrorCode.UnknownType, `pipe message has unknown type ${type} (expected 1..4)`);
  }
  if (length < 0) {
    throw new CbactionsError(CodecErrorCode.BadLength, `pipe message of type ${type} has negative length ${length}`);
  }
  if (length > MAX_BODY_BYTES) {
    throw new CbactionsError(
      CodecErrorCode.TooLarge,
      `pipe message of type ${type} announces ${length} bytes; the limit is ${MAX_BODY_BYTES}`,
    );
  }
  if (length % 2 !== 0) {
    throw new CbactionsError(
      CodecErrorCode.BadLength,
      `pipe message of type ${type} has odd length ${length}; a UTF-16LE body is a whole number of 2-byte units`,
    );
  }
  return { type, length };
}

/** Decodes frames from a byte stream; throws on malformed input or EOF mid-frame. */
export async function* readFrames(source: AsyncIterable<Buffer | string>): AsyncGenerator<Frame> {
  const decoder = new FrameDecoder();
  for await (const chunk of source) {
    yield* decoder.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  }
  decoder.end();
}
