import { z } from 'zod';
import { DeploySchema, deployProblems, policyRoleProblems } from './deploy-schema.js';
import { DEFAULT_PRICE_TABLE, DEFAULT_PRICES_AS_OF } from './pricing-defaults.js';
import { OVERRIDABLE_SETTINGS, PolicySchema, type PolicyConfig } from './policy-schema.js';
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

/** Most listeners one pool may run per mux (slot directories are `<pool>-<index>`). */
export const MAX_POOL_LISTENERS = 100;

/** The fields of a pool, before its capacity is resolved (PoolSchema). */
export const PoolFieldsSchema = z.strictObject({
  name: z.string().regex(/^[a-z0-9][a-z0-9-]{0,30}$/, 'lower-case letters, digits and "-", at most 31 characters'),
  labels: z
    .array(z.string().min(1).max(256).regex(/^[^,]+$/, 'a label cannot contain ","'))
    .min(1)
    .max(100),
  /** Fixed pool: this many listeners, always (the shorthand for idle = max). */
  slots: z.number().int().min(1).max(MAX_POOL_LISTENERS).optional(),
  /** Elastic pool: idle listeners kept ready for the next jobs (at least 1: only a listening runner learns of a job). */
  idle: z.number().int().min(1).max(MAX_POOL_LISTENERS).optional(),
  /** Elastic pool: most listeners (busy + idle + starting) per mux. */
  max: z.number().int().min(1).max(MAX_POOL_LISTENERS).optional(),
  /** Registrations (JIT configs) held ahead of need, listener not started, so a burst does not wait on GitHub's write rate. */
  prepared: z.number().int().min(0).max(MAX_POOL_LISTENERS).default(0),
  /** How long an idle listener above the target (or a surplus prepared registration) waits before it is retired. */
  coolDownSeconds: z.number().int().min(0).max(86_400).default(300),
  build: BuildSettingsSchema.default(() => BuildSettingsSchema.parse({})),
  warm: WarmSchema.default(() => WarmSchema.parse({})),
  /** Build settings a policy rule may change for this pool's jobs (policy.rules[].build); none by default. */
  overridable: z.array(z.enum(OVERRIDABLE_SETTINGS)).max(OVERRIDABLE_SETTINGS.length).default(() => []),
});

/**
 * A pool's capacity: `slots: N` is the fixed pool (idle = max = N, as before); `idle` + `max`
 * make it elastic (src/mux/elastic-pool.ts). The output always has `idle` and `max` (and
 * `slots` when given, then equal to both), so a parsed config parses again to the same.
 */
