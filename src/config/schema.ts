import { z } from 'zod';
import { DeploySchema, deployProblems } from './deploy-schema.js';
import { PolicySchema } from './policy-schema.js';
import { ServiceRoleSchema } from './role-schema.js';

export { ServiceRoleSchema };

/**
 * The one configuration schema. The runtime (mux, worker, local mode) and the CDK app
 * both parse a config file with it; every error names its field.
 */

/** Where a secret comes from. The config holds only the reference, never the secret. */
export const SecretSourceSchema = z.union([
  z.strictObject({ file: z.string().min(1).describe('path of a file holding the secret') }),
  z.strictObject({ env: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/).describe('environment variable holding the secret') }),
  z.strictObject({
    secretsManager: z.string().min(1).describe('AWS Secrets Manager secret name or ARN'),
    jsonKey: z.string().min(1).optional().describe('when the secret is a JSON object, the key to read'),
  }),
]);
export type SecretSource = z.infer<typeof SecretSourceSchema>;

export const GitHubScopeSchema = z.union([
  z.strictObject({ repository: z.string().regex(/^[A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+$/, 'expected "owner/name"') }),
  z.strictObject({ organization: z.string().regex(/^[A-Za-z0-9-]+$/, 'expected an organization login') }),
  z.strictObject({ enterprise: z.string().regex(/^[A-Za-z0-9-]+$/, 'expected an enterprise slug') }),
]);
export type GitHubScope = z.infer<typeof GitHubScopeSchema>;

export const GitHubAuthSchema = z.union([
  z.strictObject({
    app: z.strictObject({
      appId: z.union([z.number().int().positive(), z.string().regex(/^\d+$/)]),
      installationId: z.union([z.number().int().positive(), z.string().regex(/^\d+$/)]).optional(),
      privateKey: SecretSourceSchema,
    }),
  }),
  z.strictObject({ token: SecretSourceSchema }),
]);
export type GitHubAuth = z.infer<typeof GitHubAuthSchema>;

export const GitHubSchema = z.strictObject({
  /** https://github.com or a GitHub Enterprise Server URL. */
  url: z.url({ protocol: /^https?$/ }).default('https://github.com'),
  scope: GitHubScopeSchema,
  /** Runner group name or numeric id; organization/enterprise scope only. */
  runnerGroup: z.union([z.string().min(1), z.number().int().positive()]).default('Default'),
  /** Prefix of every runner name; names are `<prefix>-<host>-<pool>-<slot>-<n>`. */
  namePrefix: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'letters, digits, "-", "_" and "." only')
    .max(24)
    .default('cbactions'),
  auth: GitHubAuthSchema,
  /** JIT config (default) or registration token + configure as the fallback. */
  registration: z.enum(['jit', 'token']).default('jit'),
});

export const COMPUTE_TYPES = [
  'BUILD_GENERAL1_SMALL',
  'BUILD_GENERAL1_MEDIUM',
  'BUILD_GENERAL1_LARGE',
  'BUILD_GENERAL1_XLARGE',
  'BUILD_GENERAL1_2XLARGE',
  'BUILD_LAMBDA_1GB',
  'BUILD_LAMBDA_2GB',
  'BUILD_LAMBDA_4GB',
  'BUILD_LAMBDA_8GB',
  'BUILD_LAMBDA_10GB',
  'ATTRIBUTE_BASED_COMPUTE',
  'CUSTOM_INSTANCE_TYPE',
] as const;

export const ENVIRONMENT_TYPES = [
  'LINUX_CONTAINER',
  'ARM_CONTAINER',
  'LINUX_GPU_CONTAINER',
  'LINUX_LAMBDA_CONTAINER',
  'ARM_LAMBDA_CONTAINER',
  'LINUX_EC2',
  'ARM_EC2',
] as const;

