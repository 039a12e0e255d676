import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { openPayload, SealErrorCode, sealPayload } from '../../src/seal/envelope.js';
import { LocalKeyService } from '../../src/seal/local-key-service.js';
import type { JobPayload, PayloadBinding } from '../../src/seal/types.js';
import { isCbactionsError } from '../../src/util/errors.js';
import { fuzzParameters } from '../support/fuzz.js';
import { SECRET_MARKER, layout } from './fixtures.js';

const keys = new LocalKeyService(randomBytes(32));
const SEAL_CODES = new Set<string>(Object.values(SealErrorCode));
const SECRET = Buffer.from(SECRET_MARKER, 'utf8');

/** Any UTF-16 code unit, lone surrogates and control characters over-represented. */
const codeUnit = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 0x20, max: 0x7e }) },
  { weight: 2, arbitrary: fc.integer({ min: 0, max: 0xffff }) },
  { weight: 1, arbitrary: fc.constantFrom(0x00, 0x0a, 0x1f, 0x7f, 0xd800, 0xdbff, 0xdc00, 0xdfff, 0xfffd, 0xffff) },
);
const anyText = fc.oneof(
  fc.array(codeUnit, { maxLength: 60 }).map((units) => String.fromCharCode(...units)),
  fc.string({ unit: 'binary', maxLength: 60 }),
);
/** Build ids as CodeBuild makes them, and anything else a caller might pass. */
const loneSurrogate = fc.integer({ min: 0xd800, max: 0xdfff }).map((unit) => String.fromCharCode(unit));
const buildId = fc.oneof(
  { weight: 1, arbitrary: fc.tuple(fc.stringMatching(/^[a-z]{1,8}:$/), loneSurrogate).map(([project, unit]) => `${project}${unit}`) },
  { weight: 3, arbitrary: fc.tuple(fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_-]{0,30}$/), fc.uuid()).map(([project, uuid]) => `${project}:${uuid}`) },
  { weight: 1, arbitrary: anyText },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', minLength: 2040, maxLength: 2060 }) },
);
const binding: fc.Arbitrary<PayloadBinding> = fc.record({ buildId, userId: fc.oneof(anyText, loneSurrogate.map((unit) => `AROAX:${unit}`)) }, { requiredKeys: ['buildId'] });
const validBinding: fc.Arbitrary<PayloadBinding> = fc.record(
  {
    buildId: fc.tuple(fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_-]{0,30}$/), fc.uuid()).map(([project, uuid]) => `${project}:${uuid}`),
    userId: fc.tuple(fc.stringMatching(/^AROA[A-Z0-9]{8,20}$/), fc.uuid()).map(([role, uuid]) => `${role}:AWSCodeBuild-${uuid}`),
  },
  { requiredKeys: ['buildId'] },
);

const bytes = (maxLength: number) => fc.uint8Array({ maxLength }).map((array) => Buffer.from(array));
/** Mostly small bodies; now and then one large enough that its ciphertext spans many GCM blocks. */
const jobMessage = fc.oneof({ weight: 9, arbitrary: bytes(600) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 200_000 }).map((n) => randomBytes(n)) });

/** Text UTF-8 carries unchanged (no lone surrogates), with astral characters. */
const wellFormedText = fc.oneof(fc.string({ maxLength: 40 }), fc.string({ unit: 'binary', maxLength: 40 }));

function payloadFor(target: PayloadBinding, text: fc.Arbitrary<string>): fc.Arbitrary<JobPayload> {
  return fc
    .record(
      {
        jobMessage,
        runnerFile: bytes(200),
        credentialsFile: bytes(200),
        runnerVersion: text,
        // JSON keeps even lone surrogates (as \u escapes).
        jobId: anyText,
        requestId: anyText,
        runnerName: anyText,
        pool: anyText,
      },
      { requiredKeys: ['jobMessage', 'runnerFile'] },
    )
    .map(({ jobMessage: message, runnerFile, credentialsFile, runnerVersion, ...ids }) => {
      const payload: JobPayload = { jobMessage: Buffer.concat([SECRET, message]), runnerFile, ids: { buildId: target.buildId, ...ids } };
      if (credentialsFile !== undefined) payload.credentialsFile = credentialsFile;
      if (runnerVersion !== undefined) payload.runnerVersion = runnerVersion;
      return payload;
    });
}
const bindingAndPayload = (bindings: fc.Arbitrary<PayloadBinding>, text: fc.Arbitrary<string> = wellFormedText) =>
  bindings.chain((target) => fc.tuple(fc.constant(target), payloadFor(target, text)));

