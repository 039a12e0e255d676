import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import type { ConfigInput } from '../../src/config/schema.js';
import { buildRoleGrantWarnings } from '../../src/infra/build-role-grants.js';
import { MAX_BUILD_ROLES } from '../../src/infra/cbactions.js';
import { actionsOf, configInput, fakeRoleId, ROOT, logicalId, nagFindings, onlyResource, resolveIntrinsics, resourcesOfType, roleStatements, synth, type Statement, type Synthesized } from './helpers.js';

/**
 * Roles for policy rules (deploy.roles, created by the stack; policy.roles, existing ones):
 * each is a build role like the project's and the pools' own — trusted by CodeBuild for this
 * project only, given its own payload's statements, named by the bucket's and key's Deny
 * guards — that the listener task may pass to CodeBuild (serviceRoleOverride), and the
 * runtime config names it with its unique id. iam-evaluation.test.ts evaluates the guards.
 */

const USERID = '${aws:userid}';
const ADMINISTRATOR_ACCESS = 'arn:aws:iam::aws:policy/AdministratorAccess';
const LEGACY_ARN = 'arn:aws:iam::123456789012:role/legacy-deployer';
const LEGACY_ROLE_ID = 'AROAEXISTINGPOLICY12';
const IMAGES = { listener: 'public.ecr.aws/example/listener:1', build: 'public.ecr.aws/example/build:1' };

/** Two roles the stack creates, one existing role, a rule for each. */
function policyDeployment(overrides: { deploy?: NonNullable<ConfigInput['deploy']>; policy?: ConfigInput['policy'] } = {}): ConfigInput {
  return configInput({
    policy: {
      roles: { 'legacy-deployer': { arn: LEGACY_ARN, roleId: LEGACY_ROLE_ID } },
      rules: [
        { name: 'site', match: { repository: 'acme/site', ref: 'refs/heads/main' }, role: 'site-deployer' },
        { name: 'infra', match: { repository: 'acme/infra', ref: 'refs/heads/main' }, role: 'infra-admin' },
        { name: 'old', match: { repository: 'acme/old' }, role: 'legacy-deployer' },
      ],
    },
    deploy: {
      images: IMAGES,
      roles: {
        'site-deployer': { statements: [{ actions: ['s3:PutObject'], resources: ['arn:aws:s3:::acme-site/*'] }] },
        'infra-admin': { managedPolicyArns: [ADMINISTRATOR_ACCESS] },
      },
    },
    ...overrides,
  });
}

let deployed: Synthesized;
let ids: { buildRole: string; site: string; infra: string; taskRole: string; bucket: string; key: string; project: string };

beforeAll(() => {
  deployed = synth(policyDeployment(), { assets: false });
  const { stack } = deployed;
  const c = stack.cbactions;
  ids = {
    buildRole: logicalId(stack, c.buildRole),
    site: logicalId(stack, c.policyRoles.get('site-deployer')),
    infra: logicalId(stack, c.policyRoles.get('infra-admin')),
    taskRole: logicalId(stack, c.taskRole),
    bucket: logicalId(stack, c.payloadBucket),
    key: logicalId(stack, c.payloadKey),
    project: logicalId(stack, c.project),
  };
}, 120_000);

type Json = Record<string, unknown>;

function objectArn(suffix: string): unknown {
  return { 'Fn::Join': ['', [{ 'Fn::GetAtt': [ids.bucket, 'Arn'] }, `/jobs/${suffix}`]] };
}

function resource(id: string): Json {
  const found = (deployed.json.Resources as Record<string, Json>)[id];
  if (found === undefined) throw new Error(`no resource ${id}`);
  return found;
}

