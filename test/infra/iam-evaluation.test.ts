import { runSimulation, runUnsafeSimulation, type Simulation } from '@cloud-copilot/iam-simulate';
import { beforeAll, describe, expect, it } from 'vitest';
import type { RolePermissions } from '../../src/config/deploy-schema.js';
import type { ConfigInput } from '../../src/config/schema.js';
import { configInput, logicalId, onlyResource, resolveIntrinsics, resourcesOfType, synth } from './helpers.js';

/**
 * IAM evaluation of the synthesized template with @cloud-copilot/iam-simulate: the build
 * role's identity policies, the payload bucket's policy and the payload key's policy, with
 * the template's intrinsics resolved to concrete ARNs (helpers.resolveIntrinsics), against
 * the requests a build's job code could make. Per-build isolation must hold however broad
 * the build role's own grants are (README, "Security").
 */

const ACCOUNT = '123456789012';
const REGION = 'eu-west-1';
const PREFIX = 'jobs/';

type Json = Record<string, unknown>;
type Decision = 'Allowed' | 'ExplicitlyDenied' | 'ImplicitlyDenied';
interface PolicyDocument {
  Version: string;
  Statement: Json[];
}

const ADMINISTRATOR_ACCESS = 'arn:aws:iam::aws:policy/AdministratorAccess';
const POWER_USER_ACCESS = 'arn:aws:iam::aws:policy/PowerUserAccess';

/** The AWS managed policies the tests attach, as AWS publishes them. */
const MANAGED_POLICIES: Record<string, PolicyDocument> = {
  [ADMINISTRATOR_ACCESS]: { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: '*', Resource: '*' }] },
  [POWER_USER_ACCESS]: {
    Version: '2012-10-17',
    Statement: [
      { Effect: 'Allow', NotAction: ['iam:*', 'organizations:*', 'account:*'], Resource: '*' },
      {
        Effect: 'Allow',
        Action: [
          'account:GetAccountInformation',
          'account:GetPrimaryEmail',
          'account:ListRegions',
          'iam:CreateServiceLinkedRole',
          'iam:DeleteServiceLinkedRole',
          'iam:ListRoles',
          'organizations:DescribeOrganization',
        ],
        Resource: '*',
      },
    ],
  },
};

/** What an operator may give the build role (deploy.buildRole), from nothing to everything. */
const GRANTS: Record<string, Partial<RolePermissions>> = {
  'no extra grants': {},
  AdministratorAccess: { managedPolicyArns: [ADMINISTRATOR_ACCESS] },
  PowerUserAccess: { managedPolicyArns: [POWER_USER_ACCESS] },
  's3:* and kms:* on *': { statements: [{ effect: 'Allow', actions: ['s3:*', 'kms:*'], resources: ['*'] }] },
};

interface Build {
  uuid: string;
  buildId: string;
  /** `<RoleUniqueId>:AWSCodeBuild-<uuid>` */
  userId: string;
  /** The role session: `arn:aws:sts::ACCOUNT:assumed-role/ROLE/AWSCodeBuild-<uuid>`. */
  sessionArn: string;
}

interface Deployment {
  /** Build C's session in each pool that has a role of its own (deploy.pools). */
  poolBuilds: Record<string, Caller>;
  /** A session of each role policy rules run as (deploy.roles, policy.roles), by role name and build uuid. */
  policyBuild: (role: string, uuid: string) => Caller;
  /** Each policy role's ARN, by name. */
  policyRoleArns: Record<string, string>;
  buildRoleArn: string;
  taskRoleArn: string;
  bucketArn: string;
  keyArn: string;
  buildPolicies: PolicyDocument[];
  taskPolicies: PolicyDocument[];
  bucketPolicy: PolicyDocument;
  keyPolicy: PolicyDocument;
  buildA: Build;
  buildB: Build;
  taskSessionArn: string;
}