/**
 * The code a rejected promise carries; anything but a seal CbactionsError with a message a
 * person can act on, and without the secret, fails the property. (Plain checks, not
 * `expect`: the tamper loops call this tens of thousands of times.)
 */
async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
  } catch (error) {
    if (!isCbactionsError(error) || !SEAL_CODES.has(error.code)) throw new Error(`not a seal error: ${String(error)}`, { cause: error });
    if (error.message.includes(SECRET_MARKER)) throw new Error(`${error.code} message carries the secret: ${error.message}`);
    if (error.message.length <= 20) throw new Error(`${error.code} message says too little: ${error.message}`);
    return error.code;
  }
  return undefined;
}

function expectSamePayload(opened: JobPayload, sealed: JobPayload): void {
  expect(opened.jobMessage.equals(sealed.jobMessage)).toBe(true);
  expect(opened.runnerFile.equals(sealed.runnerFile)).toBe(true);
  expect(opened.credentialsFile === undefined ? undefined : Buffer.from(opened.credentialsFile)).toEqual(sealed.credentialsFile);
  expect(opened.runnerVersion).toBe(sealed.runnerVersion);
  expect(opened.ids).toEqual(sealed.ids);
}

/** What a single changed byte at `offset` must be reported as. */
function expectedTamperCode(offset: number): string {
  if (offset < 4) return SealErrorCode.NotAPayload;
  if (offset === 4) return SealErrorCode.UnknownVersion;
  return SealErrorCode.Tampered;
}

/** Every offset of the prefix, header and digest, plus `samples` of the ciphertext and tag (all of them when small). */
function tamperOffsets(sealed: Buffer, picks: readonly number[]): number[] {
  const { aadEnd } = layout(sealed);
  const offsets = Array.from({ length: aadEnd }, (_, i) => i);
  const rest = sealed.length - aadEnd;
  if (rest <= 512) {
    for (let offset = aadEnd; offset < sealed.length; offset += 1) offsets.push(offset);
  } else {
    // The first and last ciphertext blocks and every tag byte, then sampled positions.
    for (let i = 0; i < 16; i += 1) offsets.push(aadEnd + i, sealed.length - 32 + i, sealed.length - 16 + i);
    for (const pick of picks) offsets.push(aadEnd + (pick % rest));
  }
  return offsets;
}