export const PoolSchema = PoolFieldsSchema.superRefine((pool, ctx) => {
  const { slots } = pool;
  if (slots !== undefined && ((pool.idle !== undefined && pool.idle !== slots) || (pool.max !== undefined && pool.max !== slots))) {
    ctx.addIssue({ code: 'custom', path: ['slots'], message: `slots is the shorthand for idle = max = ${slots}: give either slots, or idle and max` });
  }
  if (slots === undefined && pool.idle !== undefined && pool.max === undefined) ctx.addIssue({ code: 'custom', path: ['max'], message: 'an elastic pool (idle) needs max, the most listeners it may run' });
  if (pool.idle !== undefined && pool.max !== undefined && pool.idle > pool.max) ctx.addIssue({ code: 'custom', path: ['idle'], message: `idle (${pool.idle}) cannot exceed max (${pool.max})` });
  const most = pool.max ?? pool.slots ?? 1;
  if (pool.prepared > most) ctx.addIssue({ code: 'custom', path: ['prepared'], message: `prepared (${pool.prepared}) cannot exceed the pool's most listeners (${most})` });
}).transform((pool) => {
  const max = pool.max ?? pool.slots ?? 1;
  const idle = pool.idle ?? (pool.max !== undefined && pool.slots === undefined ? 1 : max);
  return { ...pool, idle, max };
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

export const DemandMetricsSchema = z.strictObject({
  /**
   * `auto`: on ECS only (ECS_AGENT_URI set), where the log driver carries the EMF lines to
   * CloudWatch; elsewhere they would be noise in a local log. `on` / `off`: always / never.
   */
  publish: z.enum(['auto', 'on', 'off']).default('auto'),
  /** Seconds between two publications; at most 60, so every one-minute period the scaling policy reads has a datum of every task. */
  intervalSeconds: z.number().int().min(10).max(60).default(60),
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
  /** The demand signal (src/mux/demand-metrics.ts): busy/idle listeners and shortfall as CloudWatch metrics, what `deploy.scaling` scales the tasks on. */
  demandMetrics: DemandMetricsSchema.default(() => DemandMetricsSchema.parse({})),
});

/**
 * What a build costs, for the job's log and the cost metrics: per region, per environment type,
 * per compute type, the price of one build minute. A table given here replaces the defaults
 * (src/config/pricing-defaults.ts) whole. How a build's minutes are counted is CodeBuild's
 * billing rule for its compute type (dispatch/job-cost.ts).
 */
export const PricingSchema = z.strictObject({
  currency: z.string().regex(/^[A-Z]{3}$/, 'expected an ISO 4217 currency code such as USD').default('USD'),
  /** The date the prices were read off the price list, shown beside every price. */
  asOf: z.string().regex(/^\d{4}-\d\d(-\d\d)?$/, 'expected YYYY-MM or YYYY-MM-DD').default(DEFAULT_PRICES_AS_OF),
  regions: z
    .record(
      z.string().regex(/^[a-z]{2}(-[a-z]+)+-\d$/, 'expected an AWS region such as us-east-1'),
      z.partialRecord(z.enum(ENVIRONMENT_TYPES), z.partialRecord(z.enum(COMPUTE_TYPES), z.number().min(0).max(1000).describe('price of one build minute'))),
    )
    .default(() => structuredClone(DEFAULT_PRICE_TABLE) as Record<string, Partial<Record<(typeof ENVIRONMENT_TYPES)[number], Partial<Record<(typeof COMPUTE_TYPES)[number], number>>>>>),
});
export type PricingConfig = z.infer<typeof PricingSchema>;

export const ConfigSchema = z
  .strictObject({
    github: GitHubSchema,
    codebuild: CodeBuildSchema,
    payloads: PayloadsSchema,
    pools: z.array(PoolSchema).min(1),
    mux: MuxSchema.default(() => MuxSchema.parse({})),
    /** Admission policy (src/config/policy-schema.ts): per job, before any build starts, which rule decides its role and settings, or refuses it. */
    policy: PolicySchema.default(() => PolicySchema.parse({})),
    /** Price table for each job's cost line and the cost metrics. */
    pricing: PricingSchema.default(() => PricingSchema.parse({})),
    /** Infra-only settings for `cbactions deploy` (src/config/deploy-schema.ts); the runtime ignores them. */
    deploy: DeploySchema.optional(),
  })
  .superRefine((config, ctx) => {
    if (config.deploy !== undefined) {
      for (const problem of deployProblems(config.deploy, config)) ctx.addIssue({ code: 'custom', path: problem.path, message: problem.message });
    }
    for (const problem of policyRoleProblems(config.policy, config.deploy)) ctx.addIssue({ code: 'custom', path: problem.path, message: problem.message });
    const seen = new Map<string, number>();
    config.pools.forEach((pool, index) => {
      const previous = seen.get(pool.name);
      if (previous !== undefined) {
        ctx.addIssue({ code: 'custom', path: ['pools', index, 'name'], message: `pool name "${pool.name}" is already used by pools[${previous}]` });
      }
      seen.set(pool.name, index);
      if (pool.prepared > 0 && config.github.registration !== 'jit') {
        ctx.addIssue({ code: 'custom', path: ['pools', index, 'prepared'], message: `pool "${pool.name}": registrations ahead of need are JIT configs; github.registration "token" registers through Runner.Listener configure, which writes into the slot itself: set prepared to 0` });
      }
      for (const issue of buildSettingsProblems(pool.build)) {
        ctx.addIssue({ code: 'custom', path: ['pools', index, 'build', issue.field], message: `pool "${pool.name}": ${issue.message}` });
      }
      for (const issue of warmProblems(pool, config.mux.dispatch)) {
        ctx.addIssue({ code: 'custom', path: ['pools', index, 'warm', issue.field], message: `pool "${pool.name}": ${issue.message}` });
      }
    });
    for (const problem of policyProblems(config.policy, config.pools)) ctx.addIssue({ code: 'custom', path: problem.path, message: problem.message });
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
  // A role only `deploy.roles` declares is for the stack; the runtime config has it in policy.roles.
  const missingRoles: ConfigProblem[] = [];
  config.policy.rules.forEach((rule, index) => {
    if (rule.role !== undefined && config.policy.roles[rule.role] === undefined) {
      missingRoles.push({
        path: ['policy', 'rules', index, 'role'],
        message: `rule "${rule.name}" names role "${rule.role}", which policy.roles does not define: the runtime needs its {arn, roleId} (\`cbactions deploy\` writes them for deploy.roles)`,
      });
    }
  });
  const bound = [
    ...('s3' in config.payloads.store ? ['an S3 payload store'] : []),
    ...('kms' in config.payloads.key ? ['a KMS payload key'] : []),
  ];
  if (bound.length === 0) return missingRoles;
  const why = `${bound.join(' and ')} bind${bound.length === 1 ? 's' : ''} each job to its build role's unique id (<roleId>:AWSCodeBuild-<uuid>)`;
  const lookUp = 'aws iam get-role --role-name NAME --query Role.RoleId';
  const problems: ConfigProblem[] = [...missingRoles];
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
  const usedRoles = new Set(config.policy.rules.flatMap((rule) => (rule.role === undefined ? [] : [rule.role])));
  for (const name of usedRoles) {
    const role = config.policy.roles[name];
    if (role !== undefined && role.roleId === undefined) {
      problems.push({
        path: ['policy', 'roles', name, 'roleId'],
        message: `policy role "${name}" (${role.arn}) has no roleId; ${why}: set it to the role's unique id (AROA…; ${lookUp}), or let \`cbactions deploy\` fill it in`,
      });
    }
  }
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

/**
 * The policy's cross-field checks, at load: rule names are unique, a refusing rule says
 * why, its pools exist, and a
 * rule restricted to pools sets only settings each of them lets rules override, giving
 * settings CodeBuild accepts. A rule for every pool that sets what some pool does not
 * allow is fine here: it refuses that pool's jobs at decision time, with the reason.
 */
export function policyProblems(policy: PolicyConfig, pools: readonly Pool[]): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const names = new Map<string, number>();
  policy.rules.forEach((rule, index) => {
    const at = (...path: (string | number)[]) => ['policy', 'rules', index, ...path];
    const previous = names.get(rule.name);
    if (previous !== undefined) problems.push({ path: at('name'), message: `rule name "${rule.name}" is already used by policy.rules[${previous}]` });
    names.set(rule.name, index);
    if (rule.effect === 'refuse') {
      if (rule.reason === undefined) problems.push({ path: at('reason'), message: `rule "${rule.name}" refuses jobs: give the reason shown on the job in GitHub` });
      if (rule.role !== undefined || rule.build !== undefined) problems.push({ path: at('effect'), message: `rule "${rule.name}" refuses jobs, so its role and build settings would never apply: remove them` });
    }
    // Whether the role exists (policy.roles or deploy.roles) is policyRoleProblems' (deploy-schema.ts).
    (rule.match.pool ?? []).forEach((poolName, poolIndex) => {
      const pool = pools.find((candidate) => candidate.name === poolName);
      if (pool === undefined) {
        problems.push({ path: at('match', 'pool', poolIndex), message: `rule "${rule.name}" names pool "${poolName}", which is not in pools (pools: ${pools.map((p) => p.name).join(', ')})` });
        return;
      }
      const overrides = rule.build ?? {};
      const set = OVERRIDABLE_SETTINGS.filter((setting) => overrides[setting] !== undefined);
      for (const setting of set.filter((candidate) => !pool.overridable.includes(candidate))) {
        problems.push({ path: at('build', setting), message: `rule "${rule.name}" sets ${setting} for pool "${pool.name}", which does not list it in overridable` });
      }
      if (set.length === 0) return;
      const merged = BuildSettingsSchema.safeParse({ ...pool.build, ...overrides });
      if (!merged.success) {
        for (const issue of merged.error.issues) problems.push({ path: at('build', ...issue.path.map((part) => (typeof part === 'number' ? part : String(part)))), message: `rule "${rule.name}" on pool "${pool.name}": ${issue.message}` });
        return;
      }
      for (const issue of buildSettingsProblems(merged.data)) {
        problems.push({ path: at('build', issue.field), message: `rule "${rule.name}" on pool "${pool.name}": ${issue.message}` });
      }
    });
  });
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