function deployment(deploy: ConfigInput['deploy'], pools?: ConfigInput['pools'], policy?: ConfigInput['policy']): Deployment {
  // Prebuilt images: no Docker assets to stage, which keeps the synthesis fast.
  const input = configInput({
    deploy: { images: { listener: 'listener:1', build: 'build:1' }, ...deploy },
    ...(pools === undefined ? {} : { pools }),
    ...(policy === undefined ? {} : { policy }),
  });
  const { stack, json, config } = synth(input, { assets: false });
  const resolve = <T>(value: unknown) => resolveIntrinsics(value, json) as T;
  const cbactions = stack.cbactions;
  const roleId = logicalId(stack, cbactions.buildRole);
  const taskRoleId = logicalId(stack, cbactions.taskRole);
  const bucketId = logicalId(stack, cbactions.payloadBucket);
  const keyId = logicalId(stack, cbactions.payloadKey);

  const identityPolicies = (role: string): PolicyDocument[] => {
    const inline = resourcesOfType(json, 'AWS::IAM::Policy')
      .filter(([, policy]) => JSON.stringify((policy.Properties as Json).Roles).includes(`"${role}"`))
      .map(([, policy]) => resolve<PolicyDocument>((policy.Properties as Json).PolicyDocument));
    // An existing role (imported by ARN) is no resource of the template: its own policies are unknown here.
    const managedArns = resolve<string[] | undefined>(((json.Resources as Record<string, Json>)[role]?.Properties as Json | undefined)?.ManagedPolicyArns) ?? [];
    const managed = managedArns.map((arn) => {
      const document = MANAGED_POLICIES[arn];
      if (document === undefined) throw new Error(`no document for the managed policy ${arn} in this test`);
      return document;
    });
    return [...inline, ...managed];
  };
  const [, bucketPolicy] = resourcesOfType(json, 'AWS::S3::BucketPolicy').find(([, policy]) => JSON.stringify((policy.Properties as Json).Bucket) === JSON.stringify({ Ref: bucketId })) ?? [];
  if (bucketPolicy === undefined) throw new Error('the payload bucket has no bucket policy');
  const [, key] = onlyResource(json, 'AWS::KMS::Key');

  const buildRoleArn = resolve<string>({ 'Fn::GetAtt': [roleId, 'Arn'] });
  const sessionOf = (role: string) => (uuid: string): Build => ({
    uuid,
    buildId: `cbactions-test:${uuid}`,
    userId: `${resolve<string>({ 'Fn::GetAtt': [role, 'RoleId'] })}:AWSCodeBuild-${uuid}`,
    sessionArn: `arn:aws:sts::${ACCOUNT}:assumed-role/${role}/AWSCodeBuild-${uuid}`,
  });
  const build = sessionOf(roleId);
  const poolRoles = [...cbactions.poolBuildRoles.entries()].filter(([, role]) => role !== cbactions.buildRole);
  const poolBuilds = Object.fromEntries(
    poolRoles.map(([name, role]) => {
      const id = logicalId(stack, role);
      const caller: Caller = { ...callerOf(sessionOf(id)('cccccccc-3333-4333-8333-cccccccccccc')), principalArn: resolve<string>({ 'Fn::GetAtt': [id, 'Arn'] }), policies: identityPolicies(id) };
      return [name, caller];
    }),
  );
  // Created roles by logical id; existing ones by the name in their ARN, with the role id the config gives.
  const policyRoles = Object.fromEntries(
    [...cbactions.policyRoles.entries()].map(([name, role]) => {
      const existing = config.policy.roles[name];
      if (existing === undefined) {
        const id = logicalId(stack, role);
        return [name, { name: id, arn: resolve<string>({ 'Fn::GetAtt': [id, 'Arn'] }), roleId: resolve<string>({ 'Fn::GetAtt': [id, 'RoleId'] }) }];
      }
      return [name, { name: existing.arn.split('/').pop() ?? '', arn: existing.arn, roleId: existing.roleId ?? '' }];
    }),
  );
  const policyBuild = (roleName: string, uuid: string): Caller => {
    const role = policyRoles[roleName];
    if (role === undefined) throw new Error(`no policy role ${roleName}`);
    return { principal: `arn:aws:sts::${ACCOUNT}:assumed-role/${role.name}/AWSCodeBuild-${uuid}`, principalArn: role.arn, userId: `${role.roleId}:AWSCodeBuild-${uuid}`, policies: identityPolicies(role.name) };
  };
  return {
    poolBuilds,
    policyBuild,
    policyRoleArns: Object.fromEntries(Object.entries(policyRoles).map(([name, role]) => [name, role.arn])),
    buildRoleArn,
    taskRoleArn: resolve<string>({ 'Fn::GetAtt': [taskRoleId, 'Arn'] }),
    bucketArn: resolve<string>({ 'Fn::GetAtt': [bucketId, 'Arn'] }),
    keyArn: resolve<string>({ 'Fn::GetAtt': [keyId, 'Arn'] }),
    buildPolicies: identityPolicies(roleId),
    taskPolicies: identityPolicies(taskRoleId),
    bucketPolicy: resolve<PolicyDocument>((bucketPolicy.Properties as Json).PolicyDocument),
    keyPolicy: resolve<PolicyDocument>((key.Properties as Json).KeyPolicy),
    buildA: build('aaaaaaaa-1111-4111-8111-aaaaaaaaaaaa'),
    buildB: build('bbbbbbbb-2222-4222-8222-bbbbbbbbbbbb'),
    taskSessionArn: `arn:aws:sts::${ACCOUNT}:assumed-role/${taskRoleId}/0123456789abcdef0123456789abcdef`,
  };
}

