import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { ConfigErrorCode, formatIssues } from '../config/load.js';
import { CbactionsError } from '../util/errors.js';
import { DEFAULT_CREDENTIALS_PROFILE } from './credentials.js';
import { FaultsSchema } from './faults.js';
import { SimulationSchema, type Simulation } from './simulate.js';
import { COMPUTE_TYPE_VALUES, ENVIRONMENT_TYPE_VALUES, MAX_ENVIRONMENT_VALUE_LENGTH, RESERVED_VARIABLE_PREFIX } from './limits.js';

export const DEFAULT_IMAGE = 'aws/codebuild/amazonlinux-x86_64-standard:5.0';

const ProjectNameSchema = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_-]{1,254}$/, 'expected a CodeBuild project name (2-255 letters, digits, "-", "_")');

const ProjectSchema = z.strictObject({
  name: ProjectNameSchema,
  /** Path of the buildspec; relative to the config file (or, from --buildspec, to the cwd). */
  buildspec: z.string().min(1).default('buildspec.yml'),
  environmentVariables: z
    .record(
      z.string().min(1),
      z
        .union([z.string(), z.number(), z.boolean()])
        .transform(String)
        .refine((value) => [...value].length <= MAX_ENVIRONMENT_VALUE_LENGTH, `a value can have at most ${MAX_ENVIRONMENT_VALUE_LENGTH} characters`),
    )
    .superRefine((variables, ctx) => {
      for (const name of Object.keys(variables)) {
        if (name.startsWith(RESERVED_VARIABLE_PREFIX)) ctx.addIssue({ code: 'custom', path: [name], message: `names starting with ${RESERVED_VARIABLE_PREFIX} are reserved` });
      }
    })
    .default({}),
  image: z.string().min(1).default(DEFAULT_IMAGE),
  computeType: z.enum(COMPUTE_TYPE_VALUES).default('BUILD_GENERAL1_SMALL'),
  environmentType: z.enum(ENVIRONMENT_TYPE_VALUES).default('LINUX_CONTAINER'),
  privilegedMode: z.boolean().default(false),
  timeoutInMinutes: z.number().int().min(5).max(2160).default(60),
  queuedTimeoutInMinutes: z.number().int().min(5).max(480).default(480),
  serviceRole: z.string().regex(/^arn:aws[a-zA-Z-]*:iam::\d{12}:role\/.+$/, 'expected an IAM role ARN').optional(),
  /**
   * An actions/runner installation of the "image" (relative to the config file). Each build
   * gets its own copy of it in CBACTIONS_RUNNER_ROOT — hard links under the build's
   * directory, removed when the build ends — as each CodeBuild build starts from a fresh
   * container: builds never share `.runner`, `.credentials`, `_diag` or `_work`.
   */
  runnerRoot: z.string().min(1).optional(),
  /** Simulated QUEUED and PROVISIONING delays of this project's builds (replaces the top-level `simulate`). */
  simulate: SimulationSchema.optional(),
});
export type ProjectConfig = z.infer<typeof ProjectSchema>;

export const BuildServiceConfigSchema = z
  .strictObject({
    host: z.string().min(1).default('127.0.0.1'),
    port: z.number().int().min(0).max(65535).default(0),
    /** Build records and logs; relative to the config file. Default: a fresh temporary directory. */
    stateDir: z.string().min(1).optional(),
    region: z.string().regex(/^[a-z]{2}(-[a-z]+)+-\d$/, 'expected an AWS region such as us-east-1').default('us-east-1'),
    accountId: z.string().regex(/^\d{12}$/, 'expected a 12-digit AWS account id').default('000000000000'),
    /** Length of one CodeBuild "minute" for build and queue timeouts; shorten only in tests. */
    minuteMs: z.number().int().min(1).default(60_000),
    /** StopBuild, timeout and shutdown: SIGTERM to the build's process group, SIGKILL after this. */
    stopGraceMs: z.number().int().min(0).default(10_000),
    /** Builds running at once; more wait in QUEUED (at most 5× this many, then AccountLimitExceededException). */
    concurrentBuildLimit: z.number().int().min(1).optional(),
    /** Give each build its service role's credentials through STS AssumeRole (AWS_ENDPOINT_URL_STS). */
    assumeServiceRole: z.boolean().default(false),
    /** What the builds report as `initiator` and CODEBUILD_INITIATOR. */
    initiator: z.string().min(1).default('cbactions-local'),
    faults: FaultsSchema.optional(),
    /** Simulated QUEUED and PROVISIONING delays of every project's builds (a project's own `simulate` replaces it). */
    simulate: SimulationSchema.optional(),
    /** Where the service writes its key pair (AWS shared-credentials format, mode 0600); relative to the config file. Default: `<stateDir>/credentials`. */
    credentialsFile: z.string().min(1).optional(),
    /** The profile name in that file (what callers put in AWS_PROFILE). */
    credentialsProfile: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'expected a profile name (letters, digits, "_", ".", "-")').default(DEFAULT_CREDENTIALS_PROFILE),
    /** Host header values served besides the bind address and the loopback names, e.g. a container's name for the host; `name` or `name:port`. */
    allowedHosts: z.array(z.string().regex(/^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/, 'expected a host name or [IPv6 address], optionally with :port')).default([]),
    projects: z.array(ProjectSchema).min(1).optional(),
  })
  .superRefine((config, ctx) => {
    const seen = new Map<string, number>();
    config.projects?.forEach((project, index) => {
      const previous = seen.get(project.name);
      if (previous !== undefined) {
        ctx.addIssue({ code: 'custom', path: ['projects', index, 'name'], message: `project name "${project.name}" is already used by projects[${previous}]` });
      }
      seen.set(project.name, index);
    });
  });
