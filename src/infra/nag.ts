import type { Stack } from 'aws-cdk-lib';
import { NagSuppressions, type NagPackSuppression } from 'cdk-nag';
import type { IConstruct } from 'constructs';
import type { RolePermissions } from '../config/deploy-schema.js';
import type { Cbactions } from './cbactions.js';

/**
 * cdk-nag AwsSolutions findings this design accepts, each with the reason. Anything not
 * listed here fails `cbactions deploy` (and the tests).
 */

/** `arn:<partition>:` and `<region>:<account>` as cdk-nag prints them: tokens or literals. */
const ARN_PREFIX = 'arn:(?:<AWS::Partition>|aws[a-z-]*):';
const REGION_ACCOUNT = '(?:<AWS::Region>|[a-z0-9-]+):(?:<AWS::AccountId>|\\d{12})';

const ECR_TOKEN = 'ecr:GetAuthorizationToken has no resource-level permissions; it only lets the role log in to ECR, pulls are limited to the image repositories.';

/** `Resource::<LogicalId.Arn>…` of a construct path fragment, whatever the stack calls it. */
function resourceRegex(logicalIdFragment: string, rest: string): { regex: string } {
  const escaped = rest.replace(/[/.*+?^${}()|[\]\\]/g, '\\$&');
  return { regex: `/^Resource::<[A-Za-z0-9]*${logicalIdFragment}[A-Za-z0-9]*\\.Arn>${escaped}$/g` };
}