interface Caller {
  principal: string;
  /** aws:PrincipalArn: the role's ARN for a role session, the user's for a user. */
  principalArn: string;
  userId: string;
  policies: PolicyDocument[];
}

function callerOf(build: Build): Pick<Caller, 'principal' | 'userId'> {
  return { principal: build.sessionArn, userId: build.userId };
}

interface Request {
  action: string;
  resource: string;
  context?: Record<string, string | string[]>;
}

/**
 * One request through the simulator. The validating engine checks the policies, the action,
 * the resource type and the context keys; iam-simulate 0.1.x then drops
 * `kms:EncryptionContext:<key>` (its match of variable context keys needs a "/" in the key),
 * so the decision comes from its unvalidated engine, which takes the context as given.
 * Where nothing was dropped, both engines must agree.
 */
async function evaluate(caller: Caller, request: Request, resourcePolicy: PolicyDocument | undefined): Promise<Decision> {
  const simulation: Simulation = {
    request: {
      principal: caller.principal,
      action: request.action,
      resource: { resource: request.resource, accountId: ACCOUNT },
      contextVariables: { 'aws:PrincipalArn': caller.principalArn, 'aws:userid': caller.userId, 'aws:SecureTransport': 'true', ...request.context },
    },
    identityPolicies: caller.policies.map((policy, index) => ({ name: `identity-${index}`, policy })),
    serviceControlPolicies: [],
    resourceControlPolicies: [],
    ...(resourcePolicy === undefined ? {} : { resourcePolicy }),
  };
  const checked = await runSimulation(simulation, {});
  if (checked.resultType === 'error') throw new Error(`iam-simulate refused ${request.action} on ${request.resource}: ${JSON.stringify(checked.errors)}`);
  if (checked.resultType !== 'single') throw new Error(`expected one resource for ${request.resource}, got ${checked.resultType}`);
  const dropped = checked.result.ignoredContextKeys ?? [];
  expect(dropped.filter((key) => !key.startsWith('kms:EncryptionContext:')), `context keys iam-simulate ignored for ${request.action}`).toEqual([]);
  // The unvalidated engine loads the resource policy without a name unless it comes pre-validated.
  const decision = runUnsafeSimulation(
    resourcePolicy === undefined ? simulation : { ...simulation, resourcePolicy: { __validated: true, policyDocument: resourcePolicy, metadata: { name: 'resource-policy' }, errors: [] } },
    {},
  ) as Decision;
  if (dropped.length === 0) expect(decision, `both engines on ${request.action} ${request.resource}`).toBe(checked.overallResult);
  return decision;
}

function context(build: Build): Record<string, string | string[]> {
  return {
    'kms:EncryptionContext:cbactions:build-id': build.buildId,
    'kms:EncryptionContext:cbactions:userid': build.userId,
    'kms:EncryptionContextKeys': ['cbactions:build-id', 'cbactions:userid'],
  };
}

/** What S3 asks KMS when it reads or writes an SSE-KMS object for the caller. */
function s3Context(objectArn: string): Record<string, string | string[]> {
  return { 'kms:ViaService': `s3.${REGION}.amazonaws.com`, 'kms:EncryptionContext:aws:s3:arn': objectArn, 'kms:EncryptionContextKeys': ['aws:s3:arn'] };
}

const deployments = new Map<string, Deployment>();

beforeAll(() => {
  for (const [name, grants] of Object.entries(GRANTS)) deployments.set(name, deployment({ buildRole: { managedPolicyArns: [], statements: [], ...grants } }));
}, 120_000);