const LAMBDA_ENVIRONMENTS = new Set<string>(['LINUX_LAMBDA_CONTAINER', 'ARM_LAMBDA_CONTAINER']);
const GPU_COMPUTE = new Set<string>(['BUILD_GENERAL1_LARGE', 'BUILD_GENERAL1_XLARGE', 'BUILD_GENERAL1_2XLARGE']);

export const BuildSettingsSchema = z.strictObject({
  computeType: z.enum(COMPUTE_TYPES).default('BUILD_GENERAL1_SMALL'),
  environmentType: z.enum(ENVIRONMENT_TYPES).default('LINUX_CONTAINER'),
  /** Container image; omit to use the project's image. */
  image: z.string().min(1).optional(),
  imagePullCredentials: z.enum(['CODEBUILD', 'SERVICE_ROLE']).optional(),
  /** Docker daemon in the build (needed for `container:` jobs and service containers). */
  privileged: z.boolean().default(false),
  /** A reserved-capacity fleet; the fleet defines compute and environment. */
  fleetArn: z.string().regex(/^arn:aws[a-zA-Z-]*:codebuild:[a-z0-9-]+:\d{12}:fleet\/.+$/, 'expected a CodeBuild fleet ARN').optional(),
  timeoutMinutes: z.number().int().min(5).max(2160).optional(),
  queuedTimeoutMinutes: z.number().int().min(5).max(480).optional(),
  serviceRole: ServiceRoleSchema.optional(),
});
export type BuildSettings = z.infer<typeof BuildSettingsSchema>;

export const WEEKDAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'] as const;
export type Weekday = (typeof WEEKDAYS)[number];

const TIME_OF_DAY = /^([01]\d|2[0-3]):[0-5]\d$|^24:00$/;

/** A UTC time window on some weekdays in which a pool keeps standby builds. */
export const WarmWindowSchema = z
  .strictObject({
    days: z.array(z.enum(WEEKDAYS)).min(1).max(7),
    /** UTC "HH:MM", inclusive. */
    from: z.string().regex(TIME_OF_DAY, 'expected UTC "HH:MM"'),
    /** UTC "HH:MM" (up to "24:00"), exclusive; later than `from`. */
    to: z.string().regex(TIME_OF_DAY, 'expected UTC "HH:MM" (up to "24:00")'),
  })
  .refine((window) => window.from < window.to, { message: '"to" must be later than "from" (a window does not cross midnight: use two)', path: ['to'] });
export type WarmWindow = z.infer<typeof WarmWindowSchema>;

/**
 * Standby builds (issue 11): builds started ahead of any job that wait for one, so a job's
 * first step follows its assignment within seconds. They run under the pool's role and
 * settings and cost build minutes while they wait.
 */
export const WarmSchema = z.strictObject({
  /** How many standby builds the pool keeps started (0: none, every job gets a new build). */
  standby: z.number().int().min(0).max(50).default(0),
  /** How long one standby waits for a job once ready; then it ends (and is replaced). */
  maxWaitMinutes: z.number().min(0.1).max(120).default(10),
  /** UTC windows in which the pool is kept warm; absent: always. */
  windows: z.array(WarmWindowSchema).min(1).max(50).optional(),
});
export type WarmSettings = z.infer<typeof WarmSchema>;

export const PoolSchema = z.strictObject({
  name: z.string().regex(/^[a-z0-9][a-z0-9-]{0,30}$/, 'lower-case letters, digits and "-", at most 31 characters'),
  labels: z
    .array(z.string().min(1).max(256).regex(/^[^,]+$/, 'a label cannot contain ","'))
    .min(1)
    .max(100),
  slots: z.number().int().min(1).max(100).default(1),
  build: BuildSettingsSchema.default(() => BuildSettingsSchema.parse({})),
  warm: WarmSchema.default(() => WarmSchema.parse({})),
});
export type Pool = z.infer<typeof PoolSchema>;