function buildRoleSuppressions(permissions: RolePermissions | undefined): NagPackSuppression[] {
  const managedPolicyArns = permissions?.managedPolicyArns ?? [];
  const suppressions: NagPackSuppression[] = [
    {
      id: 'AwsSolutions-IAM5',
      reason:
        `${ECR_TOKEN} In VPC builds, CodeBuild's documented ENI permissions (ec2:CreateNetworkInterface, ec2:Describe*) take no resource ` +
        'and CreateNetworkInterfacePermission is limited to the configured subnets and to CodeBuild.',
      appliesTo: ['Resource::*', { regex: `/^Resource::${ARN_PREFIX}ec2:${REGION_ACCOUNT}:network-interface\\/\\*$/g` }],
    },
    {
      id: 'AwsSolutions-IAM5',
      reason:
        "aws-codebuild's Project always grants its default log group (/aws/codebuild/<project>, one stream per build) and report groups named <project>-*; " +
        'builds log to the stack log group and create no reports, so these grants reach nothing else.',
      appliesTo: [
        { regex: `/^Resource::${ARN_PREFIX}logs:${REGION_ACCOUNT}:log-group:\\/aws\\/codebuild\\/<[A-Za-z0-9]+>:\\*$/g` },
        { regex: `/^Resource::${ARN_PREFIX}codebuild:${REGION_ACCOUNT}:report-group\\/<[A-Za-z0-9]+>-\\*$/g` },
      ],
    },
  ];
  const awsManaged = managedPolicyArns.filter((arn) => /^arn:aws[a-zA-Z-]*:iam::aws:policy\//.test(arn));
  if (awsManaged.length > 0) {
    suppressions.push({
      id: 'AwsSolutions-IAM4',
      reason: "Managed policies the operator attached for the jobs' own AWS work (deploy.buildRole / deploy.pools.*.serviceRole / deploy.roles.*: managedPolicyArns).",
      appliesTo: awsManaged.map((arn) => `Policy::${arn.replace(/^arn:aws[a-zA-Z-]*:/, 'arn:<AWS::Partition>:')}`).concat(awsManaged.map((arn) => `Policy::${arn}`)),
    });
  }
  const wildcards = (permissions?.statements ?? []).flatMap((statement) => [
    ...statement.resources.filter((resource) => resource.includes('*')).map((resource) => `Resource::${resource}`),
    ...statement.actions.filter((action) => action.includes('*')).map((action) => `Action::${action}`),
  ]);
  if (wildcards.length > 0) {
    suppressions.push({
      id: 'AwsSolutions-IAM5',
      reason: "Statements the operator wrote for the jobs' own AWS work (deploy.buildRole / deploy.pools.*.serviceRole / deploy.roles.*: statements); their scope is the operator's call.",
      appliesTo: [...new Set(wildcards)],
    });
  }
  return suppressions;
}

export function suppressJustifiedFindings(_stack: Stack, cbactions: Cbactions): void {
  const add = (construct: IConstruct, suppressions: NagPackSuppression[]) => NagSuppressions.addResourceSuppressions(construct, suppressions, true);
  const deploy = cbactions.deploy;
  const prefix = cbactions.runtimeConfig.payloads.store;
  const payloadPrefix = 's3' in prefix ? prefix.s3.prefix : '';

  // Build roles: the project's and every pool role the stack manages.
  add(cbactions.buildRole, buildRoleSuppressions(deploy.buildRole));
  for (const [name, role] of cbactions.poolBuildRoles) {
    if (role === cbactions.buildRole) continue;
    add(role, buildRoleSuppressions(deploy.pools[name]?.serviceRole));
  }
  // Roles policy rules run as: created (deploy.roles) or existing ones given payload statements.
  for (const [name, role] of cbactions.policyRoles) add(role, buildRoleSuppressions(deploy.roles[name]));

  add(cbactions.taskRole, [
    {
      id: 'AwsSolutions-IAM5',
      reason:
        "The worker writes one payload per build at <prefix><aws:userid of that build>, a name known only after StartBuild; the task can't read them, " +
        'and data keys for them need both encryption-context keys.',
      appliesTo: [resourceRegex('PayloadBucket', `/${payloadPrefix}*`)],
    },
    {
      id: 'AwsSolutions-IAM5',
      reason: "Task ids are assigned at launch; scale-in protection is limited to this stack's own cluster.",
      appliesTo: [{ regex: `/^Resource::${ARN_PREFIX}ecs:${REGION_ACCOUNT}:task\\/<[A-Za-z0-9]+>\\/\\*$/g` }],
    },
    {
      id: 'AwsSolutions-IAM5',
      reason: 'A secret named in the config is referenced by name; Secrets Manager appends six random characters to its ARN (-??????).',
      appliesTo: [{ regex: `/^Resource::${ARN_PREFIX}secretsmanager:.*-\\?\\?\\?\\?\\?\\?$/g` }],
    },
  ]);
  add(cbactions.taskDefinition, [
    {
      id: 'AwsSolutions-ECS2',
      reason:
        'The environment holds the runtime config (references only: project, bucket, key ARN, role ids, secret ARN) and file paths; ' +
        'no secret values. The GitHub credential is read from Secrets Manager at runtime and never enters the task definition.',
    },
    { id: 'AwsSolutions-IAM5', reason: `Task execution role: ${ECR_TOKEN}`, appliesTo: ['Resource::*'] },
  ]);
  add(cbactions.project, [
    {
      id: 'AwsSolutions-CB5',
      reason:
        "The project's default image carries the actions/runner release and the cbactions entrypoint (docker/build.Dockerfile, or an image the operator built from it), " +
        'so a build starts without downloading either; a pool may still pick a stock CodeBuild image, and the buildspec then fetches the build kit.',
    },
    {
      id: 'AwsSolutions-IAM5',
      reason: "VPC builds: CodeBuild's documented ENI permissions (ec2:CreateNetworkInterface, ec2:Describe*) take no resource; CreateNetworkInterfacePermission is limited to the configured subnets.",
      appliesTo: ['Resource::*'],
    },
    {
      id: 'CdkNagValidationFailure',
      reason: 'AwsSolutions-CB5 can not evaluate an image URI that is a CloudFormation token (the image asset); see the CB5 suppression.',
      appliesTo: ['AwsSolutions-CB5'],
    },
  ]);
  if (cbactions.eventsQueue !== undefined) {
    add(cbactions.eventsQueue, [
      {
        id: 'AwsSolutions-SQS3',
        reason:
          'Build state events are hints that only speed up the wait; the mux reconciles every build by polling BatchGetBuilds. ' +
          'A message that fails processing is worthless later, so it is left to expire (1 hour) rather than kept in a DLQ.',
      },
    ]);
  }
  if (cbactions.createdGithubSecret !== undefined) {
    add(cbactions.createdGithubSecret, [
      {
        id: 'AwsSolutions-SMG4',
        reason:
          'It holds a GitHub personal access token or GitHub App private key, which only GitHub can issue: rotate it in GitHub and put the new value here.',
      },
    ]);
  }
}
