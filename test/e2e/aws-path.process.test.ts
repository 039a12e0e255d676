import { CreateRoleCommand, IAMClient } from '@aws-sdk/client-iam';
import { CreateKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { CreateBucketCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMoto, type Moto } from '../support/moto.js';
import { startJobPathRig, type JobPathRig } from '../support/job-path.js';
import { jobMessage } from '../support/runner-root.js';

/**
 * The AWS-shaped path: KMS data keys bound to one build's identity, the payload in S3
 * under `<prefix><RoleUniqueId>:AWSCodeBuild-<uuid>`, and the build running with its
 * service role's session (the local build service assumes the role on moto's STS, as
 * CodeBuild does), so the entrypoint checks its identity with sts:GetCallerIdentity.
 */
describe('job path over KMS and S3 (moto), bound to the build identity', () => {
  let moto: Moto;
  let rig: JobPathRig;
  let s3: S3Client;
  let roleArn: string;
  let roleId: string;
  const bucket = 'cbactions-payloads-test';

  beforeAll(async () => {
    moto = await startMoto();
    const config = moto.clientConfig();
    const role = await new IAMClient(config).send(
      new CreateRoleCommand({ RoleName: 'cbactions-build', AssumeRolePolicyDocument: JSON.stringify({ Version: '2012-10-17', Statement: [{ Effect: 'Allow', Principal: { Service: 'codebuild.amazonaws.com' }, Action: 'sts:AssumeRole' }] }) }),
    );
    roleArn = String(role.Role?.Arn);
    roleId = String(role.Role?.RoleId);
    const key = await new KMSClient(config).send(new CreateKeyCommand({}));
    s3 = new S3Client({ ...config, forcePathStyle: true });
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
    const aws = {
      AWS_ENDPOINT_URL_S3: moto.endpoint,
      AWS_ENDPOINT_URL_KMS: moto.endpoint,
      AWS_ENDPOINT_URL_STS: moto.endpoint,
      AWS_ENDPOINT_URL_IAM: moto.endpoint,
    };
    rig = await startJobPathRig({
      payloads: { key: { kms: { keyId: String(key.KeyMetadata?.Arn) } }, store: { s3: { bucket, prefix: 'payloads/' } } },
      pool: { build: { serviceRole: { arn: roleArn, roleId } } },
      serviceConfig: { assumeServiceRole: true },
      serviceEnv: { ...aws, AWS_ACCESS_KEY_ID: 'testing', AWS_SECRET_ACCESS_KEY: 'testing', AWS_REGION: 'us-east-1' },
      workerEnv: aws,
    });
  });
  afterAll(async () => {
    await rig?.stop();
    await moto?.stop();
  });

  async function objects(): Promise<string[]> {
    const listed = await s3.send(new ListObjectsV2Command({ Bucket: bucket }));
    return (listed.Contents ?? []).map((object) => String(object.Key));
  }

  it('runs the job; the build ran as AWSCodeBuild-<uuid> of the pool role, and the payload is gone', async () => {
    const result = await rig.runJob({ jobBody: jobMessage({ jobId: 'job-aws', action: 'fail' }) });
    expect(result.crashReport).toBeNull();
    expect(result.exitCode).toBe(102);
    const build = (await rig.service.builds()).at(-1);
    expect(build?.request.serviceRoleOverride).toBe(roleArn);
    expect(build?.roleSessionName).toBe(`AWSCodeBuild-${build?.uuid}`);
    const log = await rig.service.log(String(build?.id));
    expect(log).toContain(`payloads/${roleId}:AWSCodeBuild-${build?.uuid}`);
    expect(await objects()).toEqual([]);
    // The job-completed hook read the price from the lease in S3 with the build's own role.
    const jobLog = readFileSync(join(rig.buildRunnerRoot, '_diag', 'fake-job-log-job-aws.txt'), 'utf8');
    expect(jobLog).toMatch(/^cbactions: build cost so far: BUILD_GENERAL1_SMALL, \d+ min billed .* \d+\.\d{4} USD at 0\.005 USD\/min \(us-east-1 list price as of 2026-05\)$/m);
  });

  it('fails clearly when the payload was bound to another role than the build runs as', async () => {
    const other = await startJobPathRigLike('AROAOTHERROLE0000001');
    try {
      const result = await other.runJob({ jobBody: jobMessage({ jobId: 'job-wrong-role' }) });
      expect(result.exitCode).toBe(1);
      expect(result.crashReport).toHaveLength(1);
      expect(result.crashReport?.[0]).toMatch(new RegExp(`this build runs as role ${roleId} .* but its job was sealed for role AROAOTHERROLE0000001.*\\(PAYLOAD_IDENTITY_MISMATCH\\)$`));
      expect(await objects()).toEqual([]);
    } finally {
      await other.stop();
    }
  });

  /** Same set-up, but the config names the wrong role id for the pool's role. */
  async function startJobPathRigLike(wrongRoleId: string): Promise<JobPathRig> {
    const aws = { AWS_ENDPOINT_URL_S3: moto.endpoint, AWS_ENDPOINT_URL_KMS: moto.endpoint, AWS_ENDPOINT_URL_STS: moto.endpoint };
    const key = await new KMSClient(moto.clientConfig()).send(new CreateKeyCommand({}));
    return startJobPathRig({
      payloads: { key: { kms: { keyId: String(key.KeyMetadata?.Arn) } }, store: { s3: { bucket, prefix: 'payloads/' } } },
      pool: { build: { serviceRole: { arn: roleArn, roleId: wrongRoleId } } },
      serviceConfig: { assumeServiceRole: true },
      serviceEnv: { ...aws, AWS_ACCESS_KEY_ID: 'testing', AWS_SECRET_ACCESS_KEY: 'testing', AWS_REGION: 'us-east-1' },
      workerEnv: aws,
    });
  }
});