function each(): [string, Deployment][] {
  return [...deployments.entries()];
}

function buildA(d: Deployment): Caller {
  return { principal: d.buildA.sessionArn, principalArn: d.buildRoleArn, userId: d.buildA.userId, policies: d.buildPolicies };
}

function object(d: Deployment, build: Build, suffix = ''): string {
  return `${d.bucketArn}/${PREFIX}${build.userId}${suffix}`;
}

async function decisionsFor(request: (d: Deployment) => Request, caller: (d: Deployment) => Caller, policy: 'bucket' | 'key'): Promise<Record<string, Decision>> {
  const decisions: Record<string, Decision> = {};
  for (const [name, d] of each()) decisions[name] = await evaluate(caller(d), request(d), policy === 'bucket' ? d.bucketPolicy : d.keyPolicy);
  return decisions;
}

/** `{grants: expected}` for every grant set. */
function all(decision: Decision | 'denied'): Record<string, unknown> {
  const matcher = decision === 'denied' ? expect.stringMatching(/Denied$/) : decision;
  return Object.fromEntries(Object.keys(GRANTS).map((name) => [name, matcher]));
}

describe("build A's role session never reaches build B's payload, whatever the role is granted", () => {
  for (const action of ['s3:GetObject', 's3:PutObject', 's3:DeleteObject'] as const) {
    it(`${action} on B's payload is explicitly denied`, async () => {
      // Explicit: the bucket policy's guard, not merely a missing Allow.
      const decisions = await decisionsFor((d) => ({ action, resource: object(d, d.buildB) }), buildA, 'bucket');
      expect(decisions).toEqual(all('ExplicitlyDenied'));
    });
  }

  it("B's cancel marker and lease are out of reach too", async () => {
    for (const suffix of ['.cancel', '.lease']) {
      for (const action of ['s3:GetObject', 's3:PutObject', 's3:DeleteObject']) {
        const decisions = await decisionsFor((d) => ({ action, resource: object(d, d.buildB, suffix) }), buildA, 'bucket');
        expect(decisions, `${action} ${suffix}`).toEqual(all('ExplicitlyDenied'));
      }
    }
  });

  it('ListBucket is denied: without a prefix, on the payload prefix, on B\'s key', async () => {
    for (const prefix of [undefined, PREFIX, '', `${PREFIX}AROA`]) {
      const listing: Record<string, string> = prefix === undefined ? {} : { 's3:prefix': prefix };
      const decisions = await decisionsFor((d) => ({ action: 's3:ListBucket', resource: d.bucketArn, context: listing }), buildA, 'bucket');
      expect(decisions, `prefix ${String(prefix)}`).toEqual(all('ExplicitlyDenied'));
    }
    const decisions = await decisionsFor((d) => ({ action: 's3:ListBucket', resource: d.bucketArn, context: { 's3:prefix': `${PREFIX}${d.buildB.userId}` } }), buildA, 'bucket');
    expect(decisions).toEqual(all('ExplicitlyDenied'));
  });

  it("kms:Decrypt with B's encryption context is explicitly denied", async () => {
    const decisions = await decisionsFor((d) => ({ action: 'kms:Decrypt', resource: d.keyArn, context: context(d.buildB) }), buildA, 'key');
    expect(decisions).toEqual(all('ExplicitlyDenied'));
  });

  it("kms:Decrypt of B's object through S3 (its SSE-KMS data key) is explicitly denied", async () => {
    const decisions = await decisionsFor((d) => ({ action: 'kms:Decrypt', resource: d.keyArn, context: s3Context(object(d, d.buildB)) }), buildA, 'key');
    expect(decisions).toEqual(all('ExplicitlyDenied'));
  });

  it('kms:Decrypt without any encryption context is explicitly denied', async () => {
    const decisions = await decisionsFor((d) => ({ action: 'kms:Decrypt', resource: d.keyArn }), buildA, 'key');
    expect(decisions).toEqual(all('ExplicitlyDenied'));
  });

  it("no re-sealing for B: GenerateDataKey, Encrypt, ReEncrypt and CreateGrant are explicitly denied, with B's context or A's own", async () => {
    for (const action of ['kms:GenerateDataKey', 'kms:GenerateDataKeyWithoutPlaintext', 'kms:Encrypt', 'kms:ReEncryptFrom', 'kms:ReEncryptTo', 'kms:CreateGrant']) {
      for (const whose of ['buildB', 'buildA'] as const) {
        const decisions = await decisionsFor((d) => ({ action, resource: d.keyArn, context: context(d[whose]) }), buildA, 'key');
        expect(decisions, `${action} with ${whose}'s context`).toEqual(all('ExplicitlyDenied'));
      }
    }
  });

  it('the key policy and the key itself are out of reach (PutKeyPolicy, ScheduleKeyDeletion, DisableKey)', async () => {
    for (const action of ['kms:PutKeyPolicy', 'kms:ScheduleKeyDeletion', 'kms:DisableKey']) {
      const decisions = await decisionsFor((d) => ({ action, resource: d.keyArn }), buildA, 'key');
      expect(decisions, action).toEqual(all('ExplicitlyDenied'));
    }
  });

  it('the bucket policy, ACLs and settings are out of reach (PutBucketPolicy, DeleteBucketPolicy, PutBucketAcl, PutEncryptionConfiguration)', async () => {
    for (const action of ['s3:PutBucketPolicy', 's3:DeleteBucketPolicy', 's3:PutBucketAcl', 's3:PutEncryptionConfiguration', 's3:PutLifecycleConfiguration']) {
      const decisions = await decisionsFor((d) => ({ action, resource: d.bucketArn }), buildA, 'bucket');
      expect(decisions, action).toEqual(all('ExplicitlyDenied'));
    }
  });

  it('A writes nothing, not even at its own keys, and only reads its lease', async () => {
    for (const suffix of ['', '.cancel', '.lease']) {
      for (const action of ['s3:PutObject', 's3:PutObjectAcl', 's3:PutObjectTagging']) {
        const decisions = await decisionsFor((d) => ({ action, resource: object(d, d.buildA, suffix) }), buildA, 'bucket');
        expect(decisions, `${action} ${suffix}`).toEqual(all('ExplicitlyDenied'));
      }
    }
    const decisions = await decisionsFor((d) => ({ action: 's3:DeleteObject', resource: object(d, d.buildA, '.lease') }), buildA, 'bucket');
    expect(decisions).toEqual(all('ExplicitlyDenied'));
  });
});

