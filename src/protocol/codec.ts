import { CbactionsError } from '../util/errors.js';
import type { MessageType} from './messages.js';
import { isKnownMessageType, type Frame } from './messages.js';

/** actions/runner StreamString.cs refuses bodies above this many bytes. */
export const MAX_BODY_BYTES = 50_000_000;
export const HEADER_BYTES = 8;

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
 * Streaming decoder. Feed it chunks split anywhere; it returns whole frames. A frame's
 * body is copied into one buffer sized from the header, so a 50 MB job costs one
 * allocation, not a growing concatenation.
 */
export class FrameDecoder {
  private header = Buffer.alloc(HEADER_BYTES);
  private headerFilled = 0;
  private body: Buffer | undefined;
  private bodyFilled = 0;
  private type: MessageType | undefined;

  /** Returns the frames completed by this chunk; throws on a malformed header. */
  push(chunk: Buffer): Frame[] {
    const frames: Frame[] = [];
    let offset = 0;
    while (offset < chunk.length) {
      if (this.type === undefined) {
        const take = Math.min(HEADER_BYTES - this.headerFilled, chunk.length - offset);
        chunk.copy(this.header, this.headerFilled, offset, offset + take);
        this.headerFilled += take;
        offset += take;
        if (this.headerFilled < HEADER_BYTES) break;
        this.startBody(frames);
        continue;
      }
      const body = this.body as Buffer;
      const take = Math.min(body.length - this.bodyFilled, chunk.length - offset);
      chunk.copy(body, this.bodyFilled, offset, offset + take);
      this.bodyFilled += take;
      offset += take;
      if (this.bodyFilled === body.length) this.finishFrame(frames);
    }
    return frames;
  }

  /** True when no partial frame is buffered. */
  get idle(): boolean {
    return this.type === undefined && this.headerFilled === 0;
  }

  /** Call at end of stream: an EOF inside a frame is an error, never a wait. */
  end(): void {
    if (this.idle) return;
    const got = this.type === undefined ? `${this.headerFilled} of ${HEADER_BYTES} header bytes` : `${this.bodyFilled} of ${this.body?.length} body bytes`;
    throw new CbactionsError(CodecErrorCode.Truncated, `pipe closed in the middle of a message (${got} received)`);
  }

  private startBody(frames: Frame[]): void {
    const type = this.header.readInt32LE(0);
    const length = this.header.readInt32LE(4);
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
    this.type = type;
    this.body = Buffer.allocUnsafe(length);
    this.bodyFilled = 0;
    if (length === 0) this.finishFrame(frames);
  }

  private finishFrame(frames: Frame[]): void {
    frames.push({ type: this.type as MessageType, body: this.body as Buffer });
    this.type = undefined;
    this.body = undefined;
    this.bodyFilled = 0;
    this.headerFilled = 0;
  }
}

/** Decodes frames from a byte stream; throws on malformed input or EOF mid-frame. */
export async function* readFrames(source: AsyncIterable<Buffer | string>): AsyncGenerator<Frame> {
  const decoder = new FrameDecoder();
  for await (const chunk of source) {
    yield* decoder.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  }
  decoder.end();
}
