import { describe, expect, it } from 'vitest';
import { Readable } from 'node:stream';
import { encodeFrame, FrameDecoder, MAX_BODY_BYTES, readFrames } from '../../src/protocol/codec.js';
import { MessageType, frameText, type Frame } from '../../src/protocol/messages.js';
import { isCbactionsError } from '../../src/util/errors.js';
import { seededRandom } from '../../src/util/seeded-random.js';

function splitRandomly(bytes: Buffer, random: () => number, maxChunk: number): Buffer[] {
  const chunks: Buffer[] = [];
  let offset = 0;
  while (offset < bytes.length) {
    const size = 1 + Math.floor(random() * maxChunk);
    chunks.push(bytes.subarray(offset, offset + size));
    offset += size;
  }
  return chunks;
}

function decodeAll(chunks: Buffer[]): Frame[] {
  const decoder = new FrameDecoder();
  const frames = chunks.flatMap((chunk) => decoder.push(chunk));
  decoder.end();
  return frames;
}

function header(type: number, length: number): Buffer {
  const buffer = Buffer.alloc(8);
  buffer.writeInt32LE(type, 0);
  buffer.writeInt32LE(length, 4);
  return buffer;
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (error) {
    return isCbactionsError(error) ? error.code : `not a CbactionsError: ${String(error)}`;
  }
  return undefined;
}

describe('pipe codec', () => {
  const job = JSON.stringify({ messageType: 'RunnerJobRequest', text: 'héllo 世界 😀 𝄞', n: 42 });

  it('writes little-endian type and byte length, then UTF-16LE', () => {
    const frame = encodeFrame(MessageType.NewJobRequest, 'A😀');
    expect([...frame.subarray(0, 8)]).toEqual([1, 0, 0, 0, 6, 0, 0, 0]);
    expect(frame.subarray(8)).toEqual(Buffer.from([0x41, 0x00, 0x3d, 0xd8, 0x00, 0xde]));
  });

  it('encodes an empty body as length 0', () => {
    expect([...encodeFrame(MessageType.CancelRequest)]).toEqual([2, 0, 0, 0, 0, 0, 0, 0]);
  });

  it('decodes frames from randomly split chunks, for many seeds', () => {
    const stream = Buffer.concat([
      encodeFrame(MessageType.NewJobRequest, job),
      encodeFrame(MessageType.CancelRequest),
      encodeFrame(MessageType.RunnerShutdown, ''),
      encodeFrame(MessageType.OperatingSystemShutdown),
    ]);
    for (let seed = 1; seed <= 300; seed++) {
      const random = seededRandom(seed);
      const frames = decodeAll(splitRandomly(stream, random, 1 + Math.floor(random() * 40)));
      expect(frames.map((f) => f.type), `seed ${seed}`).toEqual([1, 2, 3, 4]);
      expect(frameText(frames[0] as Frame), `seed ${seed}`).toBe(job);
      expect(frames.slice(1).every((f) => f.body.length === 0)).toBe(true);
    }
  });

  it('keeps a body byte-identical, including astral-plane characters and lone surrogates', () => {
    const body = Buffer.from('x\uD800y😀', 'utf16le');
    const [frame] = decodeAll([encodeFrame(MessageType.NewJobRequest, body)]);
    expect(frame?.body.equals(body)).toBe(true);
  });

  it('streams from an async iterable', async () => {
    const bytes = Buffer.concat([encodeFrame(MessageType.NewJobRequest, job), encodeFrame(MessageType.CancelRequest)]);
    const frames: Frame[] = [];
    for await (const frame of readFrames(Readable.from(splitRandomly(bytes, seededRandom(7), 5)))) frames.push(frame);
    expect(frames.map((f) => f.type)).toEqual([1, 2]);
  });

  it('rejects an unknown message type, including -1 and 0', () => {
    for (const type of [-1, 0, 5, 99]) {
      expect(codeOf(() => new FrameDecoder().push(header(type, 0)))).toBe('PIPE_UNKNOWN_MESSAGE_TYPE');
    }
  });

  it('rejects a negative length', () => {
    expect(codeOf(() => new FrameDecoder().push(header(1, -2)))).toBe('PIPE_BAD_LENGTH');
  });

  it('rejects an odd length (not UTF-16)', () => {
    expect(codeOf(() => new FrameDecoder().push(header(1, 3)))).toBe('PIPE_BAD_LENGTH');
  });

  it('accepts exactly the 50,000,000-byte cap and rejects one unit more, before allocating', () => {
    expect(codeOf(() => new FrameDecoder().push(header(1, MAX_BODY_BYTES)))).toBeUndefined();
    expect(codeOf(() => new FrameDecoder().push(header(1, MAX_BODY_BYTES + 2)))).toBe('PIPE_FRAME_TOO_LARGE');
    expect(codeOf(() => new FrameDecoder().push(header(1, 0x7fffffff)))).toBe('PIPE_FRAME_TOO_LARGE');
  });

  it('refuses to encode a body over the cap', () => {
    expect(codeOf(() => encodeFrame(MessageType.NewJobRequest, Buffer.alloc(MAX_BODY_BYTES + 2)))).toBe('PIPE_FRAME_TOO_LARGE');
  });

  it('treats EOF inside a header or a body as an error', () => {
    const frame = encodeFrame(MessageType.NewJobRequest, job);
    for (const cut of [1, 4, 7, 8, 9, frame.length - 1]) {
      const decoder = new FrameDecoder();
      decoder.push(frame.subarray(0, cut));
      expect(codeOf(() => decoder.end()), `cut at ${cut}`).toBe('PIPE_TRUNCATED_FRAME');
    }
  });

  it('ends cleanly at a frame boundary', () => {
    const decoder = new FrameDecoder();
    decoder.push(encodeFrame(MessageType.CancelRequest));
    expect(decoder.idle).toBe(true);
    expect(() => decoder.end()).not.toThrow();
  });

  it('fails on random garbage without hanging or throwing anything but a codec error', () => {
    for (let seed = 1; seed <= 200; seed++) {
      const random = seededRandom(seed);
      const garbage = Buffer.from(Array.from({ length: 1 + Math.floor(random() * 64) }, () => Math.floor(random() * 256)));
      const code = codeOf(() => decodeAll(splitRandomly(garbage, random, 8)));
      if (code !== undefined) expect(code, `seed ${seed}`).toMatch(/^PIPE_/);
    }
  });
});