describe('build A still opens its own payload, with any grants', () => {
  it('gets and deletes its payload and cancel marker, reads its lease, lists its own keys, decrypts its own data key and objects', async () => {
    const requests: [(d: Deployment) => Request, 'bucket' | 'key'][] = [
      [(d: Deployment) => ({ action: 's3:GetObject', resource: object(d, d.buildA) }), 'bucket'],
      [(d: Deployment) => ({ action: 's3:DeleteObject', resource: object(d, d.buildA) }), 'bucket'],
      [(d: Deployment) => ({ action: 's3:GetObject', resource: object(d, d.buildA, '.cancel') }), 'bucket'],
      [(d: Deployment) => ({ action: 's3:DeleteObject', resource: object(d, d.buildA, '.cancel') }), 'bucket'],
      [(d: Deployment) => ({ action: 's3:GetObject', resource: object(d, d.buildA, '.lease') }), 'bucket'],
      [(d: Deployment) => ({ action: 's3:ListBucket', resource: d.bucketArn, context: { 's3:prefix': `${PREFIX}${d.buildA.userId}` } }), 'bucket'],
      [(d: Deployment) => ({ action: 'kms:Decrypt', resource: d.keyArn, context: context(d.buildA) }), 'key'],
      [(d: Deployment) => ({ action: 'kms:Decrypt', resource: d.keyArn, context: s3Context(object(d, d.buildA)) }), 'key'],
      [(d: Deployment) => ({ action: 'kms:Decrypt', resource: d.keyArn, context: s3Context(object(d, d.buildA, '.lease')) }), 'key'],
    ];
    for (const [request, policy] of requests) {
      const [[, sample]] = each() as [[string, Deployment]];
      const decisions = await decisionsFor(request, buildA, policy);
      expect(decisions, JSON.stringify(request(sample))).toEqual(all('Allowed'));
    }
  });
});

