import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { configInput, synth } from './helpers.js';

/**
 * cfn-lint (AWS CloudFormation Linter) over the synthesized templates: a check of what we
 * deploy that is independent of CDK and cdk-nag (resource schemas, IAM policy syntax and
 * actions, intrinsic functions, region support). CI has it on the machine (`.ci/run` checks);
 * without it this test fails, it never skips.
 */

/** Rules this project ignores, each with why. None today; add `[ruleId, reason]` here. */
const IGNORED_RULES: [string, string][] = [];

interface LintRun {
  code: number;
  output: string;
}

function cfnLint(files: string[]): Promise<LintRun> {
  const ignore = IGNORED_RULES.length === 0 ? [] : ['--ignore-checks', ...IGNORED_RULES.map(([rule]) => rule)];
  return new Promise((resolve, reject) => {
    execFile('cfn-lint', ['--regions', 'us-east-1', 'eu-west-1', ...ignore, '--', ...files], { timeout: 240_000, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error !== null && (error as NodeJS.ErrnoException).code === 'ENOENT') {
        reject(new Error('cfn-lint is not installed (pip install cfn-lint): this test lints the synthesized templates with it and can not run without it'));
        return;
      }
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : -1;
      resolve({ code, output: `${stdout}${stderr}` });
    });
  });
}

/** Everything optional switched on: builds in a VPC, pool roles (own with broad grants, existing), policy roles (created, existing), alarms, events, task auto scaling. */
const FEATURED = configInput({
  pools: [
    { name: 'default', labels: ['cbactions'], build: { privileged: true } },
    { name: 'arm', labels: ['cbactions-arm'], build: { environmentType: 'ARM_CONTAINER' } },
    { name: 'legacy', labels: ['legacy'], build: { serviceRole: { arn: 'arn:aws:iam::123456789012:role/legacy-builds', roleId: 'AROAEXISTINGROLE1234' } } },
  ],
  policy: {
    roles: { 'old-deployer': { arn: 'arn:aws:iam::123456789012:role/old-deployer', roleId: 'AROAEXISTINGPOLICY12' } },
    rules: [
      { name: 'site', match: { repository: 'acme/site' }, role: 'site-deployer' },
      { name: 'old', match: { repository: 'acme/old' }, role: 'old-deployer' },
    ],
  },
  deploy: {
    stackName: 'cbactions-test',
    account: '123456789012',
    region: 'eu-west-1',
    images: { listener: '123456789012.dkr.ecr.eu-west-1.amazonaws.com/cbactions-listener:1', build: '123456789012.dkr.ecr.eu-west-1.amazonaws.com/cbactions-build:1' },
    network: {
      vpcId: 'vpc-0123456789abcdef0',
      subnets: [
        { subnetId: 'subnet-0123456789abcdef0', availabilityZone: 'eu-west-1a' },
        { subnetId: 'subnet-0123456789abcdef1', availabilityZone: 'eu-west-1b' },
      ],
      codebuild: true,
    },
    alarmEmail: 'ops@example.com',
    scaling: { minTasks: 2, maxTasks: 6 },
    buildRole: { statements: [{ actions: ['s3:*', 'kms:*'], resources: ['*'] }] },
    pools: { arm: { serviceRole: { managedPolicyArns: ['arn:aws:iam::aws:policy/AdministratorAccess'] } } },
    roles: { 'site-deployer': { statements: [{ actions: ['s3:PutObject'], resources: ['arn:aws:s3:::acme-site/*'] }] } },
  },
});

describe('cfn-lint', () => {
  it('finds nothing in the default deployment or in one with every option on', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cbactions-cfn-lint-'));
    const files: string[] = [];
    for (const [name, input, assets] of [
      ['default', configInput(), true],
      ['featured', FEATURED, false],
    ] as const) {
      const { json } = synth(input, { assets });
      const file = join(dir, `${name}.template.json`);
      writeFileSync(file, JSON.stringify(json, null, 1));
      files.push(file);
    }
    const run = await cfnLint(files);
    expect(run.output).toBe('');
    expect(run.code).toBe(0);
  }, 300_000);
});
