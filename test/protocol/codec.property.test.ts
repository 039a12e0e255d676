import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CodecErrorCode, encodeFrame, FrameDecoder, HEADER_BYTES, MAX_BODY_BYTES, readFrames } from '../../src/protocol/codec.js';
import { MessageType, frameText, type Frame } from '../../src/protocol/messages.js';
import { isCbactionsError } from '../../src/util/errors.js';
import { fuzzParameters } from '../support/fuzz.js';

const CODEC_CODES = new Set<string>(Object.values(CodecErrorCode));

const messageType = fc.constantFrom(...Object.values(MessageType));

/**
 * Any UTF-16 code unit, with the edges over-represented: lone high and low surrogates,
 * NUL, BOMs and noncharacters. The runner's strings are .NET UTF-16 and may carry lone
 * surrogates, so the codec must keep every unit as it is (never re-encode).
 */
const codeUnit = fc.oneof(
  { weight: 3, arbitrary: fc.integer({ min: 0, max: 0xffff }) },
  { weight: 1, arbitrary: fc.constantFrom(0x0000, 0xd800, 0xdbff, 0xdc00, 0xdfff, 0xfeff, 0xfffe, 0xffff, 0x000a, 0x0022) },
  { weight: 1, arbitrary: fc.integer({ min: 0xd800, max: 0xdfff }) },
);
const utf16Text = fc.array(codeUnit, { maxLength: 200 }).map((units) => String.fromCharCode(...units));
/** Text with proper astral characters (surrogate pairs) mixed in. */
const unicodeText = fc.oneof(utf16Text, fc.string({ unit: 'binary', maxLength: 100 }), fc.string({ unit: 'grapheme', maxLength: 50 }));

const frameSpec = fc.record({ type: messageType, text: unicodeText });
const frameSpecs = fc.array(frameSpec, { maxLength: 8 });

