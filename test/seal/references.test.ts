import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PayloadsSchema } from '../../src/config/schema.js';
import { openPayload, sealPayload } from '../../src/seal/envelope.js';
import { SealErrorCode } from '../../src/seal/errors.js';
import { createKeyService, createPayloadServices, createPayloadStore } from '../../src/seal/factory.js';
import { LocalKeyService, createLocalKeyFile } from '../../src/seal/local-key-service.js';
import { LocalPayloadStore } from '../../src/seal/local-payload-store.js';
import {
  PAYLOAD_KEY_VARIABLE,
  PAYLOAD_STORE_VARIABLE,
  formatPayloadKeyRef,
  formatPayloadStoreRef,
  parsePayloadKeyRef,
  parsePayloadStoreRef,
  payloadEnvironment,
  payloadRefsFromConfig,
  payloadRefsFromEnvironment,
} from '../../src/seal/references.js';
import { isCbactionsError } from '../../src/util/errors.js';
import { BUILD_A, makePayload, rejection } from './fixtures.js';

function expectBadReference(fn: () => unknown, variable: string): void {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  expect(isCbactionsError(caught, SealErrorCode.BadReference), String(caught)).toBe(true);
  expect((caught as Error).message).toContain(variable);
}

describe('payload store references', () => {
  it('parses s3:// and file:// forms', () => {
    expect(parsePayloadStoreRef('s3://my-bucket/payloads/')).toEqual({ kind: 's3', bucket: 'my-bucket', prefix: 'payloads/' });
    expect(parsePayloadStoreRef('s3://my-bucket/a/b/')).toEqual({ kind: 's3', bucket: 'my-bucket', prefix: 'a/b/' });
    expect(parsePayloadStoreRef('s3://my-bucket')).toEqual({ kind: 's3', bucket: 'my-bucket', prefix: '' });
    expect(parsePayloadStoreRef('s3://my-bucket/')).toEqual({ kind: 's3', bucket: 'my-bucket', prefix: '' });
    expect(parsePayloadStoreRef('file:///var/lib/cbactions/payloads')).toEqual({ kind: 'local', dir: '/var/lib/cbactions/payloads' });
    expect(parsePayloadStoreRef('file:///tmp/with%20space')).toEqual({ kind: 'local', dir: '/tmp/with space' });
  });

  it('refuses bad values, naming the variable', () => {
    for (const value of [undefined, '', 's3://', 's3://Bad_Bucket/p/', 's3://my-bucket/no-slash', 's3://my-bucket/a b/', 'http://x/y', '/abs/dir', 'file://host/dir', 'file:///']) {
      expectBadReference(() => parsePayloadStoreRef(value), PAYLOAD_STORE_VARIABLE);
    }
    expectBadReference(() => parsePayloadStoreRef('nope', 'MY_VAR'), 'MY_VAR');
  });

  it('formats what it parses', () => {
    for (const value of ['s3://my-bucket/payloads/', 's3://my-bucket/', 'file:///tmp/with%20space', 'file:///var/lib/x']) {
      expect(formatPayloadStoreRef(parsePayloadStoreRef(value))).toBe(value);
    }
  });
});

describe('payload key references', () => {
  it('parses kms: and file:// forms', () => {
    expect(parsePayloadKeyRef('kms:alias/cbactions')).toEqual({ kind: 'kms', keyId: 'alias/cbactions' });
    const arn = 'arn:aws:kms:us-east-1:123456789012:key/0b6c9c4e-2f7d-4c11-9a8e-5d1f3a7b9c21';
    expect(parsePayloadKeyRef(`kms:${arn}`)).toEqual({ kind: 'kms', keyId: arn });
    expect(parsePayloadKeyRef('file:///etc/cbactions/payload.key')).toEqual({ kind: 'local', file: '/etc/cbactions/payload.key' });
  });

  it('refuses bad values, naming the variable', () => {
    for (const value of [undefined, ' ', 'kms:', 'kms:has space', 'aws-kms:x', 'payload.key', 'file:relative']) {
      expectBadReference(() => parsePayloadKeyRef(value), PAYLOAD_KEY_VARIABLE);
    }
  });

  it('formats what it parses', () => {
    for (const value of ['kms:alias/cbactions', 'file:///etc/cbactions/payload.key']) {
      expect(formatPayloadKeyRef(parsePayloadKeyRef(value))).toBe(value);
    }
  });
});

