import { Match } from 'aws-cdk-lib/assertions';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import type { ConfigInput } from '../../src/config/schema.js';
import { parseEcrImageUri } from '../../src/infra/images.js';
import { synthesizeConfig } from '../../src/infra/synth.js';
import { configInput, synth } from './helpers.js';

function problems(input: ConfigInput): string {
  try {
    parseConfig(input);
  } catch (error) {
    return (error as Error).message;
  }
  throw new Error('the config was accepted');
}

const IMAGES = { listener: 'public.ecr.aws/example/listener:1', build: 'public.ecr.aws/example/build:1' };

describe('the deploy section is validated with the one schema, naming each field', () => {
  it.each([
    [{ cpu: 1024, memoryMiB: 1024 }, 'deploy.memoryMiB: 1024 MiB is not a Fargate memory size for cpu 1024'],
    [{ cpu: 300 }, 'deploy.cpu: expected a Fargate CPU size'],
    [{ logRetentionDays: 2 }, 'deploy.logRetentionDays: expected one of 1, 3, 5'],
    [{ tasks: 0 }, 'deploy.tasks:'],
    [{ alarmEmail: 'not-an-address' }, 'deploy.alarmEmail:'],
    [{ stackName: '1abc' }, 'deploy.stackName:'],
    [{ pools: { nope: { serviceRole: {} } } }, 'deploy.pools.nope: names no pool (pools: default)'],
    [{ region: 'eu-west-1' }, 'deploy.region: "eu-west-1" differs from codebuild.region "us-east-1"'],
    [{ network: { vpcId: 'vpc-0123456789abcdef0', subnets: [{ subnetId: 'subnet-x', availabilityZone: 'eu-west-1a' }] } }, 'deploy.network.subnets[0].subnetId: expected a subnet id'],
    [{ network: { vpcId: 'vpc-0123456789abcdef0', subnets: [] } }, 'deploy.network.subnets:'],
    [{ buildRole: { statements: [{ actions: ['s3 GetObject'], resources: ['*'] }] } }, 'deploy.buildRole.statements[0].actions[0]: expected "service:Action"'],
    [{ buildRole: { statements: [{ actions: ['s3:GetObject'], resources: ['bucket/*'] }] } }, 'deploy.buildRole.statements[0].resources[0]: expected an ARN or "*"'],
    [{ buildRole: { managedPolicyArns: ['ReadOnlyAccess'] } }, 'deploy.buildRole.managedPolicyArns[0]: expected an IAM managed policy ARN'],
    [{ unknownSetting: true }, 'deploy:'],
    [{ scaling: {} }, 'deploy.scaling.maxTasks:'],
    [{ scaling: { minTasks: 3, maxTasks: 2 } }, 'deploy.scaling.maxTasks: must be at least minTasks'],
    [{ scaling: { minTasks: 0, maxTasks: 2 } }, 'deploy.scaling.minTasks:'],
    [{ scaling: { maxTasks: 2, targetUtilizationPercent: 100 } }, 'deploy.scaling.targetUtilizationPercent:'],
    [{ scaling: { maxTasks: 2, scaleInCooldownSeconds: -1 } }, 'deploy.scaling.scaleInCooldownSeconds:'],
    [{ scaling: { maxTasks: 2, unknown: 1 } }, 'deploy.scaling:'],
    [{ tasks: 2, scaling: { minTasks: 1, maxTasks: 4 } }, 'deploy.tasks: a fixed count conflicts with deploy.scaling (minTasks 1, maxTasks 4)'],
  ])('%j → %s', (deploy, expected) => {
    expect(problems(configInput({ codebuild: { projectName: 'cbactions-test', region: 'us-east-1' }, deploy: deploy as never }))).toContain(expected);
  });

  it('a pool may not have both an existing role and a stack-made one', () => {
    const input = configInput({
      pools: [{ name: 'default', labels: ['x'], build: { serviceRole: { arn: 'arn:aws:iam::123456789012:role/r', roleId: 'AROAEXAMPLEEXAMPLE1' } } }],
      deploy: { pools: { default: { serviceRole: {} } } },
    });
    expect(problems(input)).toContain('deploy.pools.default.serviceRole: pools[0].build.serviceRole already names an existing role');
  });

  it('scaling needs the demand metrics the mux publishes: publish "off" is an error naming mux.demandMetrics.publish', () => {
    const input = configInput({ mux: { demandMetrics: { publish: 'off' } }, deploy: { scaling: { maxTasks: 3 } } });
    expect(problems(input)).toContain('mux.demandMetrics.publish: is "off", but deploy.scaling scales the tasks on the demand metrics');
    expect(() => parseConfig(configInput({ mux: { demandMetrics: { publish: 'on' } }, deploy: { scaling: { maxTasks: 3 } } }))).not.toThrow();
  });

  it('mux.demandMetrics.intervalSeconds is at most 60 (the policy reads one-minute periods)', () => {
    expect(problems(configInput({ mux: { demandMetrics: { intervalSeconds: 120 } } }))).toContain('mux.demandMetrics.intervalSeconds:');
    expect(parseConfig(configInput()).mux.demandMetrics).toEqual({ publish: 'auto', intervalSeconds: 60 });
  });

  it('a config without a deploy section is still valid (defaults apply at synth)', () => {
    expect(parseConfig(configInput()).deploy).toBeUndefined();
  });
});