export const PayloadsSchema = z.strictObject({
  key: z.union([
    z.strictObject({ kms: z.strictObject({ keyId: z.string().min(1) }) }),
    z.strictObject({ local: z.strictObject({ file: z.string().min(1) }) }),
  ]),
  store: z.union([
    z.strictObject({
      s3: z.strictObject({
        bucket: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'expected an S3 bucket name'),
        prefix: z.string().regex(/^([A-Za-z0-9!_.*'()-]+\/)*$/, 'expected a key prefix ending in "/" (or empty)').default('payloads/'),
      }),
    }),
    z.strictObject({ local: z.strictObject({ dir: z.string().min(1) }) }),
  ]),
});
export type PayloadsConfig = z.infer<typeof PayloadsSchema>;

export const CodeBuildSchema = z.strictObject({
  projectName: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_-]{1,254}$/, 'expected a CodeBuild project name'),
  /**
   * Unique id (AROA…) of the project's own service role, used for pools without a
   * `build.serviceRole`: payloads in S3/KMS are bound to `<roleId>:AWSCodeBuild-<uuid>`.
   * The CDK app fills it in for the deployed configuration.
   */
  buildRoleId: z.string().regex(/^AROA[A-Z0-9]{8,}$/, 'expected a role unique id (AROA…)').optional(),
  region: z.string().regex(/^[a-z]{2}(-[a-z]+)+-\d$/, 'expected an AWS region such as us-east-1').optional(),
});

export const MuxSchema = z.strictObject({
  runnerRoot: z.string().min(1).default('/actions-runner'),
  stateDir: z.string().min(1).default('/var/lib/cbactions'),
  statusHost: z.string().default('127.0.0.1'),
  statusPort: z.number().int().min(0).max(65535).default(8080),
  drainTimeoutSeconds: z.number().int().min(0).max(7 * 24 * 3600).default(6 * 3600),
  isolation: z.enum(['auto', 'preload', 'hardlink']).default('auto'),
  /** The LD_PRELOAD library; default: `dist/preload/preload.so` of this installation. */
  preloadPath: z.string().min(1).optional(),
  /** Install the cbactions Runner.Worker shim into `runnerRoot` at start (false only when the image already has it, or to run the runner's own worker). */
  installWorkerShim: z.boolean().default(true),
  /**
   * Who runs each job's path (read, start the build, seal, watch, cancel): `in-process` — the
   * mux itself, for every job at once, reached by the native Runner.Worker shim over
   * `<stateDir>/dispatch.sock`; `worker` — one `cbactions worker` process per job (the shim
   * finds no socket and falls back to it).
   */
  dispatch: z.enum(['in-process', 'worker']).default('in-process'),
  /** Delay before a listener is restarted or a registration retried: exponential, jittered, capped, reset after a healthy run. */
  listenerBackoff: z
    .strictObject({
      initialMs: z.number().int().min(10).max(600_000).default(1_000),
      maxMs: z.number().int().min(10).max(3_600_000).default(300_000),
      /** A listener that ran this long (or ran a job) counts as healthy: the next delay starts small again. */
      healthyAfterSeconds: z.number().int().min(1).max(86_400).default(60),
    })
    .refine((backoff) => backoff.maxMs >= backoff.initialMs, { message: 'maxMs must be at least initialMs', path: ['maxMs'] })
    .default(() => ({ initialMs: 1_000, maxMs: 300_000, healthyAfterSeconds: 60 })),
  /** How long an idle listener gets to exit after SIGTERM before its process group is SIGKILLed. */
  listenerStopTimeoutSeconds: z.number().int().min(1).max(600).default(30),
  /** ECS task scale-in protection while a job runs: requested for this long, renewed before it expires. */
  taskProtectionMinutes: z.number().int().min(1).max(2880).default(60),
});

