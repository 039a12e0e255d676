import { Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import type { IConstruct } from 'constructs';
import type { PolicyStatementConfig, RolePermissions } from '../config/deploy-schema.js';

/**
 * The IAM statements that carry cbactions' security model (ARCHITECTURE.md, "Security
 * model"). A payload lives at `<prefix><aws:userid>` and its data key is bound to the
 * encryption context `cbactions:userid = aws:userid` (src/seal/context.ts), so:
 * - a build may read/delete only the object named after its own role session, and decrypt
 *   only data keys sealed for that session — even when every build shares one role;
 * - the listener task may write payloads and mint data keys only with both context keys set;
 * - and, because Allows alone hold only while the role has nothing broader, Deny guards in
 *   the bucket's and the key's own policies keep every build session to its own payload
 *   whatever else its role is granted (bucketGuardStatements, keyPolicyStatements).
 */

/** Encryption context keys of a payload data key (src/seal/context.ts). */
export const ContextKeys = { BuildId: 'cbactions:build-id', UserId: 'cbactions:userid' } as const;

/** The IAM policy variable for the caller's `<RoleUniqueId>:<session>`; kept literal in the template. */
export const AWS_USERID = '${aws:userid}';

/** Suffix of the cancel marker next to a payload (src/seal/s3-payload-store.ts). */
export const CANCEL_SUFFIX = '.cancel';

/** Suffix of the lease marker next to a payload: the worker writes it, the build only reads it. */
export const LEASE_SUFFIX = '.lease';

export interface PayloadLocation {
  bucketArn: string;
  /** Key prefix, empty or ending in "/". */
  prefix: string;
  keyArn: string;
}

function s3ViaService(scope: IConstruct): string {
  const stack = Stack.of(scope);
  return `s3.${stack.region}.${stack.urlSuffix}`;
}

/** The object keys one build session may know: its payload, its cancel marker, its lease. */
function ownKeys(where: PayloadLocation): { payload: string; cancel: string; lease: string } {
  const payload = `${where.prefix}${AWS_USERID}`;
  return { payload, cancel: `${payload}${CANCEL_SUFFIX}`, lease: `${payload}${LEASE_SUFFIX}` };
}

/** The ARNs of those objects, as the calling session sees them. */
function ownObjects(where: PayloadLocation): { payload: string; cancel: string; lease: string } {
  const keys = ownKeys(where);
  return { payload: `${where.bucketArn}/${keys.payload}`, cancel: `${where.bucketArn}/${keys.cancel}`, lease: `${where.bucketArn}/${keys.lease}` };
}

/**
 * What a build role needs to open its own payload, and nothing of any other build's:
 * GetObject/DeleteObject on exactly `<prefix>${aws:userid}` (+ `.cancel`), GetObject on its
 * `.lease`, kms:Decrypt only for data keys whose context names the caller's own
 * `aws:userid`, and the SSE-KMS decrypt S3 performs for those objects.
 */
export function buildPayloadStatements(scope: IConstruct, where: PayloadLocation): iam.PolicyStatement[] {
  const objects = ownObjects(where);
  const keys = ownKeys(where);
  const own = objects.payload;
  return [
    new iam.PolicyStatement({
      sid: 'OwnPayloadOnly',
      actions: ['s3:GetObject', 's3:DeleteObject'],
      resources: [own, objects.cancel],
    }),
    // The worker holds the lease; the build only reads it (HeadObject needs s3:GetObject).
    new iam.PolicyStatement({
      sid: 'ReadOwnLeaseOnly',
      actions: ['s3:GetObject'],
      resources: [objects.lease],
    }),
    // Without ListBucket S3 answers "not uploaded yet" with 403 instead of 404; this lets a
    // build list (and so learn about) its own keys only.
    new iam.PolicyStatement({
      sid: 'ListOwnPayloadOnly',
      actions: ['s3:ListBucket'],
      resources: [where.bucketArn],
      conditions: { StringEquals: { 's3:prefix': [keys.payload, keys.cancel, keys.lease] } },
    }),
    new iam.PolicyStatement({
      sid: 'DecryptOwnDataKeyOnly',
      actions: ['kms:Decrypt'],
      resources: [where.keyArn],
      conditions: { StringEquals: { [`kms:EncryptionContext:${ContextKeys.UserId}`]: AWS_USERID } },
    }),
    // The payload object (and its markers) is also SSE-KMS encrypted (same key); S3 decrypts
    // it on the build's behalf with the object's ARN as context — again only the build's own.
    new iam.PolicyStatement({
      sid: 'DecryptOwnPayloadObjectOnly',
      actions: ['kms:Decrypt'],
      resources: [where.keyArn],
      conditions: {
        StringEquals: {
          'kms:ViaService': s3ViaService(scope),
          'kms:EncryptionContext:aws:s3:arn': [own, objects.cancel, objects.lease],
        },
      },
    }),
  ];
}

/**
 * What the listener task needs to seal and deliver payloads: data keys only with both
 * context keys present (and no others), and writes/deletes under the payload prefix.
 */
export function taskPayloadStatements(scope: IConstruct, where: PayloadLocation): iam.PolicyStatement[] {
  const objects = `${where.bucketArn}/${where.prefix}*`;
  return [
    new iam.PolicyStatement({
      sid: 'SealForOneBuild',
      actions: ['kms:GenerateDataKey'],
      resources: [where.keyArn],
      conditions: {
        // Every context key is one of ours …
        'ForAllValues:StringEquals': { 'kms:EncryptionContextKeys': [ContextKeys.BuildId, ContextKeys.UserId] },
        // … and both are there: a key sealed without the userid could be opened by any build.
        Null: { [`kms:EncryptionContext:${ContextKeys.BuildId}`]: 'false', [`kms:EncryptionContext:${ContextKeys.UserId}`]: 'false' },
      },
    }),
    new iam.PolicyStatement({
      sid: 'EncryptPayloadObjects',
      actions: ['kms:GenerateDataKey'],
      resources: [where.keyArn],
      conditions: {
        StringEquals: { 'kms:ViaService': s3ViaService(scope) },
        StringLike: { 'kms:EncryptionContext:aws:s3:arn': objects },
      },
    }),
    new iam.PolicyStatement({
      sid: 'WritePayloads',
      actions: ['s3:PutObject', 's3:DeleteObject'],
      resources: [objects],
    }),
  ];
}

/** Who the payload key's and bucket's policies name (ARNs, tokens allowed). */
export interface PayloadPrincipals {
  /** The listener task's role: seals payloads, writes them and the markers. */
  taskRoleArn: string;
  /** Every role a build may run as (the project's, each pool's own, each existing pool role). */
  buildRoleArns: string[];
}

/** `aws:PrincipalArn` is the role's ARN for every session of the role, whatever the session name. */
function sessionsOf(roleArns: string[]): Record<string, Record<string, unknown>> {
  return { ArnEquals: { 'aws:PrincipalArn': roleArns } };
}

/**
 * Deny guards in the payload bucket's policy. An explicit Deny in the resource's own policy
 * wins over any Allow a build role holds (AdministratorAccess, `s3:*` on `*`) and can't be
 * dropped by editing the role, so a build session — whatever else it may do — reaches only
 * its own payload (get, delete), cancel marker (get, delete) and lease (get), lists only
 * those keys, writes nothing, and can't change the bucket (policy, ACL, encryption, …).
 * Bucket policies cover only this bucket, which is all the guards are about.
 */
export function bucketGuardStatements(where: PayloadLocation, buildRoleArns: string[]): iam.PolicyStatement[] {
  const objects = ownObjects(where);
  const keys = ownKeys(where);
  const guard = (props: Omit<iam.PolicyStatementProps, 'effect' | 'principals'>) =>
    new iam.PolicyStatement({ ...props, effect: iam.Effect.DENY, principals: [new iam.AnyPrincipal()] });
  return [
    guard({
      sid: 'BuildsReachOnlyTheirOwnObjects',
      actions: ['s3:*'],
      notResources: [where.bucketArn, objects.payload, objects.cancel, objects.lease],
      conditions: sessionsOf(buildRoleArns),
    }),
    guard({
      sid: 'BuildsOnlyGetOrDeleteTheirPayloadAndCancelMarker',
      notActions: ['s3:GetObject', 's3:DeleteObject'],
      resources: [objects.payload, objects.cancel],
      conditions: sessionsOf(buildRoleArns),
    }),
    guard({
      sid: 'BuildsOnlyReadTheirLease',
      notActions: ['s3:GetObject'],
      resources: [objects.lease],
      conditions: sessionsOf(buildRoleArns),
    }),
    guard({
      sid: 'BuildsChangeNothingOfTheBucket',
      notActions: ['s3:ListBucket'],
      resources: [where.bucketArn],
      conditions: sessionsOf(buildRoleArns),
    }),
    guard({
      sid: 'BuildsListOnlyTheirOwnKeys',
      actions: ['s3:ListBucket'],
      resources: [where.bucketArn],
      conditions: { ...sessionsOf(buildRoleArns), StringNotEquals: { 's3:prefix': [keys.payload, keys.cancel, keys.lease] } },
    }),
  ];
}

/**
 * Key administration for the account, without cryptography and without grants: CloudFormation
 * (and an operator) can still update, rotate, tag and delete the key, but no IAM policy
 * alone lets a principal decrypt a payload or mint a data key, and no one can hand
 * themselves a grant for that. Changing the key policy stays possible for key
 * administrators — on purpose, so the account can never lock itself out of its key.
 */
export const KEY_ADMINISTRATION_ACTIONS = [
  'kms:Describe*',
  'kms:Get*',
  'kms:List*',
  'kms:Put*',
  'kms:Update*',
  'kms:Enable*',
  'kms:Disable*',
  'kms:Revoke*',
  'kms:Delete*',
  'kms:CreateAlias',
  'kms:TagResource',
  'kms:UntagResource',
  'kms:RotateKeyOnDemand',
  'kms:ScheduleKeyDeletion',
  'kms:CancelKeyDeletion',
] as const;

/** Everything a build session might do to the key except Decrypt (guarded by context below). */
const KEY_ACTIONS_DENIED_TO_BUILDS = [
  'kms:Encrypt',
  'kms:GenerateDataKey*',
  'kms:ReEncrypt*',
  'kms:CreateGrant',
  'kms:RetireGrant',
  'kms:RevokeGrant',
  'kms:PutKeyPolicy',
  'kms:ScheduleKeyDeletion',
  'kms:CancelKeyDeletion',
  'kms:Disable*',
  'kms:Enable*',
  'kms:Update*',
  'kms:RotateKeyOnDemand',
  'kms:CreateAlias',
  'kms:DeleteAlias',
  'kms:TagResource',
  'kms:UntagResource',
  'kms:ImportKeyMaterial',
  'kms:DeleteImportedKeyMaterial',
  'kms:ReplicateKey',
];

/**
 * The payload key's policy. Its default ("the account: kms:*") would let every IAM
 * principal the account allows decrypt any payload; instead:
 * - the account administers the key (KEY_ADMINISTRATION_ACTIONS), uses no cryptography;
 * - the listener task may GenerateDataKey and the build roles may Decrypt, each as far as
 *   its IAM policy allows (the least-privilege statements above carry the conditions);
 * - Deny guards for build sessions, which hold however broad the role's IAM grants are:
 *   Decrypt only with the session's own `cbactions:userid` context (or S3's decrypt of its
 *   own object), and nothing else with the key — no new data keys, Encrypt, ReEncrypt or
 *   grants (that is how a build would re-seal a changed payload for another build), no
 *   key policy change, no disabling or deleting it.
 */
export function keyPolicyStatements(scope: IConstruct, where: PayloadLocation, principals: PayloadPrincipals): iam.PolicyStatement[] {
  const account = new iam.AccountRootPrincipal();
  // The bucket's ARN can't appear here: the bucket already refers to the key (its default
  // encryption), and CloudFormation refuses the cycle. Objects named after the session in
  // any bucket are as good: only the payload bucket encrypts with this key, and only the
  // task writes there, at <prefix><aws:userid>[.cancel|.lease] and nowhere else.
  const keys = ownKeys(where);
  const anyBucket = (key: string) => `arn:${Stack.of(scope).partition}:s3:::*/${key}`;
  const buildSessions = sessionsOf(principals.buildRoleArns);
  return [
    new iam.PolicyStatement({ sid: 'KeyAdministrationByTheAccount', principals: [account], actions: [...KEY_ADMINISTRATION_ACTIONS], resources: ['*'] }),
    new iam.PolicyStatement({
      sid: 'SealingByTheListenerTask',
      principals: [account],
      actions: ['kms:GenerateDataKey'],
      resources: ['*'],
      conditions: sessionsOf([principals.taskRoleArn]),
    }),
    new iam.PolicyStatement({ sid: 'OpeningByBuilds', principals: [account], actions: ['kms:Decrypt'], resources: ['*'], conditions: buildSessions }),
    new iam.PolicyStatement({
      sid: 'BuildsDoNothingButDecrypt',
      effect: iam.Effect.DENY,
      principals: [new iam.AnyPrincipal()],
      actions: KEY_ACTIONS_DENIED_TO_BUILDS,
      resources: ['*'],
      conditions: buildSessions,
    }),
    // The two conditions are ANDed: a Decrypt that names neither the session's own
    // cbactions:userid nor one of its own objects is denied. KMS binds the whole context to
    // the ciphertext, so naming one's own value next to another build's opens nothing.
    new iam.PolicyStatement({
      sid: 'BuildsDecryptOnlyTheirOwn',
      effect: iam.Effect.DENY,
      principals: [new iam.AnyPrincipal()],
      actions: ['kms:Decrypt'],
      resources: ['*'],
      conditions: {
        ...buildSessions,
        StringNotEquals: { [`kms:EncryptionContext:${ContextKeys.UserId}`]: AWS_USERID },
        StringNotLike: { 'kms:EncryptionContext:aws:s3:arn': [anyBucket(keys.payload), anyBucket(keys.cancel), anyBucket(keys.lease)] },
      },
    }),
  ];
}

/** The user's own statements and managed policies for a build role (`deploy.buildRole`, `deploy.pools.*`). */
export function applyRolePermissions(role: iam.IRole, permissions: RolePermissions, scopeForPolicies: IConstruct, idPrefix: string): void {
  permissions.managedPolicyArns.forEach((arn, index) => {
    role.addManagedPolicy(iam.ManagedPolicy.fromManagedPolicyArn(scopeForPolicies, `${idPrefix}Managed${index}`, arn));
  });
  for (const statement of permissions.statements) role.addToPrincipalPolicy(userStatement(statement));
}

export function userStatement(statement: PolicyStatementConfig): iam.PolicyStatement {
  return new iam.PolicyStatement({
    effect: statement.effect === 'Deny' ? iam.Effect.DENY : iam.Effect.ALLOW,
    actions: statement.actions,
    resources: statement.resources,
    ...(statement.conditions === undefined ? {} : { conditions: statement.conditions }),
  });
}

/** ENI management a role needs when CodeBuild runs its builds in a VPC (as CodeBuild documents it). */
export function vpcBuildStatements(scope: IConstruct, subnetArns: string[]): iam.PolicyStatement[] {
  const stack = Stack.of(scope);
  return [
    new iam.PolicyStatement({
      actions: [
        'ec2:CreateNetworkInterface',
        'ec2:DescribeDhcpOptions',
        'ec2:DescribeNetworkInterfaces',
        'ec2:DeleteNetworkInterface',
        'ec2:DescribeSubnets',
        'ec2:DescribeSecurityGroups',
        'ec2:DescribeVpcs',
      ],
      resources: ['*'],
    }),
    new iam.PolicyStatement({
      actions: ['ec2:CreateNetworkInterfacePermission'],
      resources: [`arn:${stack.partition}:ec2:${stack.region}:${stack.account}:network-interface/*`],
      conditions: {
        StringEquals: { 'ec2:AuthorizedService': 'codebuild.amazonaws.com' },
        ArnEquals: { 'ec2:Subnet': subnetArns },
      },
    }),
  ];
}