/** The payload statements every build role gets (iam.ts buildPayloadStatements), by Sid. */
function expectPayloadStatements(statements: Statement[]): void {
  const bySid = new Map(statements.map((statement) => [statement.Sid, statement]));
  expect(bySid.get('OwnPayloadOnly')).toMatchObject({ Effect: 'Allow', Action: ['s3:GetObject', 's3:DeleteObject'], Resource: [objectArn(USERID), objectArn(`${USERID}.cancel`)] });
  expect(bySid.get('ReadOwnLeaseOnly')).toMatchObject({ Action: 's3:GetObject', Resource: objectArn(`${USERID}.lease`) });
  expect(bySid.get('ListOwnPayloadOnly')?.Condition).toEqual({ StringEquals: { 's3:prefix': [`jobs/${USERID}`, `jobs/${USERID}.cancel`, `jobs/${USERID}.lease`] } });
  expect(bySid.get('DecryptOwnDataKeyOnly')).toMatchObject({
    Action: 'kms:Decrypt',
    Resource: { 'Fn::GetAtt': [ids.key, 'Arn'] },
    Condition: { StringEquals: { 'kms:EncryptionContext:cbactions:userid': USERID } },
  });
  expect(bySid.get('DecryptOwnPayloadObjectOnly')?.Condition?.StringEquals?.['kms:EncryptionContext:aws:s3:arn']).toEqual([objectArn(USERID), objectArn(`${USERID}.cancel`), objectArn(`${USERID}.lease`)]);
}

describe('roles the stack creates for policy rules (deploy.roles)', () => {
  it('one IAM role each, assumable only by CodeBuild for this account\'s project', () => {
    for (const id of [ids.site, ids.infra]) {
      expect(resource(id).Type).toBe('AWS::IAM::Role');
      const trust = (resource(id).Properties as Json).AssumeRolePolicyDocument as { Statement: Statement[] };
      expect(trust.Statement).toEqual([
        {
          Action: 'sts:AssumeRole',
          Effect: 'Allow',
          Principal: { Service: 'codebuild.amazonaws.com' },
          Condition: {
            StringEquals: { 'aws:SourceAccount': { Ref: 'AWS::AccountId' } },
            ArnLike: { 'aws:SourceArn': { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':codebuild:', { Ref: 'AWS::Region' }, ':', { Ref: 'AWS::AccountId' }, ':project/cbactions-test']] } },
          },
        },
      ]);
    }
    expect(deployed.stack.cbactions.policyRoles.size).toBe(3);
  });

  it("each carries its own permissions and none of the other's", () => {
    const site = roleStatements(deployed.json, ids.site);
    expect(site).toContainEqual(expect.objectContaining({ Effect: 'Allow', Action: 's3:PutObject', Resource: 'arn:aws:s3:::acme-site/*' }));
    expect((resource(ids.site).Properties as Json).ManagedPolicyArns).toBeUndefined();
    expect((resource(ids.infra).Properties as Json).ManagedPolicyArns).toEqual([ADMINISTRATOR_ACCESS]);
    for (const other of [ids.infra, ids.buildRole]) {
      expect(roleStatements(deployed.json, other).some((statement) => actionsOf(statement).includes('s3:PutObject')), other).toBe(false);
    }
    expect((resource(ids.buildRole).Properties as Json).ManagedPolicyArns).toBeUndefined();
  });

  it('each gets the payload statements of a build role, bound to its own sessions, and writes to the build log group', () => {
    for (const id of [ids.site, ids.infra]) {
      const statements = roleStatements(deployed.json, id);
      expectPayloadStatements(statements);
      const buildLogs = { 'Fn::GetAtt': [logicalId(deployed.stack, deployed.stack.cbactions.buildLogGroup), 'Arn'] };
      expect(statements).toContainEqual(expect.objectContaining({ Action: ['logs:CreateLogStream', 'logs:PutLogEvents'], Resource: buildLogs }));
    }
  });

  it('an output names each role\'s ARN', () => {
    const outputs = Object.values(deployed.json.Outputs as Record<string, { Value: unknown; Description: string }>);
    expect(outputs).toContainEqual({ Value: { 'Fn::GetAtt': [ids.site, 'Arn'] }, Description: 'Role "site-deployer" that policy rules run builds as (deploy.roles.site-deployer)' });
    expect(outputs).toContainEqual({ Value: { 'Fn::GetAtt': [ids.infra, 'Arn'] }, Description: 'Role "infra-admin" that policy rules run builds as (deploy.roles.infra-admin)' });
  });
});

