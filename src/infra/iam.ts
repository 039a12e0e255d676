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
 * - the listener task may write payloads and mint data keys only with both context keys set.
 */

/** Encryption context keys of a payload data key (src/seal/context.ts). */
export const ContextKeys = { BuildId: 'cbactions:build-id', UserId: 'cbactions:userid' } as const;

/** The IAM policy variable for the caller's `<RoleUniqueId>:<session>`; kept literal in the template. */
export const AWS_USERID = '${aws:userid}';

/** Suffix of the cancel marker next to a payload (src/seal/s3-payload-store.ts). */
export const CANCEL_SUFFIX = '.cancel';

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

/**
 * What a build role needs to open its own payload, and nothing of any other build's:
 * GetObject/DeleteObject on exactly `<prefix>${aws:userid}` (+ `.cancel`), kms:Decrypt only
 * for data keys whose context names the caller's own `aws:userid`, and the SSE-KMS
 * decrypt S3 performs for that one object.
 */
export function buildPayloadStatements(scope: IConstruct, where: PayloadLocation): iam.PolicyStatement[] {
  const own = `${where.bucketArn}/${where.prefix}${AWS_USERID}`;
  return [
    new iam.PolicyStatement({
      sid: 'OwnPayloadOnly',
      actions: ['s3:GetObject', 's3:DeleteObject'],
      resources: [own, `${own}${CANCEL_SUFFIX}`],
    }),
    // Without ListBucket S3 answers "not uploaded yet" with 403 instead of 404; this lets a
    // build list (and so learn about) its own key only.
    new iam.PolicyStatement({
      sid: 'ListOwnPayloadOnly',
      actions: ['s3:ListBucket'],
      resources: [where.bucketArn],
      conditions: { StringEquals: { 's3:prefix': [`${where.prefix}${AWS_USERID}`, `${where.prefix}${AWS_USERID}${CANCEL_SUFFIX}`] } },
    }),
    new iam.PolicyStatement({
      sid: 'DecryptOwnDataKeyOnly',
      actions: ['kms:Decrypt'],
      resources: [where.keyArn],
      conditions: { StringEquals: { [`kms:EncryptionContext:${ContextKeys.UserId}`]: AWS_USERID } },
    }),
    // The payload object is also SSE-KMS encrypted (same key); S3 decrypts it on the
    // build's behalf with the object's ARN as context — again only the build's own object.
    new iam.PolicyStatement({
      sid: 'DecryptOwnPayloadObjectOnly',
      actions: ['kms:Decrypt'],
      resources: [where.keyArn],
      conditions: {
        StringEquals: {
          'kms:ViaService': s3ViaService(scope),
          'kms:EncryptionContext:aws:s3:arn': own,
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