describe('from config to environment and back', () => {
  it('maps the payloads section to the two variables', () => {
    const payloads = PayloadsSchema.parse({ key: { kms: { keyId: 'alias/cbactions' } }, store: { s3: { bucket: 'my-bucket' } } });
    const env = payloadEnvironment(payloadRefsFromConfig(payloads));
    expect(env).toEqual({ CBACTIONS_PAYLOAD_STORE: 's3://my-bucket/payloads/', CBACTIONS_PAYLOAD_KEY: 'kms:alias/cbactions' });
    expect(payloadRefsFromEnvironment(env)).toEqual(payloadRefsFromConfig(payloads));
  });

  it('requires absolute local paths unless a base directory is given', () => {
    const payloads = PayloadsSchema.parse({ key: { local: { file: 'keys/payload.key' } }, store: { local: { dir: '/srv/payloads' } } });
    let caught: unknown;
    try {
      payloadRefsFromConfig(payloads);
    } catch (error) {
      caught = error;
    }
    expect(isCbactionsError(caught, SealErrorCode.BadReference)).toBe(true);
    expect((caught as Error).message).toContain('payloads.key.local.file');
    expect(payloadEnvironment(payloadRefsFromConfig(payloads, { baseDir: '/etc/cbactions' }))).toEqual({
      CBACTIONS_PAYLOAD_STORE: 'file:///srv/payloads',
      CBACTIONS_PAYLOAD_KEY: 'file:///etc/cbactions/keys/payload.key',
    });
  });

  it('names the missing variable', () => {
    expectBadReference(() => payloadRefsFromEnvironment({ CBACTIONS_PAYLOAD_KEY: 'kms:alias/x' }), PAYLOAD_STORE_VARIABLE);
    expectBadReference(() => payloadRefsFromEnvironment({ CBACTIONS_PAYLOAD_STORE: 's3://my-bucket/' }), PAYLOAD_KEY_VARIABLE);
  });
});

describe('factories', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cbactions-seal-factory-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('build local services from references that seal and open a payload', async () => {
    const keyFile = join(dir, 'payload.key');
    await createLocalKeyFile(keyFile);
    const env = payloadEnvironment({ store: { kind: 'local', dir: join(dir, 'payloads') }, key: { kind: 'local', file: keyFile } });
    const { keys, store } = await createPayloadServices(payloadRefsFromEnvironment(env), {});
    expect(keys).toBeInstanceOf(LocalKeyService);
    expect(store).toBeInstanceOf(LocalPayloadStore);
    const binding = { buildId: BUILD_A };
    await store.put(binding, await sealPayload(keys, makePayload(BUILD_A), binding));
    const opened = await openPayload(keys, await store.take(binding), binding);
    expect(opened.ids.buildId).toBe(BUILD_A);
  });

  it('say which client is missing for an AWS reference', async () => {
    const noKms = await rejection(() => createKeyService({ kind: 'kms', keyId: 'alias/x' }, {}));
    expect(isCbactionsError(noKms, SealErrorCode.MissingClient)).toBe(true);
    expect((noKms as Error).message).toContain('KMS');
    let noS3: unknown;
    try {
      createPayloadStore({ kind: 's3', bucket: 'my-bucket', prefix: '' }, {});
    } catch (error) {
      noS3 = error;
    }
    expect(isCbactionsError(noS3, SealErrorCode.MissingClient)).toBe(true);
    expect((noS3 as Error).message).toContain('s3://my-bucket/');
  });
});