describe('existing roles policy rules name (policy.roles)', () => {
  it('get the same payload statements, attached by name, once', () => {
    const policies = resourcesOfType(deployed.json, 'AWS::IAM::Policy').filter(([, policy]) => JSON.stringify((policy.Properties as Json).Roles).includes('legacy-deployer'));
    expect(policies).toHaveLength(1);
    expectPayloadStatements(((policies[0]?.[1].Properties as Json).PolicyDocument as { Statement: Statement[] }).Statement);
  });

  it('one that is also a pool\'s role is imported once', () => {
    const input = policyDeployment();
    input.pools = [
      { name: 'default', labels: ['cbactions'] },
      { name: 'legacy', labels: ['legacy'], build: { serviceRole: { arn: LEGACY_ARN, roleId: LEGACY_ROLE_ID } } },
    ];
    const { json, stack } = synth(input, { assets: false });
    expect(stack.cbactions.policyRoles.get('legacy-deployer')).toBe(stack.cbactions.poolBuildRoles.get('legacy'));
    expect(resourcesOfType(json, 'AWS::IAM::Policy').filter(([, policy]) => JSON.stringify((policy.Properties as Json).Roles).includes('legacy-deployer'))).toHaveLength(1);
  });

  it('needs its unique id: the error names policy.roles.<name>.roleId', () => {
    const input = policyDeployment({ policy: { roles: { 'legacy-deployer': { arn: LEGACY_ARN } }, rules: [{ name: 'old', role: 'legacy-deployer' }] } });
    expect(() => synth(input, { assets: false })).toThrow(/^policy\.roles\.legacy-deployer\.roleId: role "legacy-deployer" is the existing role arn:aws:iam::123456789012:role\/legacy-deployer; give its unique id/);
  });
});

describe('the listener task and the payload guards know every policy role', () => {
  const everyBuildRole = (): unknown[] => [{ 'Fn::GetAtt': [ids.buildRole, 'Arn'] }, { 'Fn::GetAtt': [ids.site, 'Arn'] }, { 'Fn::GetAtt': [ids.infra, 'Arn'] }, LEGACY_ARN];

  it('the task role passes exactly the build roles, to CodeBuild only (StartBuild with serviceRoleOverride)', () => {
    const statements = roleStatements(deployed.json, ids.taskRole);
    expect(statements.find((statement) => statement.Sid === 'PassBuildRolesToCodeBuild')).toEqual({
      Sid: 'PassBuildRolesToCodeBuild',
      Effect: 'Allow',
      Action: 'iam:PassRole',
      Resource: everyBuildRole(),
      Condition: { StringEquals: { 'iam:PassedToService': 'codebuild.amazonaws.com' } },
    });
    expect(statements.filter((statement) => actionsOf(statement).includes('iam:PassRole'))).toHaveLength(1);
    expect(statements.find((statement) => statement.Sid === 'RunBuildsOfOwnProject')?.Resource).toEqual({ 'Fn::GetAtt': [ids.project, 'Arn'] });
  });

  it("the bucket policy's and the key policy's build guards name every policy role", () => {
    const [, bucketPolicy] = resourcesOfType(deployed.json, 'AWS::S3::BucketPolicy').find(([, policy]) => JSON.stringify((policy.Properties as Json).Bucket).includes(ids.bucket)) ?? [];
    const bucketGuards = ((bucketPolicy?.Properties as Json).PolicyDocument as { Statement: Statement[] }).Statement.filter((statement) => statement.Sid?.startsWith('Builds'));
    expect(bucketGuards).toHaveLength(5);
    const [, key] = onlyResource(deployed.json, 'AWS::KMS::Key');
    const keyStatements = ((key.Properties as Json).KeyPolicy as { Statement: Statement[] }).Statement.filter((statement) => statement.Sid === 'OpeningByBuilds' || statement.Sid?.startsWith('Builds'));
    expect(keyStatements).toHaveLength(3);
    for (const statement of [...bucketGuards, ...keyStatements]) expect(statement.Condition?.ArnEquals, statement.Sid).toEqual({ 'aws:PrincipalArn': everyBuildRole() });
  });
});