describe('sealed payload envelope properties', () => {
  it('seal → open returns every field byte for byte, for random payloads and well-formed bindings', async () => {
    await fc.assert(
      fc.asyncProperty(bindingAndPayload(validBinding), async ([target, payload]) => {
        const original = Buffer.from(payload.jobMessage);
        const sealed = await sealPayload(keys, payload, target);
        expect(sealed.includes(SECRET)).toBe(false);
        const opened = await openPayload(keys, sealed, target);
        expectSamePayload(opened, payload);
        expect(payload.jobMessage.equals(original)).toBe(true);
      }),
      fuzzParameters(4),
    );
  });

  it('any binding and payload text either round-trips exactly or is refused as SEAL_INVALID_INPUT', async () => {
    await fc.assert(
      fc.asyncProperty(bindingAndPayload(binding, anyText), async ([target, payload]) => {
        let sealed: Buffer;
        try {
          sealed = await sealPayload(keys, payload, target);
        } catch (error) {
          expect(isCbactionsError(error, SealErrorCode.InvalidInput), String(error)).toBe(true);
          return;
        }
        expectSamePayload(await openPayload(keys, sealed, target), payload);
      }),
      fuzzParameters(4),
    );
  });

  it('a payload sealed for one binding does not open for any other: SEAL_WRONG_KEY (or SEAL_INVALID_INPUT for a binding no payload is sealed for)', async () => {
    // Near misses too: one code unit of the build id or userid changed (a lone surrogate for another, say).
    // Near misses too: one code unit of the build id or userid changed, or every lone
    // surrogate swapped for another (UTF-8 turns both into U+FFFD).
    const otherSurrogate = (text: string) => text.replace(/\p{Cs}/gu, (unit) => (unit === '\ud800' ? '\udfff' : '\ud800'));
    const nearMiss = (target: PayloadBinding) =>
      fc.tuple(fc.boolean(), fc.boolean(), fc.nat(), codeUnit).map(([inUserId, swap, index, unit]): PayloadBinding => {
        const text = (inUserId ? target.userId : undefined) ?? target.buildId;
        const at = index % (text.length + 1);
        const changed = swap ? otherSurrogate(text) : text.slice(0, at) + String.fromCharCode(unit) + text.slice(at + 1);
        return inUserId && target.userId !== undefined ? { ...target, userId: changed } : { ...target, buildId: changed };
      });
    await fc.assert(
      fc.asyncProperty(
        bindingAndPayload(fc.oneof(validBinding, binding)).chain(([target, payload]) => fc.tuple(fc.constant(target), fc.constant(payload), fc.oneof(validBinding, binding, nearMiss(target)))),
        async ([target, payload, other]) => {
          fc.pre(other.buildId !== target.buildId || other.userId !== target.userId);
          let sealed: Buffer;
          try {
            sealed = await sealPayload(keys, payload, target);
          } catch {
            return; // refused bindings are the round-trip property's business
          }
          const valid = await codeOf(sealPayload(keys, { ...payload, ids: { buildId: other.buildId } }, other));
          expect(await codeOf(openPayload(keys, sealed, other))).toBe(valid === undefined ? SealErrorCode.WrongKey : SealErrorCode.InvalidInput);
        },
      ),
      fuzzParameters(4),
    );
  });

  it('every single-byte change of an envelope is refused with the code for where it lands', async () => {
    await fc.assert(
      fc.asyncProperty(
        bindingAndPayload(validBinding),
        fc.array(fc.integer({ min: 1, max: 255 }), { minLength: 61, maxLength: 61 }),
        fc.array(fc.nat(), { minLength: 64, maxLength: 64 }),
        async ([target, payload], masks, picks) => {
          const sealed = await sealPayload(keys, payload, target);
          for (const offset of tamperOffsets(sealed, picks)) {
            const tampered = Buffer.from(sealed);
            tampered[offset] = (tampered[offset] ?? 0) ^ (masks[offset % masks.length] ?? 1);
            const code = await codeOf(openPayload(keys, tampered, target));
            if (code !== expectedTamperCode(offset)) expect.fail(`byte ${offset} of ${sealed.length} (header ends at ${layout(sealed).aadEnd}) xor ${masks[offset % masks.length]}: ${code}`);
          }
        },
      ),
      fuzzParameters(100),
    );
  });

  it('every byte of a small envelope, changed to each of its 255 other values, is refused with the code for where it lands', async () => {
    const target: PayloadBinding = { buildId: 'p:00000000-0000-1000-8000-000000000000', userId: 'AROAEXAMPLE12345:AWSCodeBuild-x' };
    const sealed = await sealPayload(keys, { jobMessage: Buffer.from(SECRET), runnerFile: Buffer.from('{}'), runnerVersion: '2.330.0', ids: { buildId: target.buildId, jobId: 'j' } }, target);
    const tampered = Buffer.from(sealed);
    for (let offset = 0; offset < sealed.length; offset += 1) {
      for (let mask = 1; mask < 256; mask += 1) {
        tampered[offset] = (sealed[offset] ?? 0) ^ mask;
        const code = await codeOf(openPayload(keys, tampered, target));
        if (code !== expectedTamperCode(offset)) expect.fail(`byte ${offset} of ${sealed.length} xor ${mask}: ${code}`);
      }
      tampered[offset] = sealed[offset] ?? 0;
    }
  });

  it('every cut of an envelope is SEAL_TRUNCATED, and bytes appended to it SEAL_TAMPERED', async () => {
    await fc.assert(
      fc.asyncProperty(bindingAndPayload(validBinding), fc.uint8Array({ minLength: 1, maxLength: 40 }), async ([target, payload], extra) => {
        const sealed = await sealPayload(keys, payload, target);
        // Past the header every cut takes the same path; step through large bodies.
        const { aadEnd } = layout(sealed);
        const step = Math.max(1, Math.floor((sealed.length - aadEnd) / 256));
        for (let length = 0; length < sealed.length; length += length < aadEnd + 32 || length > sealed.length - 64 ? 1 : step) {
          const code = await codeOf(openPayload(keys, sealed.subarray(0, length), target));
          if (code !== SealErrorCode.Truncated) expect.fail(`cut at ${length} of ${sealed.length}: ${code}`);
        }
        expect(await codeOf(openPayload(keys, Buffer.concat([sealed, extra]), target))).toBe(SealErrorCode.Tampered);
      }),
      fuzzParameters(40),
    );
  });

  it('random bytes, with or without a valid prefix, are refused with a seal error code', async () => {
    const prefix = fc.constantFrom(Buffer.alloc(0), Buffer.from([0x89, 0x43, 0x42, 0x53]), Buffer.from([0x89, 0x43, 0x42, 0x53, 0x01]));
    const headerLength = fc.oneof(fc.integer({ min: 0, max: 300 }), fc.nat(), fc.constant(0xffffffff));
    await fc.assert(
      fc.asyncProperty(prefix, headerLength, bytes(600), async (start, length, rest) => {
        const lengthBytes = Buffer.alloc(4);
        lengthBytes.writeUInt32BE(length);
        const input = Buffer.concat(start.length === 5 ? [start, lengthBytes, rest] : [start, rest]);
        expect(await codeOf(openPayload(keys, input, { buildId: 'p:1' }))).toBeDefined();
      }),
      fuzzParameters(),
    );
  });
});

