import { z } from 'zod';
import { PolicySchema } from './policy-schema.js';

/**
 * The `deploy` section of the config file: settings only the CDK app (`cbactions deploy`)
 * reads — network, sizes, images, logs, alarms, extra permissions for jobs. The runtime
 * (mux, worker, local mode) ignores it. Every field is optional; defaults are what a
 * first deployment needs.
 */

/** CloudWatch Logs accepts only these retention periods (days). */
export const LOG_RETENTION_DAYS = [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653] as const;

/** Fargate task sizes: CPU units → the memory sizes (MiB) Fargate accepts with them. */
function range(min: number, max: number, step: number): number[] {
  const sizes: number[] = [];
  for (let size = min; size <= max; size += step) sizes.push(size);
  return sizes;
}
export const FARGATE_SIZES: Readonly<Record<number, readonly number[]>> = {
  256: [512, 1024, 2048],
  512: range(1024, 4096, 1024),
  1024: range(2048, 8192, 1024),
  2048: range(4096, 16384, 1024),
  4096: range(8192, 30720, 1024),
};

export function fargateMemoryAllowed(cpu: number, memoryMiB: number): boolean {
  return FARGATE_SIZES[cpu]?.includes(memoryMiB) ?? false;
}

/** A role's name as `policy.roles` spells it (the same names rules use). */
const POLICY_ROLE_NAME = PolicySchema.shape.roles.unwrap().keyType;

/** One IAM statement for a build role, in IAM's own vocabulary. */
export const PolicyStatementSchema = z.strictObject({
  effect: z.enum(['Allow', 'Deny']).default('Allow'),
  actions: z.array(z.string().regex(/^[a-z0-9-]+:[A-Za-z0-9*?]+$/, 'expected "service:Action" (wildcards allowed)')).min(1),
  resources: z.array(z.string().regex(/^(\*|arn:.+)$/, 'expected an ARN or "*"')).min(1),
  /** IAM condition block: `{ StringEquals: { "aws:ResourceTag/team": "ci" } }`. */
  conditions: z.record(z.string().min(1), z.record(z.string().min(1), z.union([z.string(), z.array(z.string())]))).optional(),
});
export type PolicyStatementConfig = z.infer<typeof PolicyStatementSchema>;

/** What the jobs of a build role may do beyond cbactions' own needs (the user's AWS work). */
export const RolePermissionsSchema = z.strictObject({
  managedPolicyArns: z.array(z.string().regex(/^arn:aws[a-zA-Z-]*:iam::(\d{12}|aws):policy\/.+$/, 'expected an IAM managed policy ARN')).default([]),
  statements: z.array(PolicyStatementSchema).default([]),
});
export type RolePermissions = z.infer<typeof RolePermissionsSchema>;

export const SubnetSchema = z.strictObject({
  subnetId: z.string().regex(/^subnet-[0-9a-f]{8,17}$/, 'expected a subnet id (subnet-…)'),
  availabilityZone: z.string().regex(/^[a-z]{2}(-[a-z]+)+-\d[a-z]$/, 'expected an availability zone such as us-east-1a'),
});

/** An existing VPC to run in. Without it the stack creates a small VPC of its own. */
export const NetworkSchema = z.strictObject({
  vpcId: z.string().regex(/^vpc-[0-9a-f]{8,17}$/, 'expected a VPC id (vpc-…)'),
  /** Subnets for the listener tasks (and builds, with `codebuild: true`); several AZs spread the tasks. */
  subnets: z.array(SubnetSchema).min(1),
  /** Public IP on the tasks: needed in public subnets without a NAT gateway. */
  assignPublicIp: z.boolean().default(false),
  /** Run the CodeBuild builds in these subnets too (they must be private subnets with a NAT route). */
  codebuild: z.boolean().default(false),
});

export const ImagesSchema = z.strictObject({
  /** Prebuilt listener image (from docker/listener.Dockerfile); default: built from this repository at deploy. */
  listener: z.string().min(1).optional(),
  /** Prebuilt CodeBuild image (from docker/build.Dockerfile); default: built from this repository at deploy. */
  build: z.string().min(1).optional(),
});

export const AlarmsSchema = z.strictObject({
  /** Unexpected listener exits (restarts) within the period that raise the alarm. */
  listenerRestarts: z.number().int().min(1).default(3),
  /** Jobs that could not run (`worker.failed`) within the period that raise the alarm. */
  failedDispatches: z.number().int().min(1).default(1),
  periodMinutes: z.number().int().min(1).max(1440).default(5),
});

/**
 * ECS service auto scaling of the listener tasks: target tracking on `ListenerUtilization`
 * (src/mux/demand-metrics.ts), the service-wide average of each task's busiest pool's busy
 * share of its listener maximum. The target leaves `100 - target` % of every pool's
 * maximum free for jobs that have not arrived yet.
 */