describe('problems only the synthesis can see', () => {
  it('an existing pool role needs its unique id: the error names pools[i].build.serviceRole.roleId', () => {
    const input = configInput({
      pools: [
        { name: 'default', labels: ['x'] },
        { name: 'legacy', labels: ['legacy'], build: { serviceRole: { arn: 'arn:aws:iam::123456789012:role/legacy' } } },
      ],
      deploy: { images: IMAGES },
    });
    expect(() => synth(input, { assets: false })).toThrow(/^pools\[1\]\.build\.serviceRole\.roleId: pool "legacy" runs as the existing role/);
  });

  it('building images needs the repository: the error names deploy.images', () => {
    expect(() => synth(configInput(), { assets: false })).toThrow(/^deploy\.images: no image given/);
  });

  it('warns about a Lambda pool on the project image and an ARM pool on a single-architecture URI, naming the field', () => {
    const { annotations } = synth(
      configInput({
        pools: [
          { name: 'default', labels: ['x'] },
          { name: 'lambda', labels: ['fast'], build: { computeType: 'BUILD_LAMBDA_2GB', environmentType: 'LINUX_LAMBDA_CONTAINER' } },
          { name: 'arm', labels: ['arm'], build: { environmentType: 'ARM_CONTAINER' } },
        ],
        deploy: {
          images: IMAGES,
          tasks: 2,
          network: { vpcId: 'vpc-0123456789abcdef0', subnets: [{ subnetId: 'subnet-0aaaaaaaaaaaaaaa1', availabilityZone: 'eu-west-1a' }] },
          pools: { arm: { serviceRole: {} } },
        },
      }),
      { assets: false },
    );
    annotations.hasWarning('*', Match.stringLikeRegexp('^pools\\[1\\]\\.build\\.image: pool "lambda" uses Lambda compute'));
    annotations.hasWarning('*', Match.stringLikeRegexp('^pools\\[2\\]\\.build\\.image: pool "arm" runs on ARM_CONTAINER'));
    annotations.hasWarning('*', Match.stringLikeRegexp("^deploy\\.network\\.subnets: all subnets are in eu-west-1a; 2 tasks can't spread"));
  });

  it('a pool role in a VPC gets the ENI permissions for the configured subnets', () => {
    const { json } = synth(
      configInput({
        deploy: {
          images: IMAGES,
          network: { vpcId: 'vpc-0123456789abcdef0', subnets: [{ subnetId: 'subnet-0aaaaaaaaaaaaaaa1', availabilityZone: 'eu-west-1a' }], codebuild: true },
          pools: { default: { serviceRole: {} } },
        },
      }),
      { assets: false },
    );
    const text = JSON.stringify(json);
    expect(text).toContain('"ArnEquals":{"ec2:Subnet":[');
  });
});

describe('image URIs', () => {
  it('splits private ECR URIs, with a tag or a digest', () => {
    expect(parseEcrImageUri('123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/cbactions:1.2')).toEqual({ account: '123456789012', region: 'eu-west-1', repositoryName: 'team/cbactions', tagOrDigest: '1.2' });
    expect(parseEcrImageUri(`123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/x@sha256:${'b'.repeat(64)}`)?.tagOrDigest).toBe(`sha256:${'b'.repeat(64)}`);
    expect(parseEcrImageUri('123456789012.dkr.ecr.eu-west-1.amazonaws.com/x')?.tagOrDigest).toBe('latest');
  });

  it('leaves every other registry alone', () => {
    expect(parseEcrImageUri('public.ecr.aws/example/build:1')).toBeUndefined();
    expect(parseEcrImageUri('ghcr.io/octo/cbactions:1')).toBeUndefined();
  });
});

describe('an account-specific stack', () => {
  it('synthesizes offline, and names the values the CDK CLI looks up at deploy', () => {
    const outdir = mkdtempSync(join(tmpdir(), 'cbactions-synth-'));
    const result = synthesizeConfig(parseConfig(configInput({ deploy: { account: '123456789012', region: 'eu-west-1' } })), { outdir });
    expect(result.stackName).toBe('cbactions');
    expect(result.templatePath).toBe(join(outdir, 'cbactions.template.json'));
    expect(result.lookups.some((key) => key.startsWith('availability-zones:account=123456789012:region=eu-west-1'))).toBe(true);
    expect(existsSync(result.templatePath)).toBe(true);
  });
});
