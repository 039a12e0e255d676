import { CreateKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { CreateBucketCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { openPayload, sealPayload } from '../../src/seal/envelope.js';
import { SealErrorCode } from '../../src/seal/errors.js';
import { createPayloadServices } from '../../src/seal/factory.js';
import { KmsKeyService } from '../../src/seal/kms-key-service.js';
import { S3PayloadStore } from '../../src/seal/s3-payload-store.js';
import { parsePayloadKeyRef, parsePayloadStoreRef } from '../../src/seal/references.js';
import { CbactionsError, isCbactionsError } from '../../src/util/errors.js';
import { startMoto, type Moto } from '../support/moto.js';
import { BUILD_A, BUILD_B, ROLE_ID, SECRET_MARKER, bindingFor, flipped, layout, makePayload, rejection } from './fixtures.js';

const BUCKET = 'cbactions-payloads-test';
const PREFIX = 'payloads/';

let moto: Moto;
let kmsClient: KMSClient;
let s3Client: S3Client;
let keyArn: string;
let keys: KmsKeyService;
let store: S3PayloadStore;

const bindingA = bindingFor(BUILD_A, ROLE_ID);
const bindingB = bindingFor(BUILD_B, ROLE_ID);

beforeAll(async () => {
  moto = await startMoto();
  kmsClient = new KMSClient(moto.clientConfig());
  s3Client = new S3Client({ ...moto.clientConfig(), forcePathStyle: true });
});

afterAll(async () => {
  kmsClient?.destroy();
  s3Client?.destroy();
  await moto?.stop();
});

beforeEach(async () => {
  await moto.reset();
  const key = await kmsClient.send(new CreateKeyCommand({ Description: 'cbactions payloads (test)' }));
  keyArn = key.KeyMetadata?.Arn ?? '';
  expect(keyArn).toMatch(/^arn:aws:kms:/);
  await s3Client.send(new CreateBucketCommand({ Bucket: BUCKET }));
  keys = new KmsKeyService({ client: kmsClient, keyId: keyArn });
  store = new S3PayloadStore({ client: s3Client, bucket: BUCKET, prefix: PREFIX, kmsKeyId: keyArn, pollMs: 25 });
});

async function listKeys(): Promise<string[]> {
  const listed = await s3Client.send(new ListObjectsV2Command({ Bucket: BUCKET }));
  return (listed.Contents ?? []).map((object) => object.Key ?? '').sort();
}

async function expectCode(promise: () => Promise<unknown>, code: string): Promise<CbactionsError> {
  const error = await rejection(promise);
  expect(error).toBeInstanceOf(CbactionsError);
  expect((error as CbactionsError).code, (error as Error).message).toBe(code);
  expect((error as Error).message).not.toContain(SECRET_MARKER);
  return error as CbactionsError;
}

describe('KMS + S3 sealing', () => {
  it('round-trips a payload; the object lives at <prefix><userId>, SSE-KMS, and is gone after take', async () => {
    const payload = makePayload(BUILD_A, 256 * 1024);
    await store.put(bindingA, await sealPayload(keys, payload, bindingA));

    expect(await listKeys()).toEqual([`${PREFIX}${ROLE_ID}:AWSCodeBuild-${BUILD_A.split(':')[1]}`]);
    expect(store.describe(bindingA)).toBe(`s3://${BUCKET}/${PREFIX}${bindingA.userId}`);
    const head = await s3Client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: `${PREFIX}${bindingA.userId}` }));
    expect(head.ServerSideEncryption).toBe('aws:kms');
    const raw = await s3Client.send(new GetObjectCommand({ Bucket: BUCKET, Key: `${PREFIX}${bindingA.userId}` }));
    const stored = Buffer.from(await (raw.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray());
    expect(stored.includes(Buffer.from(SECRET_MARKER, 'utf16le'))).toBe(false);

    const opened = await openPayload(keys, await store.take(bindingA), bindingA);
    expect(opened.jobMessage.equals(payload.jobMessage)).toBe(true);
    expect(opened.runnerFile.equals(payload.runnerFile)).toBe(true);
    expect(opened.ids).toEqual(payload.ids);
    expect(await listKeys()).toEqual([]);
  });

  it('a reused payload is not found, and the message says it may have been used', async () => {
    await store.put(bindingA, await sealPayload(keys, makePayload(BUILD_A), bindingA));
    await store.take(bindingA);
    const e = await expectCode(() => store.take(bindingA, { waitMs: 100 }), SealErrorCode.NotFound);
    expect(e.message).toContain(`s3://${BUCKET}/${PREFIX}${bindingA.userId}`);
    expect(e.message).toMatch(/used already/);
  });

  it('sealed for build A cannot be opened as build B: KMS refuses the context (SEAL_WRONG_KEY)', async () => {
    const sealed = await sealPayload(keys, makePayload(BUILD_A), bindingA);
    const e = await expectCode(() => openPayload(keys, sealed, bindingB), SealErrorCode.WrongKey);
    // The refusal comes from KMS's encryption-context binding, not from a header comparison.
    const kmsError = (e.cause as CbactionsError | undefined)?.cause as Error | undefined;
    expect(kmsError?.name).toBe('InvalidCiphertextException');
    expect(e.message).toContain(BUILD_A);
    expect(e.message).toContain(BUILD_B);
  });

  it('sealed for one aws:userid cannot be opened by another session of the same build id', async () => {
    const sealed = await sealPayload(keys, makePayload(BUILD_A), bindingA);
    await expectCode(() => openPayload(keys, sealed, { buildId: BUILD_A, userId: 'AROAOTHERROLE00000:AWSCodeBuild-x' }), SealErrorCode.WrongKey);
  });

  it('tampered ciphertext is SEAL_TAMPERED after KMS released the data key', async () => {
    const sealed = await sealPayload(keys, makePayload(BUILD_A), bindingA);
    await expectCode(() => openPayload(keys, flipped(sealed, layout(sealed).aadEnd + 3), bindingA), SealErrorCode.Tampered);
    await expectCode(() => openPayload(keys, flipped(sealed, sealed.length - 1), bindingA), SealErrorCode.Tampered);
    await expectCode(() => openPayload(keys, flipped(sealed, 20), bindingA), SealErrorCode.Tampered);
  });

  it('another master key is SEAL_WRONG_KEY, naming both keys', async () => {
    const sealed = await sealPayload(keys, makePayload(BUILD_A), bindingA);
    const other = await kmsClient.send(new CreateKeyCommand({}));
    const otherArn = other.KeyMetadata?.Arn ?? '';
    for (const keyId of [otherArn, other.KeyMetadata?.KeyId ?? '']) {
      const e = await expectCode(() => openPayload(new KmsKeyService({ client: kmsClient, keyId }), sealed, bindingA), SealErrorCode.WrongKey);
      expect(e.message).toContain(keyArn);
      expect(e.message).toContain(keyId);
    }
    // The same key named by its bare id opens it.
    const sameById = new KmsKeyService({ client: kmsClient, keyId: keyArn.split('/')[1] ?? '' });
    expect((await openPayload(sameById, sealed, bindingA)).ids.buildId).toBe(BUILD_A);
  });

  it('a key that does not exist is KMS_KEY_NOT_FOUND, naming the key', async () => {
    const missing = new KmsKeyService({ client: kmsClient, keyId: 'alias/does-not-exist' });
    const e = await expectCode(() => sealPayload(missing, makePayload(BUILD_A), bindingA), SealErrorCode.KmsKeyNotFound);
    expect(e.message).toContain('alias/does-not-exist');
    expect(e.message).toContain('NotFoundException');
  });

  it('wires up from the references a build receives', async () => {
    const { keys: k, store: s } = await createPayloadServices(
      { store: parsePayloadStoreRef(`s3://${BUCKET}/${PREFIX}`), key: parsePayloadKeyRef(`kms:${keyArn}`) },
      { kms: kmsClient, s3: s3Client },
    );
    await s.put(bindingA, await sealPayload(k, makePayload(BUILD_A), bindingA));
    const head = await s3Client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: `${PREFIX}${bindingA.userId}` }));
    expect(head.SSEKMSKeyId).toContain(keyArn.split('/')[1]);
    expect((await openPayload(k, await s.take(bindingA), bindingA)).ids.buildId).toBe(BUILD_A);
  });
});