export const ScalingSchema = z
  .strictObject({
    /** At least 1: a service at zero tasks publishes no demand, so nothing would scale it out again. */
    minTasks: z.number().int().min(1).max(100).default(1),
    maxTasks: z.number().int().min(1).max(100),
    /** The utilization (%) the policy holds; lower keeps more idle listeners ready. */
    targetUtilizationPercent: z.number().int().min(10).max(95).default(70),
    /** After a scale-out, how long before the next one may start (the new tasks' listeners take a minute or two to come up). */
    scaleOutCooldownSeconds: z.number().int().min(0).max(3600).default(120),
    /** After a scale-in, how long before the next one. */
    scaleInCooldownSeconds: z.number().int().min(0).max(3600).default(600),
  })
  .refine((scaling) => scaling.maxTasks >= scaling.minTasks, { message: 'must be at least minTasks', path: ['maxTasks'] });
export type ScalingConfig = z.infer<typeof ScalingSchema>;

export const DeploySchema = z.strictObject({
  /** CloudFormation stack name. */
  stackName: z.string().regex(/^[A-Za-z][A-Za-z0-9-]{0,127}$/, 'letters, digits and "-", starting with a letter').default('cbactions'),
  /** Target account; default: the credentials' account at deploy time. */
  account: z.string().regex(/^\d{12}$/, 'expected a 12-digit AWS account id').optional(),
  /** Target region; default: `codebuild.region`, else the CLI's region. */
  region: z.string().regex(/^[a-z]{2}(-[a-z]+)+-\d$/, 'expected an AWS region such as us-east-1').optional(),
  network: NetworkSchema.optional(),
  /** A fixed number of listener tasks (default 1); each runs every pool's slots. Leave out with `scaling`. */
  tasks: z.number().int().min(1).max(20).optional(),
  /** ECS service auto scaling between `minTasks` and `maxTasks` on the mux's demand signal, instead of a fixed `tasks`. */
  scaling: ScalingSchema.optional(),
  cpu: z.number().int().default(1024).refine((cpu) => FARGATE_SIZES[cpu] !== undefined, { message: 'expected a Fargate CPU size: 256, 512, 1024, 2048 or 4096' }),
  memoryMiB: z.number().int().default(2048),
  /** CPU architecture of the listener tasks (builds choose theirs per pool). */
  architecture: z.enum(['x86_64', 'arm64']).default('x86_64'),
  logRetentionDays: z
    .number()
    .int()
    .default(30)
    .refine((days) => (LOG_RETENTION_DAYS as readonly number[]).includes(days), { message: `expected one of ${LOG_RETENTION_DAYS.join(', ')}` }),
  images: ImagesSchema.default(() => ({})),
  /** EventBridge build state changes into an SQS queue the mux reads (faster than polling alone). */
  events: z.boolean().default(true),
  /** Alarm notifications go to this address (an SNS subscription to confirm). */
  alarmEmail: z.email().optional(),
  alarms: AlarmsSchema.default(() => AlarmsSchema.parse({})),
  /** Build timeout of the project in minutes (pools override it per build). */
  buildTimeoutMinutes: z.number().int().min(5).max(2160).default(360),
  /** Permissions of the default build role (what jobs may do in AWS). */
  buildRole: RolePermissionsSchema.default(() => RolePermissionsSchema.parse({})),
  /** Per pool (by name): a build role of its own, created by the stack. */
  pools: z.record(z.string(), z.strictObject({ serviceRole: RolePermissionsSchema })).default(() => ({})),
  /**
   * Roles the stack creates for policy rules (`policy.rules[].role` names them), each with the
   * jobs' own permissions and the same payload guards as every build role. The runtime config
   * the task gets lists them in `policy.roles` with their ARN and unique id.
   */
  roles: z.record(POLICY_ROLE_NAME, RolePermissionsSchema).default(() => ({})),
  /** Tags on every resource. */
  tags: z.record(z.string().min(1).max(128), z.string().max(256)).default(() => ({})),
});
export type DeployConfig = z.infer<typeof DeploySchema>;

/** A config's pools as far as the deploy checks need them. */
interface PoolLike {
  name: string;
  build: { serviceRole?: { arn: string; roleId?: string | undefined } | undefined };
}

