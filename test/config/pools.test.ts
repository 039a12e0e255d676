import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfigFile, parseConfig } from '../../src/config/load.js';
import { BuildSettingsSchema } from '../../src/config/schema.js';
import { buildOverrides } from '../../src/dispatch/start-build.js';

const base = {
  github: { scope: { organization: 'octo' }, auth: { token: { env: 'GITHUB_TOKEN' } } },
  codebuild: { projectName: 'cbactions' },
  payloads: { key: { kms: { keyId: 'alias/cbactions' } }, store: { s3: { bucket: 'cbactions-payloads', prefix: 'payloads/' } } },
};

function problems(pool: Record<string, unknown>): string[] {
  try {
    parseConfig({ ...base, pools: [{ name: 'ok', labels: ['a'] }, pool] });
  } catch (error) {
    return String((error as Error).message).split('\n').slice(1).map((line) => line.trim());
  }
  return [];
}

describe('pool settings are checked when the configuration is loaded', () => {
  const cases: [string, Record<string, unknown>, string][] = [
    ['privileged on Lambda', { computeType: 'BUILD_LAMBDA_2GB', environmentType: 'LINUX_LAMBDA_CONTAINER', privileged: true }, 'pools[1].build.privileged: pool "bad": privileged mode (Docker) is not available on Lambda compute'],
    ['timeout on Lambda', { computeType: 'BUILD_LAMBDA_1GB', environmentType: 'ARM_LAMBDA_CONTAINER', timeoutMinutes: 30 }, 'pools[1].build.timeoutMinutes: pool "bad": Lambda compute does not accept a build timeout'],
    ['queued timeout on Lambda', { computeType: 'BUILD_LAMBDA_1GB', environmentType: 'LINUX_LAMBDA_CONTAINER', queuedTimeoutMinutes: 30 }, 'pools[1].build.queuedTimeoutMinutes: pool "bad": Lambda compute does not accept a queued timeout'],
    ['Lambda compute in a container environment', { computeType: 'BUILD_LAMBDA_4GB', environmentType: 'LINUX_CONTAINER' }, 'pools[1].build.environmentType: pool "bad": compute type BUILD_LAMBDA_4GB needs environment type LINUX_LAMBDA_CONTAINER or ARM_LAMBDA_CONTAINER'],
    ['Lambda environment with general compute', { computeType: 'BUILD_GENERAL1_SMALL', environmentType: 'ARM_LAMBDA_CONTAINER' }, 'pools[1].build.environmentType: pool "bad": environment type ARM_LAMBDA_CONTAINER needs a BUILD_LAMBDA_* compute type'],
    ['small GPU', { computeType: 'BUILD_GENERAL1_SMALL', environmentType: 'LINUX_GPU_CONTAINER' }, 'pools[1].build.computeType: pool "bad": GPU environments need BUILD_GENERAL1_LARGE or larger'],
    ['attribute-based compute without a fleet', { computeType: 'ATTRIBUTE_BASED_COMPUTE' }, 'pools[1].build.fleetArn: pool "bad": compute type ATTRIBUTE_BASED_COMPUTE is only available with a reserved-capacity fleet'],
    ['EC2 environment without a fleet', { environmentType: 'ARM_EC2' }, 'pools[1].build.fleetArn: pool "bad": environment type ARM_EC2 is only available with a reserved-capacity fleet'],
    ['timeout out of range', { timeoutMinutes: 4 }, 'pools[1].build.timeoutMinutes: Too small: expected number to be >=5'],
    ['queued timeout out of range', { queuedTimeoutMinutes: 481 }, 'pools[1].build.queuedTimeoutMinutes: Too big: expected number to be <=480'],
    ['unknown compute type', { computeType: 'BUILD_GENERAL1_HUGE' }, 'pools[1].build.computeType: Invalid option'],
    ['bad fleet ARN', { fleetArn: 'my-fleet' }, 'pools[1].build.fleetArn: expected a CodeBuild fleet ARN'],
    ['bad service role', { serviceRole: { arn: 'arn:aws:iam::123456789012:role/r', roleId: 'nope' } }, 'pools[1].build.serviceRole.roleId: expected a role unique id (AROA…)'],
    ['unknown field', { privilegedMode: true }, 'pools[1].build: Unrecognized key: "privilegedMode"'],
  ];
  for (const [name, build, expected] of cases) {
    it(`rejects ${name}, naming the pool and field`, () => {
      const lines = problems({ name: 'bad', labels: ['x'], build });
      expect(lines.some((line) => line.startsWith(expected)), `got:\n${lines.join('\n')}`).toBe(true);
    });
  }

  it('accepts ARM, GPU and Lambda pools that CodeBuild would accept', () => {
    expect(
      problems({ name: 'arm', labels: ['arm'], build: { computeType: 'BUILD_GENERAL1_LARGE', environmentType: 'ARM_CONTAINER', privileged: true, timeoutMinutes: 120 } }),
    ).toEqual([]);
    expect(problems({ name: 'gpu', labels: ['gpu'], build: { computeType: 'BUILD_GENERAL1_LARGE', environmentType: 'LINUX_GPU_CONTAINER' } })).toEqual([]);
    expect(problems({ name: 'lambda', labels: ['fast'], build: { computeType: 'BUILD_LAMBDA_4GB', environmentType: 'ARM_LAMBDA_CONTAINER' } })).toEqual([]);
  });

  it('rejects duplicate pool names and reports every problem at once', () => {
    const lines = problems({ name: 'ok', labels: ['x'], build: { computeType: 'BUILD_LAMBDA_1GB', environmentType: 'LINUX_LAMBDA_CONTAINER', privileged: true, timeoutMinutes: 10 } });
    expect(lines).toEqual(
      expect.arrayContaining([expect.stringContaining('pools[1].name: pool name "ok" is already used by pools[0]'), expect.stringContaining('pools[1].build.privileged'), expect.stringContaining('pools[1].build.timeoutMinutes')]),
    );
  });

  it('names the file and field when a YAML file is invalid', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'config-')), 'cbactions.yaml');
    writeFileSync(path, 'github:\n  scope: {organization: octo}\n  auth: {token: {env: GITHUB_TOKEN}}\ncodebuild: {projectName: cbactions}\npayloads: {key: {kms: {keyId: k}}, store: {s3: {bucket: Bad_Bucket}}}\npools: []\n');
    await expect(loadConfigFile(path)).rejects.toMatchObject({ code: 'CONFIG_INVALID', message: expect.stringContaining(`config file ${path} is invalid`) });
    await expect(loadConfigFile(path)).rejects.toThrow(/payloads\.store\.s3\.bucket: expected an S3 bucket name/);
    await expect(loadConfigFile(path)).rejects.toThrow(/pools: Too small/);
  });
});