export type BuildServiceConfigInput = z.input<typeof BuildServiceConfigSchema>;

/** The configuration the service runs with: every path absolute, every default filled. */
export interface ResolvedBuildServiceConfig {
  host: string;
  port: number;
  stateDir: string | undefined;
  region: string;
  accountId: string;
  minuteMs: number;
  stopGraceMs: number;
  concurrentBuildLimit: number | undefined;
  assumeServiceRole: boolean;
  initiator: string;
  faults: z.infer<typeof FaultsSchema> | undefined;
  /** The default simulation; the projects carry their own. */
  simulate: Simulation | undefined;
  /** Absolute, or undefined for `<stateDir>/credentials`. */
  credentialsFile: string | undefined;
  credentialsProfile: string;
  allowedHosts: string[];
  projects: ProjectConfig[];
  /** Where relative `buildspecOverride` paths are resolved: the config file's folder, else the cwd. */
  baseDir: string;
}

/** The command-line flags of `cbactions build-service`, as commander hands them over. */
export interface BuildServiceFlags {
  config?: string | undefined;
  port?: string | undefined;
  host?: string | undefined;
  stateDir?: string | undefined;
  buildspec?: string | undefined;
  project?: string | undefined;
  minuteMs?: string | undefined;
  region?: string | undefined;
  accountId?: string | undefined;
  stopGraceMs?: string | undefined;
  concurrentBuildLimit?: string | undefined;
  assumeServiceRole?: string | undefined;
  faults?: string | undefined;
  simulate?: string | undefined;
  credentialsFile?: string | undefined;
}

const DEFAULT_PROJECT = 'cbactions';

/** Numbers stay strings when they are not numbers, so zod names the field in its complaint. */
function numberFlag(value: string | undefined): number | string | undefined {
  if (value === undefined) return undefined;
  return /^-?\d+(\.\d+)?$/.test(value.trim()) ? Number(value) : value;
}

/** Booleans from the command line accept only explicit true/false. */
function booleanFlag(value: string | undefined): boolean | string | undefined {
  if (value === 'true') return true;
  if (value === 'false') return false;
  return value;
}

function invalid(source: string, lines: string[], cause?: unknown): CbactionsError {
  return new CbactionsError(ConfigErrorCode.Invalid, `${source} is invalid:\n  ${lines.join('\n  ')}`, { cause });
}

/**
 * Merges the config file (already parsed from YAML, or undefined) with the flags; flags win.
 * Pure: paths are resolved against `configDir` and `cwd` given by the caller.
 */
