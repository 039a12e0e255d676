import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { buildRoleGrantWarnings } from '../../src/infra/build-role-grants.js';
import { configInput } from './helpers.js';

const GUARDS = "cbactions' Deny guards in the payload bucket and key policies keep each build to its own payload regardless";

describe('build role grant warnings (deploy)', () => {
  it('say nothing for the default deployment or narrow grants', () => {
    expect(buildRoleGrantWarnings(parseConfig(configInput()))).toEqual([]);
    const narrow = configInput({
      deploy: {
        buildRole: {
          managedPolicyArns: ['arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly'],
          statements: [
            { actions: ['s3:GetObject'], resources: ['arn:aws:s3:::my-artifacts/*'] },
            { actions: ['sqs:*'], resources: ['*'] },
            { effect: 'Deny', actions: ['s3:*'], resources: ['*'] },
          ],
        },
      },
    });
    expect(buildRoleGrantWarnings(parseConfig(narrow))).toEqual([]);
  });

  it('name the role and its broad grants, and that the guards still hold', () => {
    const config = configInput({
      pools: [
        { name: 'default', labels: ['cbactions'] },
        { name: 'gpu', labels: ['gpu'] },
      ],
      deploy: {
        buildRole: { managedPolicyArns: ['arn:aws:iam::aws:policy/PowerUserAccess'], statements: [{ actions: ['s3:*', 'kms:*'], resources: ['*'] }] },
        pools: { gpu: { serviceRole: { statements: [{ actions: ['kms:Decrypt'], resources: ['arn:aws:kms:eu-west-1:123456789012:key/*'] }] } } },
      },
    });
    expect(buildRoleGrantWarnings(parseConfig(config))).toEqual([
      `the project's build role (deploy.buildRole) is granted PowerUserAccess; s3:*, kms:* on *: job code in its builds may use all of that, but ${GUARDS}`,
      `pool "gpu"'s build role (deploy.pools.gpu.serviceRole) is granted kms:Decrypt on arn:aws:kms:eu-west-1:123456789012:key/*: job code in its builds may use all of that, but ${GUARDS}`,
    ]);
  });

  it('add that a role administering IAM could change the guarding policies through another principal', () => {
    for (const buildRole of [
      { managedPolicyArns: ['arn:aws:iam::aws:policy/AdministratorAccess'] },
      { statements: [{ actions: ['iam:*'], resources: ['*'] }] },
      { statements: [{ actions: ['iam:Put*', 'iam:Attach*'], resources: ['*'] }] },
    ]) {
      const [warning, ...rest] = buildRoleGrantWarnings(parseConfig(configInput({ deploy: { buildRole } })));
      expect(rest).toEqual([]);
      expect(warning).toContain("the project's build role (deploy.buildRole) is granted ");
      expect(warning).toContain(GUARDS);
      expect(warning).toContain('it can also administer IAM, so job code could create another principal and, with that, change those policies');
    }
  });

  it('customer managed policies may hold anything', () => {
    const config = configInput({ deploy: { buildRole: { managedPolicyArns: ['arn:aws:iam::123456789012:policy/ci-deployer'] } } });
    expect(buildRoleGrantWarnings(parseConfig(config))).toEqual([
      `the project's build role (deploy.buildRole) is granted arn:aws:iam::123456789012:policy/ci-deployer (contents unknown at synthesis): job code in its builds may use all of that, but ${GUARDS}`,
    ]);
  });

  it('a pool on an existing role gets a warning: its grants are not in the config', () => {
    const config = configInput({
      pools: [{ name: 'legacy', labels: ['legacy'], build: { serviceRole: { arn: 'arn:aws:iam::123456789012:role/legacy-builds', roleId: 'AROAEXISTINGROLE1234' } } }],
    });
    expect(buildRoleGrantWarnings(parseConfig(config))).toEqual([
      `pool "legacy" runs as the existing role arn:aws:iam::123456789012:role/legacy-builds (pools[0].build.serviceRole), whose grants the stack can't see: ` +
        `job code in its builds may use whatever it holds, but ${GUARDS}, unless the role can administer IAM (README, "Security")`,
    ]);
  });
});