export const ConfigSchema = z
  .strictObject({
    github: GitHubSchema,
    codebuild: CodeBuildSchema,
    payloads: PayloadsSchema,
    pools: z.array(PoolSchema).min(1),
    mux: MuxSchema.default(() => MuxSchema.parse({})),
    /** Admission policy (src/config/policy-schema.ts): per job, before any build starts, which rule decides its role and settings, or refuses it. */
    policy: PolicySchema.default(() => PolicySchema.parse({})),
    /** Infra-only settings for `cbactions deploy` (src/config/deploy-schema.ts); the runtime ignores them. */
    deploy: DeploySchema.optional(),
  })
  .superRefine((config, ctx) => {
    if (config.deploy !== undefined) {
      for (const problem of deployProblems(config.deploy, config)) ctx.addIssue({ code: 'custom', path: problem.path, message: problem.message });
    }
    const seen = new Map<string, number>();
    config.pools.forEach((pool, index) => {
      const previous = seen.get(pool.name);
      if (previous !== undefined) {
        ctx.addIssue({ code: 'custom', path: ['pools', index, 'name'], message: `pool name "${pool.name}" is already used by pools[${previous}]` });
      }
      seen.set(pool.name, index);
      for (const issue of buildSettingsProblems(pool.build)) {
        ctx.addIssue({ code: 'custom', path: ['pools', index, 'build', issue.field], message: `pool "${pool.name}": ${issue.message}` });
      }
      for (const issue of warmProblems(pool, config.mux.dispatch)) {
        ctx.addIssue({ code: 'custom', path: ['pools', index, 'warm', issue.field], message: `pool "${pool.name}": ${issue.message}` });
      }
    });
  });
export type Config = z.infer<typeof ConfigSchema>;
export type ConfigInput = z.input<typeof ConfigSchema>;

/** A problem at a field path, as zod reports them. */
export interface ConfigProblem {
  path: (string | number)[];
  message: string;
}

/**
 * What running jobs needs beyond the schema, checked by the mux and the worker (not by
 * `cbactions deploy`, whose stack fills these in, nor `cbactions local`, which seals locally).
 * An S3 store addresses each payload by the build's `aws:userid` and a KMS key binds it
 * there too, so the worker must know the role id of every pool's builds: without it, it
 * would start builds that can never open their job.
 */
export function runtimeProblems(config: Config): ConfigProblem[] {
  const bound = [
    ...('s3' in config.payloads.store ? ['an S3 payload store'] : []),
    ...('kms' in config.payloads.key ? ['a KMS payload key'] : []),
  ];
  if (bound.length === 0) return [];
  const why = `${bound.join(' and ')} bind${bound.length === 1 ? 's' : ''} each job to its build role's unique id (<roleId>:AWSCodeBuild-<uuid>)`;
  const lookUp = 'aws iam get-role --role-name NAME --query Role.RoleId';
  const problems: ConfigProblem[] = [];
  const onProjectRole: string[] = [];
  config.pools.forEach((pool, index) => {
    const role = pool.build.serviceRole;
    if (role === undefined) onProjectRole.push(pool.name);
    else if (role.roleId === undefined) {
      problems.push({
        path: ['pools', index, 'build', 'serviceRole', 'roleId'],
        message: `pool "${pool.name}" runs as ${role.arn} but has no roleId; ${why}: set it to the role's unique id (AROA…; ${lookUp})`,
      });
    }
  });
  if (onProjectRole.length > 0 && config.codebuild.buildRoleId === undefined) {
    problems.push({
      path: ['codebuild', 'buildRoleId'],
      message:
        `required: pool${onProjectRole.length === 1 ? '' : 's'} ${onProjectRole.map((name) => `"${name}"`).join(', ')} run${onProjectRole.length === 1 ? 's' : ''} as the project's service role, and ${why}: ` +
        `set it to that role's unique id (AROA…; ${lookUp}), or give each pool build.serviceRole {arn, roleId} (\`cbactions deploy\` fills these in)`,
    });
  }
  return problems;
}