export function resolveBuildServiceConfig(input: { file: unknown; configDir: string | undefined; flags: BuildServiceFlags; cwd: string }): ResolvedBuildServiceConfig {
  const { flags, cwd } = input;
  const source = input.configDir === undefined ? 'build-service options' : 'build-service configuration (file and flags)';
  if (input.file !== undefined && (typeof input.file !== 'object' || input.file === null || Array.isArray(input.file))) {
    throw invalid(source, ['(top level): expected a mapping of settings']);
  }
  const raw: Record<string, unknown> = { ...((input.file as Record<string, unknown> | undefined) ?? {}) };
  const overrides: Record<string, unknown> = {
    host: flags.host,
    port: numberFlag(flags.port),
    stateDir: flags.stateDir,
    region: flags.region,
    accountId: flags.accountId,
    minuteMs: numberFlag(flags.minuteMs),
    stopGraceMs: numberFlag(flags.stopGraceMs),
    concurrentBuildLimit: numberFlag(flags.concurrentBuildLimit),
    assumeServiceRole: booleanFlag(flags.assumeServiceRole),
  };
  for (const [key, value] of Object.entries(overrides)) if (value !== undefined) raw[key] = value;
  if (flags.faults !== undefined) {
    try {
      raw.faults = JSON.parse(flags.faults) as unknown;
    } catch (error) {
      throw invalid(source, [`faults: --faults is not valid JSON (${(error as Error).message})`], error);
    }
  }
  if (flags.simulate !== undefined) {
    try {
      raw.simulate = JSON.parse(flags.simulate) as unknown;
    } catch (error) {
      throw invalid(source, [`simulate: --simulate is not valid JSON (${(error as Error).message})`], error);
    }
  }

  const result = BuildServiceConfigSchema.safeParse(raw);
  if (!result.success) throw invalid(source, formatIssues(result.error.issues), result.error);
  const config = result.data;

  const baseDir = input.configDir ?? cwd;
  let projects = (config.projects ?? []).map((project) => ({
    ...project,
    buildspec: resolve(baseDir, project.buildspec),
    ...(project.runnerRoot !== undefined ? { runnerRoot: resolve(baseDir, project.runnerRoot) } : {}),
  }));
  const flagBuildspec = flags.buildspec === undefined ? undefined : resolve(cwd, flags.buildspec);
  if (projects.length === 0) {
    projects = [parseProject({ name: flags.project ?? DEFAULT_PROJECT, buildspec: flagBuildspec ?? resolve(cwd, 'buildspec.yml') }, source)];
  } else if (flags.project !== undefined || flagBuildspec !== undefined) {
    // With a config file, --project names the project --buildspec replaces (or adds).
    const name = flags.project ?? projects[0]?.name ?? DEFAULT_PROJECT;
    const existing = projects.find((project) => project.name === name);
    if (existing) {
      if (flagBuildspec !== undefined) existing.buildspec = flagBuildspec;
    } else {
      projects.push(parseProject({ name, buildspec: flagBuildspec ?? resolve(cwd, 'buildspec.yml') }, source));
    }
  }

  return {
    host: config.host,
    port: config.port,
    // A --state-dir is relative to the cwd, a stateDir in the file to the file.
    stateDir: flags.stateDir !== undefined ? resolve(cwd, flags.stateDir) : config.stateDir === undefined ? undefined : resolve(baseDir, config.stateDir),
    region: config.region,
    accountId: config.accountId,
    minuteMs: config.minuteMs,
    stopGraceMs: config.stopGraceMs,
    concurrentBuildLimit: config.concurrentBuildLimit,
    assumeServiceRole: config.assumeServiceRole,
    initiator: config.initiator,
    faults: config.faults,
    simulate: config.simulate,
    // Like the state directory: a flag is relative to the cwd, the file's field to the file.
    credentialsFile: flags.credentialsFile !== undefined ? resolve(cwd, flags.credentialsFile) : config.credentialsFile === undefined ? undefined : resolve(baseDir, config.credentialsFile),
    credentialsProfile: config.credentialsProfile,
    allowedHosts: config.allowedHosts,
    projects,
    baseDir,
  };
}

function parseProject(raw: { name: string; buildspec: string }, source: string): ProjectConfig {
  const result = ProjectSchema.safeParse(raw);
  if (!result.success) throw invalid(source, formatIssues(result.error.issues.map((issue) => ({ ...issue, path: ['project', ...issue.path] }))), result.error);
  return result.data;
}

/** Reads `--config` (if any) and merges the flags. Every problem names its field. */
export async function loadBuildServiceConfig(flags: BuildServiceFlags, cwd: string): Promise<ResolvedBuildServiceConfig> {
  if (flags.config === undefined) return resolveBuildServiceConfig({ file: undefined, configDir: undefined, flags, cwd });
  const path = resolve(cwd, flags.config);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new CbactionsError(ConfigErrorCode.Unreadable, `cannot read build-service config file ${path}: ${(error as Error).message}`, { cause: error });
  }
  let file: unknown;
  try {
    file = parseYaml(text, { prettyErrors: true }) ?? {};
  } catch (error) {
    throw new CbactionsError(ConfigErrorCode.Syntax, `build-service config file ${path} is not valid YAML/JSON: ${(error as Error).message}`, { cause: error });
  }
  return resolveBuildServiceConfig({ file, configDir: dirname(path), flags, cwd });
}