/** Cross-field problems of `deploy` against the rest of the config; paths are from the top. */
export function deployProblems(
  deploy: DeployConfig,
  config: { pools: readonly PoolLike[]; codebuild: { region?: string | undefined }; mux?: { demandMetrics: { publish: 'auto' | 'on' | 'off' } } },
): { path: (string | number)[]; message: string }[] {
  const problems: { path: (string | number)[]; message: string }[] = [];
  if (deploy.scaling !== undefined && deploy.tasks !== undefined) {
    problems.push({
      path: ['deploy', 'tasks'],
      message: `a fixed count conflicts with deploy.scaling (minTasks ${deploy.scaling.minTasks}, maxTasks ${deploy.scaling.maxTasks}): remove deploy.tasks, or deploy.scaling to keep a fixed count`,
    });
  }
  if (deploy.scaling !== undefined && config.mux?.demandMetrics.publish === 'off') {
    problems.push({
      path: ['mux', 'demandMetrics', 'publish'],
      message: 'is "off", but deploy.scaling scales the tasks on the demand metrics the mux publishes: set it to "auto" (on ECS) or "on"',
    });
  }
  if (!fargateMemoryAllowed(deploy.cpu, deploy.memoryMiB)) {
    const size = FARGATE_SIZES[deploy.cpu];
    problems.push({
      path: ['deploy', 'memoryMiB'],
      message: size === undefined ? 'depends on a valid cpu' : `${deploy.memoryMiB} MiB is not a Fargate memory size for cpu ${deploy.cpu} (one of ${size.join(', ')})`,
    });
  }
  if (deploy.region !== undefined && config.codebuild.region !== undefined && deploy.region !== config.codebuild.region) {
    problems.push({ path: ['deploy', 'region'], message: `"${deploy.region}" differs from codebuild.region "${config.codebuild.region}": the project is created in the stack's region` });
  }
  for (const name of Object.keys(deploy.pools)) {
    const index = config.pools.findIndex((pool) => pool.name === name);
    if (index < 0) {
      problems.push({ path: ['deploy', 'pools', name], message: `names no pool (pools: ${config.pools.map((pool) => pool.name).join(', ')})` });
      continue;
    }
    if (config.pools[index]?.build.serviceRole !== undefined) {
      problems.push({
        path: ['deploy', 'pools', name, 'serviceRole'],
        message: `pools[${index}].build.serviceRole already names an existing role; use one or the other`,
      });
    }
  }
  if (deploy.network !== undefined) {
    const seen = new Set<string>();
    deploy.network.subnets.forEach((subnet, index) => {
      if (seen.has(subnet.subnetId)) problems.push({ path: ['deploy', 'network', 'subnets', index, 'subnetId'], message: `${subnet.subnetId} is listed twice` });
      seen.add(subnet.subnetId);
    });
  }
  return problems;
}

/** The part of the `policy` section the role checks need. */
interface PolicyLike {
  roles: Readonly<Record<string, unknown>>;
  rules: readonly { name: string; role?: string | undefined }[];
}

function quotedList(names: string[]): string {
  return names.length === 0 ? 'none' : names.map((name) => `"${name}"`).join(', ');
}

/**
 * Cross-field problems of the roles policy rules run as: every rule's `role` must be an
 * existing role (`policy.roles`) or one the stack creates (`deploy.roles`), and a name is one
 * or the other. Checked for every config (the runtime config has the created roles in
 * `policy.roles`), so a typo fails the file, not the job.
 */
export function policyRoleProblems(policy: PolicyLike, deploy: DeployConfig | undefined): { path: (string | number)[]; message: string }[] {
  const problems: { path: (string | number)[]; message: string }[] = [];
  const existing = Object.keys(policy.roles);
  const created = Object.keys(deploy?.roles ?? {});
  for (const name of created) {
    if (Object.hasOwn(policy.roles, name)) {
      problems.push({
        path: ['deploy', 'roles', name],
        message: `"${name}" is also in policy.roles (an existing role, by ARN); a role is either created by the stack (deploy.roles) or given (policy.roles), not both`,
      });
    }
  }
  const known = [...new Set([...existing, ...created])].sort();
  policy.rules.forEach((rule, index) => {
    if (rule.role === undefined || known.includes(rule.role)) return;
    problems.push({
      path: ['policy', 'rules', index, 'role'],
      message: `rule "${rule.name}" runs as the role "${rule.role}", which is neither in policy.roles nor in deploy.roles (roles: ${quotedList(known)})`,
    });
  });
  return problems;
}

/** Roles in `policy.roles` or `deploy.roles` that no rule names: harmless, but likely a leftover or a typo (a warning at deploy). */
export function unusedPolicyRoles(policy: PolicyLike, deploy: DeployConfig | undefined): { field: string; name: string }[] {
  const used = new Set(policy.rules.map((rule) => rule.role).filter((role) => role !== undefined));
  return [
    ...Object.keys(policy.roles).map((name) => ({ field: `policy.roles.${name}`, name })),
    ...Object.keys(deploy?.roles ?? {}).map((name) => ({ field: `deploy.roles.${name}`, name })),
  ].filter((role) => !used.has(role.name));
}

/** The fixed desired count of the listener service; undefined when `scaling` sets it. */
export function fixedTaskCount(deploy: DeployConfig): number | undefined {
  return deploy.scaling === undefined ? (deploy.tasks ?? 1) : undefined;
}