describe('runtime config delivered to the task', () => {
  let runtime: Json;
  beforeAll(() => {
    const [, definition] = onlyResource(deployed.json, 'AWS::ECS::TaskDefinition');
    const container = ((definition.Properties as Json).ContainerDefinitions as { Environment: { Name: string; Value: unknown }[] }[])[0];
    runtime = JSON.parse(String(resolveIntrinsics(container?.Environment.find((entry) => entry.Name === 'CBACTIONS_CONFIG_JSON')?.Value, deployed.json))) as Json;
  });

  it('fills policy.roles with each created role\'s ARN and unique id, keeps the existing one, and keeps the rules', () => {
    const config = parseConfig(runtime, 'runtime config', { runtime: true });
    expect(config.deploy).toBeUndefined();
    expect(config.policy.roles).toEqual({
      'legacy-deployer': { arn: LEGACY_ARN, roleId: LEGACY_ROLE_ID },
      'site-deployer': { arn: `arn:aws:iam::123456789012:role/${ids.site}`, roleId: fakeRoleId(ids.site) },
      'infra-admin': { arn: `arn:aws:iam::123456789012:role/${ids.infra}`, roleId: fakeRoleId(ids.infra) },
    });
    expect(config.policy.rules.map((rule) => [rule.name, rule.role])).toEqual([
      ['site', 'site-deployer'],
      ['infra', 'infra-admin'],
      ['old', 'legacy-deployer'],
    ]);
  });

  it('the unique ids are the roles\' own (Fn::GetAtt RoleId), which payloads are bound to', () => {
    const [, definition] = onlyResource(deployed.json, 'AWS::ECS::TaskDefinition');
    const text = JSON.stringify((definition.Properties as Json).ContainerDefinitions);
    expect(text).toContain(JSON.stringify({ 'Fn::GetAtt': [ids.site, 'RoleId'] }));
    expect(text).toContain(JSON.stringify({ 'Fn::GetAtt': [ids.infra, 'RoleId'] }));
  });
});

describe('cdk-nag', () => {
  it('AwsSolutions reports nothing unsuppressed, also for a role with wildcard statements', () => {
    expect(nagFindings(deployed.annotations)).toEqual([]);
    const wildcard = policyDeployment();
    wildcard.deploy = { ...wildcard.deploy, roles: { ...wildcard.deploy?.roles, 'site-deployer': { statements: [{ actions: ['s3:Put*'], resources: ['arn:aws:s3:::acme-site/*'] }] } } };
    expect(nagFindings(synth(wildcard, { assets: false }).annotations)).toEqual([]);
  });

  it('the suppressions on a policy role say why', () => {
    const metadata = JSON.stringify(resource(ids.infra).Metadata);
    expect(metadata).toContain('AwsSolutions-IAM4');
    expect(metadata).toContain('deploy.roles');
  });
});

describe('the config: rules name known roles, a name is created or existing', () => {
  function problems(input: ConfigInput): string {
    try {
      parseConfig(input);
    } catch (error) {
      return (error as Error).message;
    }
    throw new Error('the config was accepted');
  }

  it('a rule naming no role of either list is an error naming the rule and listing the roles', () => {
    const input = policyDeployment();
    input.policy = { ...input.policy, rules: [{ name: 'docs', match: { repository: 'acme/docs' }, role: 'docs-deployer' }] };
    expect(problems(input)).toContain(
      'policy.rules[0].role: rule "docs" runs as the role "docs-deployer", which is neither in policy.roles nor in deploy.roles (roles: "infra-admin", "legacy-deployer", "site-deployer")',
    );
  });

  it('the same check holds without a deploy section (only policy.roles then)', () => {
    const input = configInput({ policy: { rules: [{ name: 'docs', role: 'docs-deployer' }] } });
    expect(problems(input)).toContain('policy.rules[0].role: rule "docs" runs as the role "docs-deployer", which is neither in policy.roles nor in deploy.roles (roles: none)');
  });

  it('a name in both deploy.roles and policy.roles is an error', () => {
    const input = policyDeployment();
    input.deploy = { ...input.deploy, roles: { ...input.deploy?.roles, 'legacy-deployer': {} } };
    expect(problems(input)).toContain('deploy.roles.legacy-deployer: "legacy-deployer" is also in policy.roles (an existing role, by ARN)');
  });

  it('a deploy.roles name follows the rule names\' spelling', () => {
    const input = policyDeployment();
    input.deploy = { ...input.deploy, roles: { Deployer_1: {} } };
    expect(problems(input)).toMatch(/deploy\.roles\.Deployer_1: .*lower-case letters, digits and "-"/);
  });

  it('the user\'s statements are checked like any build role\'s', () => {
    const input = policyDeployment();
    input.deploy = { ...input.deploy, roles: { 'site-deployer': { statements: [{ actions: ['s3 PutObject'], resources: ['*'] }] } } };
    expect(problems(input)).toContain('deploy.roles.site-deployer.statements[0].actions[0]: expected "service:Action"');
  });
});