describe('the payload key: no principal but cbactions\' roles uses it', () => {
  it('an account administrator (AdministratorAccess) can neither decrypt payloads nor mint data keys or grants, but still administers the key', async () => {
    const d = deployments.get('no extra grants')!;
    const admin: Caller = {
      principal: `arn:aws:iam::${ACCOUNT}:user/admin`,
      principalArn: `arn:aws:iam::${ACCOUNT}:user/admin`,
      userId: 'AIDAADMINISTRATOR0001',
      policies: [MANAGED_POLICIES[ADMINISTRATOR_ACCESS]!],
    };
    const ask = (request: Request) => evaluate(admin, request, d.keyPolicy);
    expect(await ask({ action: 'kms:Decrypt', resource: d.keyArn, context: context(d.buildA) })).toBe('ImplicitlyDenied');
    expect(await ask({ action: 'kms:Decrypt', resource: d.keyArn, context: s3Context(object(d, d.buildA)) })).toBe('ImplicitlyDenied');
    expect(await ask({ action: 'kms:GenerateDataKey', resource: d.keyArn, context: context(d.buildA) })).toBe('ImplicitlyDenied');
    expect(await ask({ action: 'kms:Encrypt', resource: d.keyArn, context: context(d.buildA) })).toBe('ImplicitlyDenied');
    expect(await ask({ action: 'kms:CreateGrant', resource: d.keyArn })).toBe('ImplicitlyDenied');
    // Key administration stays with the account (CloudFormation updates the key with it, and
    // the account can't lock itself out); changing the key policy is a deliberate, logged act.
    for (const action of ['kms:DescribeKey', 'kms:PutKeyPolicy', 'kms:EnableKeyRotation', 'kms:ScheduleKeyDeletion', 'kms:TagResource']) {
      expect(await ask({ action, resource: d.keyArn }), action).toBe('Allowed');
    }
  });

  it('the listener task seals only with both context keys, and decrypts nothing', async () => {
    const d = deployments.get('no extra grants')!;
    const task: Caller = { principal: d.taskSessionArn, principalArn: d.taskRoleArn, userId: 'AROATASK:0123456789abcdef', policies: d.taskPolicies };
    const ask = (request: Request) => evaluate(task, request, d.keyPolicy);
    expect(await ask({ action: 'kms:GenerateDataKey', resource: d.keyArn, context: context(d.buildB) })).toBe('Allowed');
    expect(await ask({ action: 'kms:GenerateDataKey', resource: d.keyArn, context: s3Context(object(d, d.buildB)) })).toBe('Allowed');
    expect(
      await ask({
        action: 'kms:GenerateDataKey',
        resource: d.keyArn,
        context: { 'kms:EncryptionContext:cbactions:build-id': d.buildB.buildId, 'kms:EncryptionContextKeys': ['cbactions:build-id'] },
      }),
    ).toBe('ImplicitlyDenied');
    expect(await ask({ action: 'kms:Decrypt', resource: d.keyArn, context: context(d.buildB) })).toBe('ImplicitlyDenied');
    expect(await evaluate(task, { action: 's3:PutObject', resource: object(d, d.buildB) }, d.bucketPolicy)).toBe('Allowed');
    expect(await evaluate(task, { action: 's3:PutObject', resource: object(d, d.buildB, '.lease') }, d.bucketPolicy)).toBe('Allowed');
    expect(await evaluate(task, { action: 's3:GetObject', resource: object(d, d.buildB) }, d.bucketPolicy)).toBe('ImplicitlyDenied');
  });
});