/** The schema plus the runtime's checks: what the mux and the worker load. */
export const RuntimeConfigSchema = ConfigSchema.superRefine((config, ctx) => {
  for (const problem of runtimeProblems(config)) ctx.addIssue({ code: 'custom', path: problem.path, message: problem.message });
});

/** Standby builds need the mux to hand jobs over itself, and must end before CodeBuild's timeouts. */
export function warmProblems(pool: Pool, dispatch: 'in-process' | 'worker'): { field: keyof WarmSettings; message: string }[] {
  const problems: { field: keyof WarmSettings; message: string }[] = [];
  if (pool.warm.standby === 0) return problems;
  if (dispatch === 'worker') {
    problems.push({ field: 'standby', message: 'standby builds need mux.dispatch "in-process" (a `cbactions worker` process cannot hand its job to a standby); set mux.dispatch to "in-process" or warm.standby to 0' });
  }
  const lambda = pool.build.computeType.startsWith('BUILD_LAMBDA_');
  // A standby that waits as long as its build may run has no time left for the job.
  const buildMinutes = lambda ? 15 : pool.build.timeoutMinutes;
  if (buildMinutes !== undefined && pool.warm.maxWaitMinutes >= buildMinutes) {
    problems.push({ field: 'maxWaitMinutes', message: `a standby waits ${pool.warm.maxWaitMinutes} min but its build may run only ${buildMinutes} min${lambda ? ' (Lambda compute)' : ' (build.timeoutMinutes)'}: wait less than that, leaving time for the job` });
  }
  return problems;
}

/** Combinations CodeBuild would refuse at StartBuild, caught when the config is loaded. */
export function buildSettingsProblems(build: BuildSettings): { field: keyof BuildSettings; message: string }[] {
  const problems: { field: keyof BuildSettings; message: string }[] = [];
  const lambdaCompute = build.computeType.startsWith('BUILD_LAMBDA_');
  const lambdaEnvironment = LAMBDA_ENVIRONMENTS.has(build.environmentType);
  if (lambdaCompute !== lambdaEnvironment) {
    problems.push({
      field: 'environmentType',
      message: lambdaCompute
        ? `compute type ${build.computeType} needs environment type LINUX_LAMBDA_CONTAINER or ARM_LAMBDA_CONTAINER, not ${build.environmentType}`
        : `environment type ${build.environmentType} needs a BUILD_LAMBDA_* compute type, not ${build.computeType}`,
    });
  }
  if (lambdaCompute || lambdaEnvironment) {
    if (build.privileged) problems.push({ field: 'privileged', message: 'privileged mode (Docker) is not available on Lambda compute' });
    if (build.timeoutMinutes !== undefined) problems.push({ field: 'timeoutMinutes', message: 'Lambda compute does not accept a build timeout (it is fixed at 15 minutes)' });
    if (build.queuedTimeoutMinutes !== undefined) problems.push({ field: 'queuedTimeoutMinutes', message: 'Lambda compute does not accept a queued timeout' });
  }
  if (build.environmentType === 'LINUX_GPU_CONTAINER' && !GPU_COMPUTE.has(build.computeType)) {
    problems.push({ field: 'computeType', message: `GPU environments need BUILD_GENERAL1_LARGE or larger, not ${build.computeType}` });
  }
  if ((build.computeType === 'ATTRIBUTE_BASED_COMPUTE' || build.computeType === 'CUSTOM_INSTANCE_TYPE') && build.fleetArn === undefined) {
    problems.push({ field: 'fleetArn', message: `compute type ${build.computeType} is only available with a reserved-capacity fleet (set fleetArn)` });
  }
  if ((build.environmentType === 'LINUX_EC2' || build.environmentType === 'ARM_EC2') && build.fleetArn === undefined) {
    problems.push({ field: 'fleetArn', message: `environment type ${build.environmentType} is only available with a reserved-capacity fleet (set fleetArn)` });
  }
  return problems;
}