describe('deploy warnings about policy roles', () => {
  const GUARDS = "cbactions' Deny guards in the payload bucket and key policies keep each build to its own payload regardless";

  it('name broad grants of a created role, every existing role, and no other', () => {
    expect(buildRoleGrantWarnings(parseConfig(policyDeployment()))).toEqual([
      `role "infra-admin" (deploy.roles.infra-admin) is granted AdministratorAccess: job code in its builds may use all of that, but ${GUARDS}; ` +
        'it can also administer IAM, so job code could create another principal and, with that, change those policies: such a build role is an account administrator (README, "Security")',
      `role "legacy-deployer" is the existing role ${LEGACY_ARN} (policy.roles.legacy-deployer), whose grants the stack can't see: ` +
        `job code in builds that rules run as it may use whatever it holds, but ${GUARDS}, unless the role can administer IAM (README, "Security")`,
    ]);
  });

  it('a role no rule runs as is a warning, not an error', () => {
    const input = policyDeployment();
    input.policy = { ...input.policy, rules: [{ name: 'site', role: 'site-deployer' }] };
    const warnings = buildRoleGrantWarnings(parseConfig(input)).filter((warning) => warning.includes('no policy rule'));
    expect(warnings).toEqual([
      'policy.roles.legacy-deployer: no policy rule runs as role "legacy-deployer"; the stack still makes it a build role the listener task may pass to CodeBuild (add a rule naming it, or remove it)',
      'deploy.roles.infra-admin: no policy rule runs as role "infra-admin"; the stack still makes it a build role the listener task may pass to CodeBuild (add a rule naming it, or remove it)',
    ]);
  });
});

describe("the README's worked example", () => {
  it('loads, synthesizes with cdk-nag clean, and runs the site as its own role', () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf("## A repository's own AWS role"));
    const yaml = /```yaml\n([\s\S]*?)```/.exec(section)?.[1];
    if (yaml === undefined) throw new Error('no yaml block in the README section');
    const example = parseYaml(yaml) as { policy: ConfigInput['policy']; deploy: NonNullable<ConfigInput['deploy']> };
    const input = configInput({ policy: example.policy, deploy: { ...example.deploy, images: IMAGES } });
    const { annotations, stack } = synth(input, { assets: false });
    expect(nagFindings(annotations)).toEqual([]);
    expect([...stack.cbactions.policyRoles.keys()].sort()).toEqual(['signer', 'site-deployer']);
    expect(buildRoleGrantWarnings(parseConfig(input))).toEqual([expect.stringContaining('role "signer" is the existing role arn:aws:iam::123456789012:role/release-signer')]);
  });
});

describe('how many roles builds may run as', () => {
  const roles = (count: number) => Object.fromEntries(Array.from({ length: count }, (_, index) => [`repository-role-${index}`, {}]));

  it(`${MAX_BUILD_ROLES} (the project's and the policy roles) fit the 20 KB bucket policy even at IAM's longest role names`, () => {
    const { json } = synth(configInput({ deploy: { images: IMAGES, roles: roles(MAX_BUILD_ROLES - 1) } }), { assets: false });
    const [, policy] = resourcesOfType(json, 'AWS::S3::BucketPolicy').find(([, resource]) => JSON.stringify(resource).includes('BuildsReachOnlyTheirOwnObjects')) ?? [];
    // Role names CloudFormation generates are at most 64 characters; the bucket name at most 63.
    const text = JSON.stringify(resolveIntrinsics((policy?.Properties as Json).PolicyDocument, json))
      .replace(/arn:aws:iam::123456789012:role\/[A-Za-z0-9-]+/g, `arn:aws:iam::123456789012:role/${'r'.repeat(64)}`)
      .replace(/arn:aws:s3:::ref-[a-z0-9]+/g, `arn:aws:s3:::${'b'.repeat(63)}`);
    expect(text).toContain('r'.repeat(64));
    expect(Buffer.byteLength(text)).toBeLessThan(20 * 1024);
  }, 120_000);

  it('one more is an error naming deploy.roles, before anything is deployed', () => {
    expect(() => synth(configInput({ deploy: { images: IMAGES, roles: roles(MAX_BUILD_ROLES) } }), { assets: false })).toThrow(
      `deploy.roles: builds would run as ${MAX_BUILD_ROLES + 1} roles (the project's, the pools' own, the policy roles), more than the ${MAX_BUILD_ROLES}`,
    );
  });
});