describe('regressions the properties found', () => {
  const target = { buildId: 'a:00000000-0000-1000-8000-000000000000' };
  const payload = (): JobPayload => ({ jobMessage: Buffer.from(SECRET), runnerFile: Buffer.alloc(0), ids: { ...target } });

  it('a changed header-length byte that points past the end is SEAL_TAMPERED, not a cut in transit', async () => {
    const sealed = await sealPayload(keys, payload(), target);
    for (const [offset, mask] of [
      [7, 0x01],
      [7, 0x80],
    ] as const) {
      const tampered = Buffer.from(sealed);
      tampered[offset] = (tampered[offset] ?? 0) ^ mask;
      expect(tampered.readUInt32BE(5) + 25).toBeGreaterThan(sealed.length);
      expect(await codeOf(openPayload(keys, tampered, target))).toBe(SealErrorCode.Tampered);
    }
  });

  it('refuses to seal a runner version with a lone surrogate (it would open as U+FFFD)', async () => {
    expect(await codeOf(sealPayload(keys, { ...payload(), runnerVersion: '\ud800' }, target))).toBe(SealErrorCode.InvalidInput);
  });

  it('refuses bindings with lone surrogates, which UTF-8 would merge into one encryption context', async () => {
    const sealedFor = { buildId: 'call', userId: '\u1250\udfff' };
    const openedAs = { buildId: 'call', userId: '\u1250\ud800' };
    expect(await codeOf(sealPayload(keys, { ...payload(), ids: { buildId: 'call' } }, sealedFor))).toBe(SealErrorCode.InvalidInput);
    const sealed = await sealPayload(keys, { ...payload(), ids: { buildId: 'call' } }, { buildId: 'call', userId: '\u1250\ufffd' });
    expect(await codeOf(openPayload(keys, sealed, openedAs))).toBe(SealErrorCode.InvalidInput);
    expect(await codeOf(sealPayload(keys, { ...payload(), ids: { buildId: 'a:\ud800' } }, { buildId: 'a:\ud800' }))).toBe(SealErrorCode.InvalidInput);
  });
});