describe('pool settings become StartBuild overrides', () => {
  it('sends compute, environment, image, privileged mode, timeouts and service role', () => {
    const overrides = buildOverrides(
      BuildSettingsSchema.parse({
        computeType: 'BUILD_GENERAL1_2XLARGE',
        environmentType: 'LINUX_CONTAINER',
        image: 'aws/codebuild/standard:7.0',
        imagePullCredentials: 'CODEBUILD',
        privileged: true,
        timeoutMinutes: 240,
        queuedTimeoutMinutes: 60,
        serviceRole: { arn: 'arn:aws:iam::123456789012:role/jobs', roleId: 'AROAEXAMPLEROLEID1' },
      }),
    );
    expect(overrides).toEqual({
      computeType: 'BUILD_GENERAL1_2XLARGE',
      environmentType: 'LINUX_CONTAINER',
      image: 'aws/codebuild/standard:7.0',
      imagePullCredentials: 'CODEBUILD',
      privileged: true,
      timeoutMinutes: 240,
      queuedTimeoutMinutes: 60,
      serviceRoleArn: 'arn:aws:iam::123456789012:role/jobs',
    });
  });

  it('sends no privileged mode or timeouts for Lambda compute', () => {
    const overrides = buildOverrides(BuildSettingsSchema.parse({ computeType: 'BUILD_LAMBDA_8GB', environmentType: 'LINUX_LAMBDA_CONTAINER' }));
    expect(overrides).toEqual({ computeType: 'BUILD_LAMBDA_8GB', environmentType: 'LINUX_LAMBDA_CONTAINER' });
  });

  it('sends only the fleet when a pool runs on a reserved-capacity fleet', () => {
    const overrides = buildOverrides(BuildSettingsSchema.parse({ fleetArn: 'arn:aws:codebuild:us-east-1:123456789012:fleet/big:1234', environmentType: 'ARM_EC2' }));
    expect(overrides.fleetArn).toBe('arn:aws:codebuild:us-east-1:123456789012:fleet/big:1234');
    expect(overrides.computeType).toBeUndefined();
    expect(overrides.environmentType).toBeUndefined();
  });
});

describe('Lambda pools', () => {
  it('send the paths a Lambda build can write to (/tmp only)', async () => {
    const { lambdaPaths } = await import('../../src/dispatch/run-job.js');
    expect(lambdaPaths(BuildSettingsSchema.parse({ computeType: 'BUILD_LAMBDA_2GB', environmentType: 'LINUX_LAMBDA_CONTAINER' }))).toEqual({
      CBACTIONS_RUNNER_ROOT: '/tmp/actions-runner',
      CBACTIONS_KIT_DIR: '/tmp/cbactions',
      CBACTIONS_RESULT_DIR: '/tmp/cbactions-result',
    });
    expect(lambdaPaths(BuildSettingsSchema.parse({}))).toEqual({});
  });
});