describe('a pool with a role of its own (deploy.pools) and AdministratorAccess', () => {
  let d: Deployment;
  beforeAll(() => {
    d = deployment({ pools: { admin: { serviceRole: { managedPolicyArns: [ADMINISTRATOR_ACCESS], statements: [] } } } }, [
      { name: 'default', labels: ['cbactions'] },
      { name: 'admin', labels: ['cbactions-admin'] },
    ]);
  }, 120_000);

  it("its builds reach neither a default-pool build's payload nor its data key, nor write or re-seal anything", async () => {
    const poolBuild = d.poolBuilds.admin!;
    expect(poolBuild.principalArn).not.toBe(d.buildRoleArn);
    for (const action of ['s3:GetObject', 's3:PutObject', 's3:DeleteObject']) {
      expect(await evaluate(poolBuild, { action, resource: object(d, d.buildB) }, d.bucketPolicy), action).toBe('ExplicitlyDenied');
    }
    expect(await evaluate(poolBuild, { action: 's3:ListBucket', resource: d.bucketArn }, d.bucketPolicy)).toBe('ExplicitlyDenied');
    expect(await evaluate(poolBuild, { action: 's3:PutBucketPolicy', resource: d.bucketArn }, d.bucketPolicy)).toBe('ExplicitlyDenied');
    for (const action of ['kms:Decrypt', 'kms:GenerateDataKey', 'kms:Encrypt', 'kms:CreateGrant']) {
      expect(await evaluate(poolBuild, { action, resource: d.keyArn, context: context(d.buildB) }, d.keyPolicy), action).toBe('ExplicitlyDenied');
    }
    expect(await evaluate(poolBuild, { action: 'kms:PutKeyPolicy', resource: d.keyArn }, d.keyPolicy)).toBe('ExplicitlyDenied');
  });

  it('its builds still open their own payload', async () => {
    const poolBuild = d.poolBuilds.admin!;
    const own = `${d.bucketArn}/${PREFIX}${poolBuild.userId}`;
    expect(await evaluate(poolBuild, { action: 's3:GetObject', resource: own }, d.bucketPolicy)).toBe('Allowed');
    expect(await evaluate(poolBuild, { action: 's3:DeleteObject', resource: own }, d.bucketPolicy)).toBe('Allowed');
    const ownContext = { 'kms:EncryptionContext:cbactions:userid': poolBuild.userId, 'kms:EncryptionContext:cbactions:build-id': 'cbactions-test:cccccccc-3333-4333-8333-cccccccccccc', 'kms:EncryptionContextKeys': ['cbactions:build-id', 'cbactions:userid'] };
    expect(await evaluate(poolBuild, { action: 'kms:Decrypt', resource: d.keyArn, context: ownContext }, d.keyPolicy)).toBe('Allowed');
    expect(await evaluate(poolBuild, { action: 'kms:Decrypt', resource: d.keyArn, context: s3Context(own) }, d.keyPolicy)).toBe('Allowed');
  });
});

