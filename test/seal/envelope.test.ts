import { createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  ENVELOPE_MAGIC,
  SealErrorCode,
  encryptionContextFor,
  openPayload,
  parseEnvelope,
  sealPayload,
} from '../../src/seal/envelope.js';
import { LocalKeyService } from '../../src/seal/local-key-service.js';
import type { DataKey, EncryptionContext, KeyService } from '../../src/seal/types.js';
import { CbactionsError, isCbactionsError } from '../../src/util/errors.js';
import { BUILD_A, BUILD_B, ROLE_ID, SECRET_MARKER, bindingFor, flipped, jobMessageBytes, layout, makePayload, rejection } from './fixtures.js';

const keys = new LocalKeyService(randomBytes(32));
const bindingA = bindingFor(BUILD_A);

async function sealA(messageBytes = 4_096): Promise<Buffer> {
  return sealPayload(keys, makePayload(BUILD_A, messageBytes), bindingA);
}

/** Opens and expects a CbactionsError with `code`; checks that no secret leaks into the message. */
async function expectCode(sealed: Buffer, code: string, opener: KeyService = keys, binding = bindingA): Promise<CbactionsError> {
  const error = await rejection(() => openPayload(opener, sealed, binding));
  expect(error).toBeInstanceOf(CbactionsError);
  const e = error as CbactionsError;
  expect(e.code, e.message).toBe(code);
  expect(e.message).not.toContain(SECRET_MARKER);
  expect(e.message.length).toBeGreaterThan(20);
  return e;
}

describe('encryption context', () => {
  it('always binds the build id, and the userid when known', () => {
    expect(encryptionContextFor({ buildId: BUILD_A })).toEqual({ 'cbactions:build-id': BUILD_A });
    expect(encryptionContextFor({ buildId: BUILD_A, userId: `${ROLE_ID}:AWSCodeBuild-x` })).toEqual({
      'cbactions:build-id': BUILD_A,
      'cbactions:userid': `${ROLE_ID}:AWSCodeBuild-x`,
    });
  });

  it('refuses an empty build id or control characters', () => {
    expect(() => encryptionContextFor({ buildId: '' })).toThrow(expect.objectContaining({ code: SealErrorCode.InvalidInput }));
    expect(() => encryptionContextFor({ buildId: 'a\nb' })).toThrow(expect.objectContaining({ code: SealErrorCode.InvalidInput }));
  });
});

describe('sealPayload / openPayload round trip', () => {
  it('returns every field byte for byte, including a 5 MB UTF-16LE message with astral characters and lone surrogates', async () => {
    const payload = makePayload(BUILD_A);
    payload.jobMessage = jobMessageBytes(5 * 1024 * 1024);
    const original = Buffer.from(payload.jobMessage);
    // The lone surrogates really are in there: any re-encoding through UTF-8 would change the bytes.
    expect(original.includes(Buffer.from([0x00, 0xd8, 0x41, 0x00]))).toBe(true);
    const viaUtf8 = Buffer.from(Buffer.from(original.toString('utf16le'), 'utf8').toString('utf8'), 'utf16le');
    expect(viaUtf8.equals(original)).toBe(false);

    const sealed = await sealPayload(keys, payload, bindingA);
    expect(sealed.subarray(0, 4).equals(ENVELOPE_MAGIC)).toBe(true);
    expect(sealed.includes(Buffer.from(SECRET_MARKER, 'utf16le'))).toBe(false);

    const opened = await openPayload(keys, sealed, bindingA);
    expect(opened.jobMessage.length).toBe(original.length);
    expect(opened.jobMessage.equals(original)).toBe(true);
    expect(opened.runnerFile.equals(payload.runnerFile)).toBe(true);
    expect(opened.credentialsFile?.equals(payload.credentialsFile as Buffer)).toBe(true);
    expect(opened.runnerVersion).toBe('2.330.0');
    expect(opened.ids).toEqual(payload.ids);
    // Sealing must not consume or alter the caller's buffer.
    expect(payload.jobMessage.equals(original)).toBe(true);
  });

  it('round-trips without the optional fields and with a userid binding', async () => {
    const binding = bindingFor(BUILD_A, ROLE_ID);
    const payload = { jobMessage: Buffer.alloc(0), runnerFile: Buffer.from('{}'), ids: { buildId: BUILD_A } };
    const opened = await openPayload(keys, await sealPayload(keys, payload, binding), binding);
    expect(opened.jobMessage.length).toBe(0);
    expect(opened.credentialsFile).toBeUndefined();
    expect(opened.runnerVersion).toBeUndefined();
    expect(opened.ids).toEqual({ buildId: BUILD_A });
  });

  it("carries the mux's timeline of the job (its own field; absent when not given)", async () => {
    const binding = bindingFor(BUILD_A);
    const timeline = { assignedAt: 1_800_000_000_000, dispatchedAt: 1_800_000_000_012, start: 'warm' as const };
    const payload = { jobMessage: Buffer.from('x'), runnerFile: Buffer.from('{}'), ids: { buildId: BUILD_A }, timeline };
    expect((await openPayload(keys, await sealPayload(keys, payload, binding), binding)).timeline).toEqual(timeline);
    const without = await openPayload(keys, await sealPayload(keys, { ...payload, timeline: undefined }, binding), binding);
    expect(without.timeline).toBeUndefined();
  });

  it('uses a fresh data key and IV every time', async () => {
    const payload = makePayload(BUILD_A);
    const one = await sealPayload(keys, payload, bindingA);
    const two = await sealPayload(keys, payload, bindingA);
    expect(one.equals(two)).toBe(false);
    expect(one.length).toBe(two.length);
  });

  it('zeroes the data keys it was handed', async () => {
    const handed: Buffer[] = [];
    const spy: KeyService = {
      provider: keys.provider,
      async generateDataKey(context: EncryptionContext): Promise<DataKey> {
        const key = await keys.generateDataKey(context);
        handed.push(key.plaintext);
        return key;
      },
      async decryptDataKey(encrypted: Buffer, keyId: string, context: EncryptionContext): Promise<Buffer> {
        const key = await keys.decryptDataKey(encrypted, keyId, context);
        handed.push(key);
        return key;
      },
    };
    const sealed = await sealPayload(spy, makePayload(BUILD_A), bindingA);
    await openPayload(spy, sealed, bindingA);
    expect(handed).toHaveLength(2);
    for (const key of handed) {
      expect(key.length).toBe(32);
      expect(key.every((byte) => byte === 0)).toBe(true);
    }
  });

  it('refuses to seal a payload whose ids name another build', async () => {
    const error = await rejection(() => sealPayload(keys, makePayload(BUILD_B), bindingA));
    expect(isCbactionsError(error, SealErrorCode.InvalidInput)).toBe(true);
  });
});