describe('S3PayloadStore', () => {
  it('requires the binding userId, saying what is missing', async () => {
    const e = await expectCode(() => store.put({ buildId: BUILD_A }, Buffer.from('x')), SealErrorCode.NoUserId);
    expect(e.message).toContain(BUILD_A);
    expect(e.message).toContain('aws:userid');
    expect(e.message).toContain('roleId');
    expect(store.describe({ buildId: BUILD_A })).toContain('no aws:userid');
  });

  it('take waits for a late put, and stops when aborted', async () => {
    const taking = store.take(bindingA, { waitMs: 30_000 });
    setTimeout(() => void store.put(bindingA, Buffer.from('late')), 150);
    expect((await taking).toString()).toBe('late');

    const controller = new AbortController();
    const reason = new Error('stop');
    const waiting = store.take(bindingA, { waitMs: 60_000, signal: controller.signal });
    setTimeout(() => controller.abort(reason), 100);
    await expect(waiting).rejects.toBe(reason);
  });

  it('keeps builds apart', async () => {
    await store.put(bindingA, Buffer.from('A'));
    await store.put(bindingB, Buffer.from('B'));
    expect((await store.take(bindingB)).toString()).toBe('B');
    expect((await store.take(bindingA)).toString()).toBe('A');
  });

  it('cancel marker at <prefix><userId>.cancel: request, observe, clear', async () => {
    expect(await store.isCancelRequested(bindingA)).toBe(false);
    await store.requestCancel(bindingA);
    expect(await listKeys()).toEqual([`${PREFIX}${bindingA.userId}.cancel`]);
    expect(await store.isCancelRequested(bindingA)).toBe(true);
    expect(await store.isCancelRequested(bindingB)).toBe(false);
    await store.clearCancel(bindingA);
    await store.clearCancel(bindingA);
    expect(await store.isCancelRequested(bindingA)).toBe(false);
  });

  it('job lease at <prefix><userId>.lease: the time is object metadata (HeadObject, no kms:Decrypt), renewed, released', async () => {
    expect(await store.readLease(bindingA)).toBeUndefined();
    await store.renewLease(bindingA, { expiresAt: new Date('2026-12-01T12:05:00.000Z') });
    await store.renewLease(bindingA, { expiresAt: new Date('2026-12-01T12:06:00.000Z') });
    expect(await listKeys()).toEqual([`${PREFIX}${bindingA.userId}.lease`]);
    expect(await store.readLease(bindingA)).toEqual({ expiresAt: new Date('2026-12-01T12:06:00.000Z') });
    expect(await store.readLease(bindingB)).toBeUndefined();
    await store.releaseLease(bindingA);
    await store.releaseLease(bindingA);
    expect(await store.readLease(bindingA)).toBeUndefined();
    expect(await listKeys()).toEqual([]);
  });

  it("job lease facts for the job's log travel as a second metadata value of the same object", async () => {
    const facts = { waits: { submittedMs: 400, queuedMs: 500, provisioningMs: 19_400 }, price: { computeType: 'BUILD_LAMBDA_1GB', rule: 'per-second' as const, region: 'eu-west-1', currency: 'EUR', asOf: '2026-05-01' } };
    const expiresAt = new Date('2026-12-01T12:05:00.000Z');
    await store.renewLease(bindingA, { expiresAt, facts });
    expect(await listKeys()).toEqual([`${PREFIX}${bindingA.userId}.lease`]);
    expect(await store.readLease(bindingA)).toEqual({ expiresAt, facts });
    await store.renewLease(bindingA, { expiresAt });
    expect(await store.readLease(bindingA)).toEqual({ expiresAt });
    await store.releaseLease(bindingA);
  });

  it('delete is idempotent', async () => {
    await store.delete(bindingA);
    await store.put(bindingA, Buffer.from('x'));
    await store.delete(bindingA);
    expect(await listKeys()).toEqual([]);
  });

  it('a missing bucket is S3_BUCKET_NOT_FOUND, naming it', async () => {
    const nowhere = new S3PayloadStore({ client: s3Client, bucket: 'no-such-bucket-here', prefix: PREFIX });
    const e = await expectCode(() => nowhere.put(bindingA, Buffer.from('x')), SealErrorCode.S3BucketNotFound);
    expect(e.message).toContain('no-such-bucket-here');
    const e2 = await expectCode(() => nowhere.take(bindingA), SealErrorCode.S3BucketNotFound);
    expect(isCbactionsError(e2)).toBe(true);
  });
});

describe('S3PayloadStore.isPending (a standby handover: was the payload taken?)', () => {
  it('is true while the payload waits, false once taken or deleted, and leaves nothing behind', async () => {
    expect(await store.isPending(bindingA)).toBe(false);
    expect(await listKeys()).toEqual([]);
    const sealed = await sealPayload(keys, makePayload(BUILD_A), bindingA);
    await store.put(bindingA, sealed);
    expect(await store.isPending(bindingA)).toBe(true);
    // Asking did not touch the payload.
    expect((await store.take(bindingA)).equals(sealed)).toBe(true);
    expect(await store.isPending(bindingA)).toBe(false);
    expect(await listKeys()).toEqual([]);
  });
});

