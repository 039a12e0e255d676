import { DeploySchema, unusedPolicyRoles, type PolicyStatementConfig, type RolePermissions } from '../config/deploy-schema.js';
import type { Config } from '../config/schema.js';

/**
 * What `cbactions deploy` says about the grants of the roles builds run as. Job code can use
 * anything its build role may do; cbactions' Deny guards in the payload bucket's and key's
 * own policies (iam.ts) keep each build to its own payload regardless. Broad grants are
 * still worth a line: the operator should know that job code gets them, and a role that
 * can administer IAM can create another principal and, with it, change those policies.
 */

/** AWS managed policies that reach S3 objects, KMS keys or IAM on every resource. */
const BROAD_AWS_MANAGED = new Set([
  'AdministratorAccess',
  'PowerUserAccess',
  'ReadOnlyAccess',
  'ViewOnlyAccess',
  'AmazonS3FullAccess',
  'AmazonS3ReadOnlyAccess',
  'AWSKeyManagementServicePowerUser',
  'IAMFullAccess',
]);

/** AWS managed policies that administer IAM. */
const IAM_ADMIN_AWS_MANAGED = new Set(['AdministratorAccess', 'IAMFullAccess']);

/** Calls that touch payloads, their key, or the policies guarding them. */
const PAYLOAD_ACTIONS = [
  's3:GetObject',
  's3:PutObject',
  's3:DeleteObject',
  's3:ListBucket',
  's3:PutBucketPolicy',
  'kms:Decrypt',
  'kms:Encrypt',
  'kms:GenerateDataKey',
  'kms:ReEncryptFrom',
  'kms:CreateGrant',
  'kms:PutKeyPolicy',
];

/** Calls that make a new principal or change what one may do: IAM administration. */
const IAM_ADMIN_ACTIONS = ['iam:CreateUser', 'iam:CreateRole', 'iam:PutRolePolicy', 'iam:AttachRolePolicy', 'iam:UpdateAssumeRolePolicy', 'iam:CreateAccessKey'];

const GUARDS_HOLD = "cbactions' Deny guards in the payload bucket and key policies keep each build to its own payload regardless";

/** IAM wildcard matching (`*`, `?`), case-insensitive like IAM's action matching. */
function wildcardMatches(pattern: string, value: string): boolean {
  const regex = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${regex}$`, 'i').test(value);
}

/**
 * A resource that may cover the payload bucket, its objects or the key, whose names the
 * stack generates: `*`, an S3 ARN whose bucket name has a wildcard, a KMS ARN with one.
 */
function reachesPayloadResources(resource: string): boolean {
  if (resource === '*') return true;
  const [, , service, , , ...rest] = resource.split(':');
  const name = rest.join(':');
  if (service === 's3') return /[*?]/.test(name.split('/')[0] ?? '');
  return service === 'kms' && /[*?]/.test(resource);
}

function allows(statement: PolicyStatementConfig, actions: string[]): boolean {
  return statement.effect === 'Allow' && statement.actions.some((pattern) => actions.some((action) => wildcardMatches(pattern, action)));
}

interface Findings {
  /** Human-readable grants, e.g. `AdministratorAccess`, `s3:*, kms:* on *`. */
  grants: string[];
  administersIam: boolean;
}

function findings(permissions: RolePermissions): Findings {
  const grants: string[] = [];
  let administersIam = false;
  for (const arn of permissions.managedPolicyArns) {
    const awsManaged = /^arn:aws[a-zA-Z-]*:iam::aws:policy\/(?:.*\/)?([^/]+)$/.exec(arn)?.[1];
    if (awsManaged === undefined) {
      // A customer managed policy: its document is not in the config, so it may hold anything.
      grants.push(`${arn} (contents unknown at synthesis)`);
    } else if (BROAD_AWS_MANAGED.has(awsManaged)) {
      grants.push(awsManaged);
      if (IAM_ADMIN_AWS_MANAGED.has(awsManaged)) administersIam = true;
    }
  }
  for (const statement of permissions.statements) {
    const broadResources = statement.resources.filter(reachesPayloadResources);
    const reachesPayloads = broadResources.length > 0 && allows(statement, PAYLOAD_ACTIONS);
    const iamAdmin = statement.resources.includes('*') && allows(statement, IAM_ADMIN_ACTIONS);
    if (reachesPayloads || iamAdmin) grants.push(`${statement.actions.join(', ')} on ${(reachesPayloads ? broadResources : ['*']).join(', ')}`);
    if (iamAdmin) administersIam = true;
  }
  return { grants, administersIam };
}

const IAM_CAVEAT =
  'it can also administer IAM, so job code could create another principal and, with that, change those policies: ' +
  'such a build role is an account administrator (README, "Security")';

/**
 * One warning per build role whose extra grants would matter: broad grants the config
 * attaches (deploy.buildRole, deploy.pools.*.serviceRole, deploy.roles.*), every pool and
 * policy role that is an existing role (pools[].build.serviceRole, policy.roles.*), whose
 * grants the stack can't see, and every policy role no rule names.
 */
export function buildRoleGrantWarnings(config: Config): string[] {
  const deploy = config.deploy ?? DeploySchema.parse({});
  const warnings: string[] = [];
  const warn = (role: string, permissions: RolePermissions) => {
    const { grants, administersIam } = findings(permissions);
    if (grants.length === 0) return;
    warnings.push(
      `${role} is granted ${grants.join('; ')}: job code in its builds may use all of that, but ${GUARDS_HOLD}` +
        (administersIam ? `; ${IAM_CAVEAT}` : ''),
    );
  };
  warn("the project's build role (deploy.buildRole)", deploy.buildRole);
  for (const [name, pool] of Object.entries(deploy.pools)) warn(`pool "${name}"'s build role (deploy.pools.${name}.serviceRole)`, pool.serviceRole);
  for (const [name, permissions] of Object.entries(deploy.roles)) warn(`role "${name}" (deploy.roles.${name})`, permissions);
  config.pools.forEach((pool, index) => {
    const existing = pool.build.serviceRole;
    if (existing === undefined) return;
    warnings.push(
      `pool "${pool.name}" runs as the existing role ${existing.arn} (pools[${index}].build.serviceRole), whose grants the stack can't see: ` +
        `job code in its builds may use whatever it holds, but ${GUARDS_HOLD}, unless the role can administer IAM (README, "Security")`,
    );
  });
  for (const [name, existing] of Object.entries(config.policy.roles)) {
    warnings.push(
      `role "${name}" is the existing role ${existing.arn} (policy.roles.${name}), whose grants the stack can't see: ` +
        `job code in builds that rules run as it may use whatever it holds, but ${GUARDS_HOLD}, unless the role can administer IAM (README, "Security")`,
    );
  }
  for (const { field, name } of unusedPolicyRoles(config.policy, config.deploy)) {
    warnings.push(`${field}: no policy rule runs as role "${name}"; the stack still makes it a build role the listener task may pass to CodeBuild (add a rule naming it, or remove it)`);
  }
  return warnings;
}
