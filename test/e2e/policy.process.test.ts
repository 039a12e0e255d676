import { CreateRoleCommand, IAMClient } from '@aws-sdk/client-iam';
import { CreateKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { CreateBucketCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { githubContext, pullRequestContext } from '../support/context-data.js';
import { JOB_PATH_DISPATCHES, startJobPathRig, type JobPathRig } from '../support/job-path.js';
import { startMoto, type Moto } from '../support/moto.js';
import { jobMessage } from '../support/runner-root.js';

/**
 * The admission policy through the built binary and the local build service, on moto's
 * IAM/STS/KMS/S3: a rule gives repository A's jobs role A — the build is started with it
 * (serviceRoleOverride), runs as its session and opens the payload sealed for it; a pull
 * request from a fork for the privileged (Docker) pool is refused with its reason and no
 * build is started.
 */
describe.each(JOB_PATH_DISPATCHES)('admission policy through the build service (%s dispatch)', (dispatch) => {
  let moto: Moto;
  let rig: JobPathRig;
  let s3: S3Client;
  const roles: Record<string, { arn: string; roleId: string }> = {};
  const bucket = `cbactions-policy-${dispatch}`;

  beforeAll(async () => {
    moto = await startMoto();
    const config = moto.clientConfig();
    const iam = new IAMClient(config);
    for (const name of ['shared', 'repo-a']) {
      const created = await iam.send(
        new CreateRoleCommand({ RoleName: `cbactions-${name}`, AssumeRolePolicyDocument: JSON.stringify({ Version: '2012-10-17', Statement: [{ Effect: 'Allow', Principal: { Service: 'codebuild.amazonaws.com' }, Action: 'sts:AssumeRole' }] }) }),
      );
      roles[name] = { arn: String(created.Role?.Arn), roleId: String(created.Role?.RoleId) };
    }
    const key = await new KMSClient(config).send(new CreateKeyCommand({}));
    s3 = new S3Client({ ...config, forcePathStyle: true });
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
    const aws = { AWS_ENDPOINT_URL_S3: moto.endpoint, AWS_ENDPOINT_URL_KMS: moto.endpoint, AWS_ENDPOINT_URL_STS: moto.endpoint, AWS_ENDPOINT_URL_IAM: moto.endpoint };
    rig = await startJobPathRig({
      dispatch,
      aws: config,
      payloads: { key: { kms: { keyId: String(key.KeyMetadata?.Arn) } }, store: { s3: { bucket, prefix: 'payloads/' } } },
      pool: { labels: ['cbactions-docker'], build: { privileged: true, serviceRole: roles.shared } },
      policy: { roles: { 'repo-a': roles['repo-a'] }, rules: [{ name: 'repo-a', match: { repository: 'acme/a' }, role: 'repo-a' }] },
      serviceConfig: { assumeServiceRole: true },
      serviceEnv: { ...aws, AWS_ACCESS_KEY_ID: 'testing', AWS_SECRET_ACCESS_KEY: 'testing', AWS_REGION: 'us-east-1' },
      workerEnv: aws,
    });
  }, 180_000);
  afterAll(async () => {
    await rig?.stop();
    await moto?.stop();
  });

  it("a job of repository A runs as A's role and opens the payload sealed for it", async () => {
    const result = await rig.runJob({ jobBody: jobMessage({ jobId: 'job-repo-a', action: 'fail', github: githubContext('acme/a') }) });
    expect(result.crashReport).toBeNull();
    // 102: the real worker's Failed result, so the build opened its payload and ran the job.
    expect(result.exitCode).toBe(102);
    const build = (await rig.service.builds()).at(-1);
    expect(build?.request.serviceRoleOverride).toBe(roles['repo-a']?.arn);
    expect(build?.request.environmentVariablesOverride).toContainEqual(expect.objectContaining({ name: 'CBACTIONS_PAYLOAD_ROLE_ID', value: roles['repo-a']?.roleId }));
    const log = await rig.service.log(String(build?.id));
    expect(log).toContain(`payloads/${roles['repo-a']?.roleId}:AWSCodeBuild-${build?.uuid}`);
    expect((await s3.send(new ListObjectsV2Command({ Bucket: bucket }))).Contents ?? []).toEqual([]);
    if (dispatch === 'in-process') expect(rig.inProcess?.admissions).toContainEqual({ jobId: 'job-repo-a', pool: 'default', rule: 'repo-a', effect: 'run' });
  }, 120_000);

  it('a job of another repository runs as its pool\'s role', async () => {
    const result = await rig.runJob({ jobBody: jobMessage({ jobId: 'job-repo-b', github: githubContext('acme/b') }) });
    expect(result.exitCode).toBe(100);
    expect((await rig.service.builds()).at(-1)?.request.serviceRoleOverride).toBe(roles.shared?.arn);
  }, 120_000);

  it('a fork pull request for the Docker pool is refused with its reason, and no build is started', async () => {
    const before = (await rig.service.builds()).length;
    const result = await rig.runJob({ jobBody: jobMessage({ jobId: 'job-fork', github: pullRequestContext('acme/b', 'mallory/b') }) });
    expect(result.exitCode).toBe(1);
    expect(result.crashReport).toEqual(['cbactions: the policy default matched, but pull requests from forks may not use privileged (Docker) builds (pool "default") (policy.forkProtection) (POLICY_REFUSED)']);
    expect(await rig.service.builds()).toHaveLength(before);
    if (dispatch === 'in-process') expect(rig.inProcess?.admissions).toContainEqual({ jobId: 'job-fork', pool: 'default', rule: '(default)', effect: 'refuse' });
    const decisions = readFileSync(rig.inProcess?.logPath ?? rig.workerLog, 'utf8').split('\n').filter((line) => line.includes('"worker.admission"') && line.includes('job-fork'));
    expect(decisions).toHaveLength(1);
    expect(JSON.parse(decisions[0] as string)).toMatchObject({ jobId: 'job-fork', pool: 'default', rule: '(default)', effect: 'refuse', code: 'POLICY_REFUSED', fork: true });
    // A refusal is the policy working, not a failed dispatch: the alarm on `worker.failed` does not count it.
    const ends = readFileSync(rig.inProcess?.logPath ?? rig.workerLog, 'utf8').split('\n').filter((line) => line.includes('job-fork') && /"worker\.(failed|refused)"/.test(line));
    expect(ends.map((line) => (JSON.parse(line) as { event: string }).event)).toEqual(['worker.refused']);
    // The github context's token is never read, so never logged.
    expect(readFileSync(rig.inProcess?.logPath ?? rig.workerLog, 'utf8')).not.toContain('ghs_context-token-never-read');
  }, 120_000);
});