describe('roles policy rules run as (deploy.roles, policy.roles): a session of role A never opens a payload sealed for role B', () => {
  const EXISTING_ARN = `arn:aws:iam::${ACCOUNT}:role/existing-deployer`;
  const UUID_A = 'dddddddd-4444-4444-8444-dddddddddddd';
  const UUID_B = 'eeeeeeee-5555-4555-8555-eeeeeeeeeeee';
  let d: Deployment;
  beforeAll(() => {
    // A with AdministratorAccess (the strongest grant a rule's role could get), B with nothing
    // extra, and an existing role whose own grants the stack can't see.
    d = deployment({ roles: { 'repo-a': { managedPolicyArns: [ADMINISTRATOR_ACCESS], statements: [] }, 'repo-b': { managedPolicyArns: [], statements: [] } } }, undefined, {
      roles: { 'existing-deployer': { arn: EXISTING_ARN, roleId: 'AROAEXISTINGDEPLOYER' } },
      rules: [
        { name: 'a', match: { repository: 'acme/a' }, role: 'repo-a' },
        { name: 'b', match: { repository: 'acme/b' }, role: 'repo-b' },
        { name: 'old', match: { repository: 'acme/old' }, role: 'existing-deployer' },
      ],
    });
  }, 120_000);

  const sealedFor = (caller: Caller) => ({
    object: `${d.bucketArn}/${PREFIX}${caller.userId}`,
    context: { 'kms:EncryptionContext:cbactions:userid': caller.userId, 'kms:EncryptionContext:cbactions:build-id': 'cbactions-test:sealed', 'kms:EncryptionContextKeys': ['cbactions:build-id', 'cbactions:userid'] },
  });

  /** GetObject and DeleteObject on the payload, Decrypt of its data key and of the object through S3. */
  async function opening(caller: Caller, target: Caller): Promise<Record<string, Decision>> {
    const sealed = sealedFor(target);
    return {
      's3:GetObject': await evaluate(caller, { action: 's3:GetObject', resource: sealed.object }, d.bucketPolicy),
      's3:DeleteObject': await evaluate(caller, { action: 's3:DeleteObject', resource: sealed.object }, d.bucketPolicy),
      'kms:Decrypt (data key)': await evaluate(caller, { action: 'kms:Decrypt', resource: d.keyArn, context: sealed.context }, d.keyPolicy),
      'kms:Decrypt (via S3)': await evaluate(caller, { action: 'kms:Decrypt', resource: d.keyArn, context: s3Context(sealed.object) }, d.keyPolicy),
    };
  }
  const everything = (decision: Decision) => ({ 's3:GetObject': decision, 's3:DeleteObject': decision, 'kms:Decrypt (data key)': decision, 'kms:Decrypt (via S3)': decision });

  it('the roles are distinct build roles, each with its own unique id', () => {
    const a = d.policyBuild('repo-a', UUID_A);
    const b = d.policyBuild('repo-b', UUID_B);
    expect(new Set([a.principalArn, b.principalArn, d.buildRoleArn, EXISTING_ARN]).size).toBe(4);
    expect(a.userId.split(':')[0]).not.toBe(b.userId.split(':')[0]);
  });

  it("a session of A (AdministratorAccess) is explicitly denied B's payload and data key, and B is denied A's", async () => {
    const a = d.policyBuild('repo-a', UUID_A);
    const b = d.policyBuild('repo-b', UUID_B);
    expect(await opening(a, b)).toEqual(everything('ExplicitlyDenied'));
    expect(await opening(b, a)).toEqual(everything('ExplicitlyDenied'));
  });

  it("a session of A is denied another session of A's payload, and the default role's", async () => {
    const a = d.policyBuild('repo-a', UUID_A);
    expect(await opening(a, d.policyBuild('repo-a', UUID_B))).toEqual(everything('ExplicitlyDenied'));
    const projectBuild: Caller = { principal: d.buildB.sessionArn, principalArn: d.buildRoleArn, userId: d.buildB.userId, policies: d.buildPolicies };
    expect(await opening(a, projectBuild)).toEqual(everything('ExplicitlyDenied'));
    expect(await opening(projectBuild, a)).toEqual(everything('ExplicitlyDenied'));
  });

  it('an existing role, even with AdministratorAccess of its own, is held by the same Deny guards', async () => {
    const existing = d.policyBuild('existing-deployer', UUID_B);
    const withAdmin: Caller = { ...existing, policies: [...existing.policies, MANAGED_POLICIES[ADMINISTRATOR_ACCESS]!] };
    expect(await opening(withAdmin, d.policyBuild('repo-a', UUID_A))).toEqual(everything('ExplicitlyDenied'));
    expect(await evaluate(withAdmin, { action: 'kms:GenerateDataKey', resource: d.keyArn, context: sealedFor(d.policyBuild('repo-a', UUID_A)).context }, d.keyPolicy)).toBe('ExplicitlyDenied');
    expect(await evaluate(withAdmin, { action: 's3:PutObject', resource: sealedFor(d.policyBuild('repo-a', UUID_A)).object }, d.bucketPolicy)).toBe('ExplicitlyDenied');
  });

  it('each opens the payload sealed for its own session (the existing role with the statements the stack attached)', async () => {
    for (const [role, uuid] of [['repo-a', UUID_A], ['repo-b', UUID_B], ['existing-deployer', UUID_A]] as const) {
      const own = d.policyBuild(role, uuid);
      expect(await opening(own, own), role).toEqual(everything('Allowed'));
    }
  });

  it('the task role may pass A, B and the existing role to CodeBuild, and nothing else', async () => {
    const task: Caller = { principal: d.taskSessionArn, principalArn: d.taskRoleArn, userId: 'AROATASK:0123456789abcdef', policies: d.taskPolicies };
    const pass = (roleArn: string, service = 'codebuild.amazonaws.com') =>
      evaluate(task, { action: 'iam:PassRole', resource: roleArn, context: { 'iam:PassedToService': service } }, undefined);
    for (const name of ['repo-a', 'repo-b', 'existing-deployer']) expect(await pass(d.policyRoleArns[name]!), name).toBe('Allowed');
    expect(await pass(d.buildRoleArn)).toBe('Allowed');
    expect(await pass(`arn:aws:iam::${ACCOUNT}:role/unrelated`)).toBe('ImplicitlyDenied');
    expect(await pass(`arn:aws:iam::${ACCOUNT}:role/${d.taskRoleArn.split('/').pop() ?? ''}`)).toBe('ImplicitlyDenied');
    expect(await pass(d.policyRoleArns['repo-a']!, 'ec2.amazonaws.com')).toBe('ImplicitlyDenied');
  });
});
