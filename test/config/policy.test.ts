import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { runtimeProblems } from '../../src/config/schema.js';

const ROLE = { arn: 'arn:aws:iam::123456789012:role/acme-app', roleId: 'AROAAPPROLE000000001' };

function input(policy: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  return {
    github: { scope: { organization: 'acme' }, auth: { token: { env: 'GITHUB_TOKEN' } } },
    codebuild: { projectName: 'cbactions', buildRoleId: 'AROAPROJECT000000001' },
    payloads: { key: { kms: { keyId: 'alias/cbactions' } }, store: { s3: { bucket: 'cbactions-payloads' } } },
    pools: [
      { name: 'default', labels: ['cbactions'], overridable: ['computeType', 'privileged'] },
      { name: 'lambda', labels: ['cbactions-lambda'], build: { computeType: 'BUILD_LAMBDA_2GB', environmentType: 'LINUX_LAMBDA_CONTAINER' }, overridable: ['privileged'] },
    ],
    policy,
    ...extra,
  };
}

function problems(policy: Record<string, unknown>, extra: Record<string, unknown> = {}): string[] {
  try {
    parseConfig(input(policy, extra));
  } catch (error) {
    return String((error as Error).message).split('\n').slice(1).map((line) => line.trim());
  }
  return [];
}

describe('the policy section is checked when the configuration is loaded', () => {
  it.each([
    ['a role no section defines', { rules: [{ name: 'r', role: 'nope' }] }, ['policy.rules[0].role: rule "r" runs as the role "nope", which is neither in policy.roles nor in deploy.roles (roles: none)']],
    ['a pool that does not exist', { rules: [{ name: 'r', match: { pool: ['gpu'] } }] }, ['policy.rules[0].match.pool[0]: rule "r" names pool "gpu", which is not in pools (pools: default, lambda)']],
    ['a setting the pool does not let rules override', { rules: [{ name: 'r', match: { pool: ['lambda'] }, build: { computeType: 'BUILD_LAMBDA_4GB' } }] }, ['policy.rules[0].build.computeType: rule "r" sets computeType for pool "lambda", which does not list it in overridable']],
    ['settings CodeBuild would refuse on the pool', { rules: [{ name: 'r', match: { pool: ['lambda'] }, build: { privileged: true } }] }, ['policy.rules[0].build.privileged: rule "r" on pool "lambda": privileged mode (Docker) is not available on Lambda compute']],
    ['an unknown compute type', { rules: [{ name: 'r', match: { pool: ['default'] }, build: { computeType: 'HUGE' } }] }, [expect.stringMatching(/^policy\.rules\[0\]\.build\.computeType: rule "r" on pool "default": Invalid option/)]],
    ['a refusal without a reason', { rules: [{ name: 'r', effect: 'refuse' }] }, ['policy.rules[0].reason: rule "r" refuses jobs: give the reason shown on the job in GitHub']],
    ['a refusal with a role', { roles: { a: ROLE }, rules: [{ name: 'r', effect: 'refuse', reason: 'no', role: 'a' }] }, ['policy.rules[0].effect: rule "r" refuses jobs, so its role and build settings would never apply: remove them']],
    ['a rule name twice', { rules: [{ name: 'r' }, { name: 'r' }] }, ['policy.rules[1].name: rule name "r" is already used by policy.rules[0]']],
    ['an unknown setting', { rules: [{ name: 'r', build: { fleetArn: 'x' } }] }, ['policy.rules[0].build: Unrecognized key: "fleetArn"']],
    ['an unknown overridable setting', {}, ['pools[0].overridable[0]: Invalid option: expected one of "computeType"|"image"|"privileged"|"timeoutMinutes"|"queuedTimeoutMinutes"']],
  ])('%s', (name, policy, expected) => {
    const extra = name === 'an unknown overridable setting' ? { pools: [{ name: 'default', labels: ['x'], overridable: ['serviceRole'] }] } : {};
    expect(problems(policy, extra)).toEqual(expected);
  });

  it('accepts a sound policy, a rule for every pool setting what only some allow, and a role only deploy.roles declares', () => {
    expect(problems({ roles: { a: ROLE }, rules: [{ name: 'big', match: { event: ['schedule'] }, build: { computeType: 'BUILD_GENERAL1_LARGE' } }, { name: 'app', match: { repository: 'acme/app' }, role: 'a' }] })).toEqual([]);
    expect(problems({ rules: [{ name: 'r', role: 'made-by-stack' }] }, { deploy: { roles: { 'made-by-stack': {} } } })).toEqual([]);
  });
});

describe('what running needs of the policy (runtimeProblems)', () => {
  it('needs every rule\'s role in policy.roles, with a roleId when payloads are bound to it', () => {
    const config = parseConfig(input({ roles: { a: { arn: ROLE.arn }, unused: { arn: ROLE.arn } }, rules: [{ name: 'one', role: 'a' }] }));
    expect(runtimeProblems(config).map((problem) => `${problem.path.join('.')}: ${problem.message}`)).toEqual([
      expect.stringMatching(/^policy\.roles\.a\.roleId: policy role "a" \(arn:aws:iam::123456789012:role\/acme-app\) has no roleId; an S3 payload store and a KMS payload key bind each job/),
    ]);
    const missing = { ...config, policy: { ...config.policy, roles: {} } };
    expect(runtimeProblems(missing).map((problem) => problem.path.join('.'))).toEqual(['policy.rules.0.role']);
  });
});
