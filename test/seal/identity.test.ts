import { randomUUID } from 'node:crypto';
import { CreateRoleCommand, IAMClient } from '@aws-sdk/client-iam';
import { KMSClient, CreateKeyCommand } from '@aws-sdk/client-kms';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { AssumeRoleCommand, STSClient } from '@aws-sdk/client-sts';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { openPayload, sealPayload } from '../../src/seal/envelope.js';
import { SealErrorCode } from '../../src/seal/errors.js';
import { buildUuid, expectedSessionName, expectedUserId, resolveBuildBinding } from '../../src/seal/identity.js';
import { KmsKeyService } from '../../src/seal/kms-key-service.js';
import { S3PayloadStore } from '../../src/seal/s3-payload-store.js';
import { isCbactionsError, type CbactionsError } from '../../src/util/errors.js';
import { startMoto, type Moto } from '../support/moto.js';
import { makePayload, rejection } from './fixtures.js';

describe('expectedUserId', () => {
  it('is <roleId>:AWSCodeBuild-<uuid of project:uuid>', () => {
    expect(expectedUserId('AROAEXAMPLE123', 'my-project:0b6c9c4e-2f7d-4c11-9a8e-5d1f3a7b9c21')).toBe(
      'AROAEXAMPLE123:AWSCodeBuild-0b6c9c4e-2f7d-4c11-9a8e-5d1f3a7b9c21',
    );
    expect(buildUuid('arn:aws:codebuild:us-east-1:123456789012:build/my-project:abc-123')).toBe('abc-123');
    expect(expectedSessionName('p:u-1')).toBe('AWSCodeBuild-u-1');
  });

  it('refuses build ids that are not project:uuid, and role ids that are not unique ids', () => {
    for (const buildId of ['no-colon', ':uuid', 'project:', 'project:has space', 'project:a/b']) {
      expect(() => expectedUserId('AROAEXAMPLE123', buildId)).toThrow(expect.objectContaining({ code: SealErrorCode.BadBuildId }));
    }
    expect(() => expectedUserId('arn:aws:iam::123456789012:role/x', 'p:u')).toThrow(expect.objectContaining({ code: SealErrorCode.InvalidInput }));
  });
});

describe('resolveBuildBinding against moto STS', () => {
  let moto: Moto;
  let iam: IAMClient;
  let roleId: string;
  let roleArn: string;
  const clients: { destroy(): void }[] = [];

  beforeAll(async () => {
    moto = await startMoto();
    iam = new IAMClient(moto.clientConfig());
    clients.push(iam);
  });

  afterAll(async () => {
    for (const client of clients) client.destroy();
    await moto?.stop();
  });

  beforeEach(async () => {
    await moto.reset();
    const trust = { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Principal: { Service: 'codebuild.amazonaws.com' }, Action: 'sts:AssumeRole' }] };
    const role = await iam.send(new CreateRoleCommand({ RoleName: 'cbactions-build', AssumeRolePolicyDocument: JSON.stringify(trust) }));
    roleId = role.Role?.RoleId ?? '';
    roleArn = role.Role?.Arn ?? '';
    expect(roleId).toMatch(/^AROA/);
  });

  /** An STS client holding the credentials of a role session, as a build would. */
  async function sessionClient(sessionName: string): Promise<STSClient> {
    const sts = new STSClient(moto.clientConfig());
    clients.push(sts);
    const assumed = await sts.send(new AssumeRoleCommand({ RoleArn: roleArn, RoleSessionName: sessionName }));
    const credentials = assumed.Credentials;
    if (credentials?.AccessKeyId === undefined || credentials.SecretAccessKey === undefined) throw new Error('AssumeRole gave no credentials');
    const session = new STSClient({
      ...moto.clientConfig(),
      credentials: { accessKeyId: credentials.AccessKeyId, secretAccessKey: credentials.SecretAccessKey, sessionToken: credentials.SessionToken },
    });
    clients.push(session);
    return session;
  }

  it('gives the binding the worker computed when the session is AWSCodeBuild-<uuid>', async () => {
    const uuid = randomUUID();
    const buildId = `cbactions-pool:${uuid}`;
    const binding = await resolveBuildBinding(await sessionClient(`AWSCodeBuild-${uuid}`), buildId);
    expect(binding).toEqual({ buildId, userId: `${roleId}:AWSCodeBuild-${uuid}` });
    expect(binding.userId).toBe(expectedUserId(roleId, buildId));
  });

  it('throws PAYLOAD_IDENTITY_MISMATCH naming both values when the session is named otherwise', async () => {
    const uuid = randomUUID();
    const buildId = `cbactions-pool:${uuid}`;
    const other = randomUUID();
    const error = await rejection(async () => resolveBuildBinding(await sessionClient(`AWSCodeBuild-${other}`), buildId));
    expect(isCbactionsError(error, SealErrorCode.IdentityMismatch)).toBe(true);
    const message = (error as CbactionsError).message;
    expect(message).toContain(`${roleId}:AWSCodeBuild-${other}`);
    expect(message).toContain(`AWSCodeBuild-${uuid}`);
    expect(message).toContain(buildId);
  });

  it('throws PAYLOAD_IDENTITY_MISMATCH for a caller that is not a role session', async () => {
    const plain = new STSClient(moto.clientConfig());
    clients.push(plain);
    const error = await rejection(() => resolveBuildBinding(plain, `cbactions-pool:${randomUUID()}`));
    expect(isCbactionsError(error, SealErrorCode.IdentityMismatch)).toBe(true);
  });

  it('worker side (expectedUserId) and build side (resolveBuildBinding) meet at the same S3 object and KMS context', async () => {
    const uuid = randomUUID();
    const buildId = `cbactions-pool:${uuid}`;
    const kms = new KMSClient(moto.clientConfig());
    const s3 = new S3Client({ ...moto.clientConfig(), forcePathStyle: true });
    clients.push(kms, s3);
    const key = await kms.send(new CreateKeyCommand({}));
    await s3.send(new CreateBucketCommand({ Bucket: 'cbactions-identity-test' }));
    const keys = new KmsKeyService({ client: kms, keyId: key.KeyMetadata?.Arn ?? '' });
    const store = new S3PayloadStore({ client: s3, bucket: 'cbactions-identity-test', prefix: 'payloads/' });

    const workerBinding = { buildId, userId: expectedUserId(roleId, buildId) };
    await store.put(workerBinding, await sealPayload(keys, makePayload(buildId), workerBinding));

    const buildBinding = await resolveBuildBinding(await sessionClient(`AWSCodeBuild-${uuid}`), buildId);
    const opened = await openPayload(keys, await store.take(buildBinding), buildBinding);
    expect(opened.ids.buildId).toBe(buildId);
  });
});
