import type { Config, GitHubAuth, SecretSource } from '../config/schema.js';

/** The config the listener task runs with: the user's file as deployed (no `deploy` section). */
export type RuntimeConfig = Omit<Config, 'deploy'>;

/** What the stack created (CloudFormation tokens at synth time, real values in the task). */
export interface DeployedResources {
  region: string;
  /** The payload KMS key's ARN. */
  payloadKeyArn: string;
  payloadBucketName: string;
  /** The project the worker starts builds of. */
  projectName: string;
  /** Per pool name: the build role its builds run as (ARN and unique id, AROA…). */
  buildRoles: ReadonlyMap<string, { arn: string; roleId: string }>;
  /** Per role name: the roles the stack created for policy rules (deploy.roles), ARN and unique id. */
  policyRoles?: ReadonlyMap<string, { arn: string; roleId: string }>;
  /** Per pool name: an image the stack built for it (ARM pools), pulled with the service role. */
  poolImages: ReadonlyMap<string, string>;
  /** Set when the stack created the GitHub credential secret; the runtime reads it from there. */
  githubSecretArn?: string;
}

/** The secret source of the GitHub credential (PAT or App private key). */
export function githubCredentialSource(auth: GitHubAuth): SecretSource {
  return 'token' in auth ? auth.token : auth.app.privateKey;
}

function withSource(auth: GitHubAuth, source: SecretSource): GitHubAuth {
  return 'token' in auth ? { token: source } : { app: { ...auth.app, privateKey: source } };
}

/**
 * The runtime config delivered to the task. Everything is the user's, except what only
 * the deployment knows:
 * - `payloads`: the stack's KMS key and bucket (the user's S3 prefix is kept);
 * - `codebuild`: the project's name and the stack's region;
 * - `pools[].build.serviceRole`: the role each pool's builds run as, with its unique id,
 *   because payloads are addressed to `<roleId>:AWSCodeBuild-<uuid>` (src/seal/identity.ts).
 *   Pools without a role of their own get the project's role: the worker then names it in
 *   `serviceRoleOverride`, which changes nothing but lets it bind payloads to that role;
 * - `policy.roles`: the roles the stack created for policy rules (`deploy.roles`), with their
 *   unique ids for the same reason; existing roles stay as the user gave them;
 * - the GitHub credential source, when the stack created the secret.
 */
export function runtimeConfig(config: Config, resources: DeployedResources): RuntimeConfig {
  const { deploy: _deploy, ...rest } = config;
  const prefix = payloadPrefix(config);
  const auth = resources.githubSecretArn === undefined ? config.github.auth : withSource(config.github.auth, { secretsManager: resources.githubSecretArn });
  return {
    ...rest,
    github: { ...config.github, auth },
    codebuild: { ...config.codebuild, projectName: resources.projectName, region: resources.region },
    policy: { ...config.policy, roles: { ...config.policy.roles, ...Object.fromEntries(resources.policyRoles ?? []) } },
    payloads: {
      key: { kms: { keyId: resources.payloadKeyArn } },
      store: { s3: { bucket: resources.payloadBucketName, prefix } },
    },
    pools: config.pools.map((pool) => {
      const role = resources.buildRoles.get(pool.name);
      const image = resources.poolImages.get(pool.name);
      return {
        ...pool,
        build: {
          ...pool.build,
          ...(image === undefined ? {} : { image, imagePullCredentials: 'SERVICE_ROLE' as const }),
          ...(role === undefined ? {} : { serviceRole: { arn: role.arn, roleId: role.roleId } }),
        },
      };
    }),
  };
}

/** S3 prefix of the payloads: the user's, else the schema's default. */
export function payloadPrefix(config: Config): string {
  return 's3' in config.payloads.store ? config.payloads.store.s3.prefix : 'payloads/';
}