describe('openPayload refuses damaged or foreign envelopes with a precise code', () => {
  it('SEAL_TAMPERED: a flipped bit in the ciphertext', async () => {
    const sealed = await sealA();
    const { aadEnd, tagStart } = layout(sealed);
    for (const offset of [aadEnd, aadEnd + 100, tagStart - 1]) {
      const e = await expectCode(flipped(sealed, offset), SealErrorCode.Tampered);
      expect(e.message).toMatch(/altered/);
    }
  });

  it('SEAL_TAMPERED: a flipped bit in the tag', async () => {
    const sealed = await sealA();
    const { tagStart } = layout(sealed);
    for (const offset of [tagStart, tagStart + 8, sealed.length - 1]) {
      await expectCode(flipped(sealed, offset, 0x80), SealErrorCode.Tampered);
    }
  });

  it('SEAL_TAMPERED: any flipped byte in the header or its digest', async () => {
    const sealed = await sealA();
    const { headerStart, aadEnd } = layout(sealed);
    for (let offset = headerStart; offset < aadEnd; offset += 1) {
      await expectCode(flipped(sealed, offset), SealErrorCode.Tampered);
    }
  });

  it('SEAL_TAMPERED: a flipped bit in the wrapped data key', async () => {
    const sealed = await sealA();
    // provider (u8 len) | key id (u16 len) | wrapped key (u16 len)
    let offset = 9;
    offset += 1 + sealed.readUInt8(offset);
    offset += 2 + sealed.readUInt16BE(offset);
    const wrappedLength = sealed.readUInt16BE(offset);
    expect(wrappedLength).toBeGreaterThan(0);
    await expectCode(flipped(sealed, offset + 2 + Math.floor(wrappedLength / 2)), SealErrorCode.Tampered);
  });

  it('SEAL_TAMPERED: a forged header with a recomputed digest still fails (the header is GCM AAD)', async () => {
    const sealed = await sealA();
    const { headerEnd, aadEnd } = layout(sealed);
    // The IV sits just before the 4-byte ciphertext length at the end of the header.
    const forged = flipped(sealed, headerEnd - 4 - 1);
    createHash('sha256').update(forged.subarray(0, headerEnd)).digest().subarray(0, 16).copy(forged, headerEnd);
    expect(forged.subarray(headerEnd, aadEnd).equals(sealed.subarray(headerEnd, aadEnd))).toBe(false);
    await expectCode(forged, SealErrorCode.Tampered);
  });

  it('follows the documented format: an independent decrypt needs bytes 0..header digest end as AAD', async () => {
    const payload = makePayload(BUILD_A);
    const sealed = await sealPayload(keys, payload, bindingA);
    const { header, aad, ciphertext, tag } = parseEnvelope(sealed);
    expect(aad.length).toBe(layout(sealed).aadEnd);
    expect(header.provider).toBe('local');
    expect(header.context).toEqual(encryptionContextFor(bindingA));
    const dataKey = await keys.decryptDataKey(header.wrappedKey, header.keyId, header.context);
    const decrypt = (withAad: boolean): Buffer => {
      const decipher = createDecipheriv('aes-256-gcm', dataKey, header.iv);
      if (withAad) decipher.setAAD(aad);
      decipher.setAuthTag(tag);
      return Buffer.concat([decipher.update(ciphertext), decipher.final()]);
    };
    expect(() => decrypt(false)).toThrow();
    const plaintext = decrypt(true);
    // First field: tag 1 (job message), u32 length, then the raw bytes.
    expect(plaintext[0]).toBe(1);
    expect(plaintext.readUInt32BE(1)).toBe(payload.jobMessage.length);
    expect(plaintext.subarray(5, 5 + payload.jobMessage.length).equals(payload.jobMessage)).toBe(true);
  });

  it('SEAL_TAMPERED: bytes appended after the tag', async () => {
    const sealed = await sealA();
    await expectCode(Buffer.concat([sealed, Buffer.from([0])]), SealErrorCode.Tampered);
  });

  it('SEAL_TRUNCATED: cut anywhere, including empty', async () => {
    const sealed = await sealA();
    const { headerEnd, aadEnd, tagStart } = layout(sealed);
    for (const length of [0, 2, 4, 7, 9, 20, headerEnd, aadEnd - 1, aadEnd, aadEnd + 10, tagStart, sealed.length - 1]) {
      const e = await expectCode(sealed.subarray(0, length), SealErrorCode.Truncated);
      expect(e.message).toContain(`${length} bytes`);
    }
  });

  it('SEAL_WRONG_KEY: another key file, naming both key ids', async () => {
    const sealed = await sealA();
    const other = new LocalKeyService(randomBytes(32));
    const e = await expectCode(sealed, SealErrorCode.WrongKey, other);
    expect(e.message).toContain(keys.keyId);
    expect(e.message).toContain(other.keyId);
  });

  it('SEAL_WRONG_KEY: sealed for build A, opened as build B, saying it was sealed for A', async () => {
    const sealed = await sealA();
    const e = await expectCode(sealed, SealErrorCode.WrongKey, keys, bindingFor(BUILD_B));
    expect(e.message).toContain(`sealed for build ${BUILD_A}`);
    expect(e.message).toContain(BUILD_B);
    expect(e.message).not.toMatch(/not verified/);
  });

  it('SEAL_WRONG_KEY: sealed for one aws:userid, opened as another (or none)', async () => {
    const binding = bindingFor(BUILD_A, ROLE_ID);
    const sealed = await sealPayload(keys, makePayload(BUILD_A), binding);
    await expectCode(sealed, SealErrorCode.WrongKey, keys, { buildId: BUILD_A });
    await expectCode(sealed, SealErrorCode.WrongKey, keys, { buildId: BUILD_A, userId: 'AROAOTHERROLE0000:AWSCodeBuild-x' });
  });

  it('SEAL_WRONG_KEY: a key service of another provider', async () => {
    const sealed = await sealA();
    const kmsLike: KeyService = {
      provider: 'kms',
      generateDataKey: () => Promise.reject(new Error('unused')),
      decryptDataKey: () => Promise.reject(new Error('must not be called')),
    };
    const e = await expectCode(sealed, SealErrorCode.WrongKey, kmsLike);
    expect(e.message).toMatch(/local key/);
  });

  it('SEAL_UNKNOWN_VERSION: a version this reader does not know', async () => {
    const sealed = await sealA();
    const newer = Buffer.from(sealed);
    newer[4] = 2;
    const e = await expectCode(newer, SealErrorCode.UnknownVersion);
    expect(e.message).toContain('version 2');
  });

  it('SEAL_NOT_A_PAYLOAD: bad magic, or something else entirely', async () => {
    const sealed = await sealA();
    await expectCode(flipped(sealed, 0), SealErrorCode.NotAPayload);
    await expectCode(flipped(sealed, 3), SealErrorCode.NotAPayload);
    await expectCode(Buffer.from('{"not":"sealed"}'), SealErrorCode.NotAPayload);
    await expectCode(Buffer.from('C'), SealErrorCode.NotAPayload);
  });

  it('never puts key material in a message', async () => {
    const sealed = await sealA();
    const e = await expectCode(flipped(sealed, layout(sealed).aadEnd), SealErrorCode.Tampered);
    expect(e.message).not.toMatch(/[0-9a-f]{64}/);
  });
});