/** Cut points for `bytes`: sorted, distinct, inside the buffer. */
function splitAt(bytes: Buffer, cuts: readonly number[]): Buffer[] {
  const points = [...new Set(cuts.map((cut) => cut % (bytes.length + 1)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let previous = 0;
  for (const point of [...points, bytes.length]) {
    chunks.push(bytes.subarray(previous, point));
    previous = point;
  }
  return chunks;
}
const cuts = fc.array(fc.nat(), { maxLength: 40 });

type Outcome = { frames: Frame[]; code?: string };

/** Feeds chunks and ends the stream; an error must be a codec CbactionsError, anything else fails the property. */
function decode(chunks: readonly Buffer[]): Outcome {
  const decoder = new FrameDecoder();
  const frames: Frame[] = [];
  try {
    for (const chunk of chunks) frames.push(...decoder.push(chunk));
    decoder.end();
  } catch (error) {
    if (!isCbactionsError(error) || !CODEC_CODES.has(error.code)) throw new Error(`decoder threw something that is not a codec error: ${String(error)}`, { cause: error });
    expect(error.message.length).toBeGreaterThan(10);
    return { frames, code: error.code };
  }
  return { frames };
}

function header(type: number, length: number): Buffer {
  const bytes = Buffer.alloc(HEADER_BYTES);
  bytes.writeInt32LE(type, 0);
  bytes.writeInt32LE(length, 4);
  return bytes;
}

function sameFrames(actual: readonly Frame[], expected: readonly Frame[]): boolean {
  return actual.length === expected.length && actual.every((frame, i) => frame.type === expected[i]?.type && frame.body.equals(expected[i]?.body ?? Buffer.alloc(0)));
}

describe('pipe codec properties', () => {
  it('encode → decode keeps every frame type and every UTF-16 code unit, lone surrogates included', () => {
    fc.assert(
      fc.property(frameSpecs, (specs) => {
        const stream = Buffer.concat(specs.map((spec) => encodeFrame(spec.type, spec.text)));
        const { frames, code } = decode([stream]);
        expect(code).toBeUndefined();
        expect(frames.map((frame) => frame.type)).toEqual(specs.map((spec) => spec.type));
        frames.forEach((frame, i) => {
          const text = specs[i]?.text ?? '';
          expect(frame.body.length).toBe(text.length * 2);
          expect(frameText(frame)).toBe(text);
        });
      }),
      fuzzParameters(),
    );
  });

  it('a string body and its UTF-16LE bytes encode to the same frame, and raw even-length bodies survive byte for byte', () => {
    fc.assert(
      fc.property(messageType, unicodeText, fc.uint8Array({ maxLength: 300 }), (type, text, raw) => {
        expect(encodeFrame(type, text).equals(encodeFrame(type, Buffer.from(text, 'utf16le')))).toBe(true);
        const body = Buffer.from(raw.subarray(0, raw.length & ~1));
        const frame = encodeFrame(type, body);
        expect(frame.readInt32LE(0)).toBe(type);
        expect(frame.readInt32LE(4)).toBe(body.length);
        const { frames } = decode([frame]);
        expect(frames).toHaveLength(1);
        expect(frames[0]?.body.equals(body)).toBe(true);
      }),
      fuzzParameters(),
    );
  });

  it('decodes the same frames however the stream is split', () => {
    fc.assert(
      fc.property(frameSpecs, cuts, (specs, cutPoints) => {
        const stream = Buffer.concat(specs.map((spec) => encodeFrame(spec.type, spec.text)));
        const whole = decode([stream]);
        const split = decode(splitAt(stream, cutPoints));
        expect(split.code).toBeUndefined();
        expect(sameFrames(split.frames, whole.frames)).toBe(true);
      }),
      fuzzParameters(),
    );
  });

  it('decodes the same frames fed one byte at a time, through the async reader', async () => {
    await fc.assert(
      fc.asyncProperty(frameSpecs, async (specs) => {
        const stream = Buffer.concat(specs.map((spec) => encodeFrame(spec.type, spec.text)));
        const bytes = Array.from({ length: stream.length }, (_, i) => stream.subarray(i, i + 1));
        const frames: Frame[] = [];
        for await (const frame of readFrames((async function* () { yield* bytes; })())) frames.push(frame);
        expect(sameFrames(frames, decode([stream]).frames)).toBe(true);
      }),
      fuzzParameters(4),
    );
  });

  it('random bytes, split anywhere, give frames or a codec error: the same one for every split, never anything else', () => {
    const garbage = fc.oneof(
      fc.uint8Array({ maxLength: 200 }),
      // Plausible headers followed by junk reach the body and length checks more often.
      fc.tuple(fc.integer({ min: -2, max: 6 }), fc.integer({ min: -4, max: 64 }), fc.uint8Array({ maxLength: 100 })).map(([type, length, rest]) =>
        Uint8Array.from(Buffer.concat([header(type, length), rest])),
      ),
    );
    fc.assert(
      fc.property(fc.array(garbage, { minLength: 1, maxLength: 4 }), cuts, (pieces, cutPoints) => {
        const stream = Buffer.concat(pieces.map((piece) => Buffer.from(piece)));
        const byteByByte = decode(Array.from({ length: stream.length }, (_, i) => stream.subarray(i, i + 1)));
        const whole = decode([stream]);
        const split = decode(splitAt(stream, cutPoints));
        expect(whole.code).toBe(byteByByte.code);
        expect(split.code).toBe(byteByByte.code);
        // A chunk that throws loses the frames it completed before the bad header, so an
        // erroring split sees a prefix of them; a clean one sees all.
        for (const outcome of [whole, split]) {
          expect(sameFrames(outcome.frames, byteByByte.frames.slice(0, outcome.frames.length))).toBe(true);
          if (outcome.code === undefined) expect(outcome.frames.length).toBe(byteByByte.frames.length);
        }
      }),
      fuzzParameters(),
    );
  });

  it('a header is accepted exactly when its type is known and its length even and within 0..cap', () => {
    const length = fc.oneof(
      fc.integer({ min: -0x80000000, max: 0x7fffffff }),
      fc.integer({ min: MAX_BODY_BYTES - 4, max: MAX_BODY_BYTES + 4 }),
      fc.integer({ min: -4, max: 4 }),
      fc.constantFrom(-0x80000000, 0x7fffffff),
    );
    const type = fc.oneof(messageType, fc.integer({ min: -0x80000000, max: 0x7fffffff }), fc.constantFrom(-1, 0, 5));
    fc.assert(
      fc.property(type, length, (frameType, frameLength) => {
        const decoder = new FrameDecoder();
        let code: string | undefined;
        try {
          decoder.push(header(frameType, frameLength));
        } catch (error) {
          if (!isCbactionsError(error)) throw error;
          code = error.code;
        }
        const known = (Object.values(MessageType) as number[]).includes(frameType);
        const expected = !known
          ? CodecErrorCode.UnknownType
          : frameLength < 0
            ? CodecErrorCode.BadLength
            : frameLength > MAX_BODY_BYTES
              ? CodecErrorCode.TooLarge
              : frameLength % 2 !== 0
                ? CodecErrorCode.BadLength
                : undefined;
        expect(code).toBe(expected);
        // A bad header stays bad: the decoder never resynchronises on what follows it.
        if (expected !== undefined) expect(() => decoder.push(encodeFrame(MessageType.CancelRequest))).toThrow(expect.objectContaining({ code: expected }));
      }),
      fuzzParameters(),
    );
  });

  it('EOF anywhere but a frame boundary is PIPE_TRUNCATED_FRAME, at a boundary a clean end', () => {
    fc.assert(
      fc.property(fc.array(frameSpec, { minLength: 1, maxLength: 4 }), fc.nat(), cuts, (specs, cut, cutPoints) => {
        const encoded = specs.map((spec) => encodeFrame(spec.type, spec.text));
        const stream = Buffer.concat(encoded);
        const length = cut % (stream.length + 1);
        const boundaries = new Set<number>([0]);
        encoded.reduce((offset, frame) => {
          boundaries.add(offset + frame.length);
          return offset + frame.length;
        }, 0);
        const outcome = decode(splitAt(stream.subarray(0, length), cutPoints));
        expect(outcome.code).toBe(boundaries.has(length) ? undefined : CodecErrorCode.Truncated);
      }),
      fuzzParameters(),
    );
  });
});
