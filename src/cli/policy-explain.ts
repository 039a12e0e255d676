/**
 * `cbactions policy explain --config FILE --job JOB.json [--pool NAME]`: what the admission
 * policy would decide for a job message, without starting anything, so an administrator can
 * check a policy before deploying it. Exit code 0: the job would run; 1: it would be refused;
 * 2: bad usage or an unreadable file.
 */
import { open } from 'node:fs/promises';
import { loadConfigFile } from '../config/load.js';
import type { Config, Pool } from '../config/schema.js';
import { decideAdmission, DEFAULT_RULE, type AdmissionDecision } from '../dispatch/admission.js';
import { readJobContext, type JobContext } from '../dispatch/job-context.js';
import { parseJobMessage } from '../dispatch/job-request.js';
import { ExitCode } from '../protocol/exit-codes.js';
import { CbactionsError, describeError, isCbactionsError } from '../util/errors.js';
import type { CommandOutput } from './create-local-key.js';

/** The listener's pipe takes at most 50 MB; a job file is never larger. */
export const MAX_JOB_FILE_BYTES = 50 * 1024 * 1024;

export const PolicyExplainErrorCode = {
  Usage: 'CONFIG_POLICY_EXPLAIN_USAGE',
  JobUnreadable: 'CONFIG_JOB_FILE_UNREADABLE',
  JobInvalid: 'CONFIG_JOB_FILE_INVALID',
} as const;

async function readJobFile(path: string): Promise<Buffer> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (error) {
    throw new CbactionsError(PolicyExplainErrorCode.JobUnreadable, `cannot read job file ${path}: ${(error as Error).message}`, { cause: error });
  }
  try {
    const stats = await handle.stat();
    if (stats.isFile() && stats.size > MAX_JOB_FILE_BYTES) throw new CbactionsError(PolicyExplainErrorCode.JobInvalid, `job file ${path} is ${stats.size} bytes; a job message is at most ${MAX_JOB_FILE_BYTES} bytes`);
    const buffer = Buffer.alloc(Math.min(MAX_JOB_FILE_BYTES + 1, stats.isFile() ? stats.size + 1 : MAX_JOB_FILE_BYTES + 1));
    let filled = 0;
    while (filled < buffer.length) {
      const { bytesRead } = await handle.read(buffer, filled, buffer.length - filled, null);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    if (filled > MAX_JOB_FILE_BYTES) throw new CbactionsError(PolicyExplainErrorCode.JobInvalid, `job file ${path} is larger than ${MAX_JOB_FILE_BYTES} bytes`);
    return buffer.subarray(0, filled);
  } catch (error) {
    if (error instanceof CbactionsError) throw error;
    throw new CbactionsError(PolicyExplainErrorCode.JobUnreadable, `cannot read job file ${path}: ${(error as Error).message}`, { cause: error });
  } finally {
    await handle.close();
  }
}

/** The job message of a file: UTF-8 (as saved from a log or written by hand) or UTF-16LE with its BOM (as on the listener's pipe). */
function jobMessageOf(bytes: Buffer, path: string): Record<string, unknown> {
  const utf16 = bytes.length >= 2 && bytes[0] === 0xff && bytes[1] === 0xfe;
  const text = utf16 ? bytes.subarray(2) : Buffer.from(bytes.toString('utf8').replace(/^\uFEFF/, ''), 'utf16le');
  try {
    return parseJobMessage(text);
  } catch (error) {
    throw new CbactionsError(PolicyExplainErrorCode.JobInvalid, `job file ${path}: ${isCbactionsError(error) ? error.message : describeError(error)}`, { cause: error });
  }
}

function selectPool(config: Config, name: string | undefined): Pool {
  const names = config.pools.map((pool) => pool.name).join(', ');
  if (name === undefined) {
    if (config.pools.length === 1) return config.pools[0] as Pool;
    throw new CbactionsError(PolicyExplainErrorCode.Usage, `the config has ${config.pools.length} pools (${names}): say which one the job would run on with --pool NAME`);
  }
  const pool = config.pools.find((candidate) => candidate.name === name);
  if (pool === undefined) throw new CbactionsError(PolicyExplainErrorCode.Usage, `--pool ${name.slice(0, 64)} names no pool in the config (pools: ${names})`);
  return pool;
}

function describeContext(context: JobContext): string[] {
  if (context.problem !== undefined) return [`unreadable: ${context.problem}`];
  const shown = (value: string | undefined) => (value === undefined ? '(missing)' : value === '' ? '(empty)' : value);
  return [
    `repository ${shown(context.repository)}`,
    `owner      ${shown(context.owner)}`,
    `event      ${shown(context.event)}`,
    `ref        ${shown(context.ref)}`,
    `workflow   ${shown(context.workflow)}`,
    `actor      ${shown(context.actor)}`,
    `fork       ${context.fork === undefined ? '(cannot tell)' : context.fork ? 'yes' : 'no'}`,
  ];
}

/** The explanation, one `label: value` a line. */
export function explainDecision(config: Config, pool: Pool, context: JobContext, decision: AdmissionDecision, jobId?: string): string {
  const index = config.policy.rules.findIndex((rule) => rule.name === decision.rule);
  const rule = decision.rule === DEFAULT_RULE ? `none matched: policy.defaultEffect (${config.policy.defaultEffect})` : `${decision.rule} (policy.rules[${index}])`;
  const lines: string[] = [];
  if (jobId !== undefined) lines.push(`job:      ${jobId}`);
  const [first, ...rest] = describeContext(context);
  lines.push(`context:  ${first}`, ...rest.map((line) => `          ${line}`));
  lines.push(`pool:     ${pool.name}`, `rule:     ${rule}`);
  if (decision.effect === 'refuse') {
    lines.push(`decision: refuse (${decision.code})`, `reason:   ${decision.reason}`);
    return `${lines.join('\n')}\n`;
  }
  const build = decision.build;
  const role = decision.role !== undefined ? `${decision.role} (${build.serviceRole?.arn})` : build.serviceRole !== undefined ? `the pool's (${build.serviceRole.arn})` : "the CodeBuild project's service role";
  const settings = [
    build.fleetArn !== undefined ? `fleet ${build.fleetArn}` : `${build.computeType} ${build.environmentType}`,
    ...(build.image !== undefined ? [`image ${build.image}`] : []),
    `privileged ${build.privileged ? 'yes' : 'no'}`,
    ...(build.timeoutMinutes !== undefined ? [`timeout ${build.timeoutMinutes} min`] : []),
    ...(build.queuedTimeoutMinutes !== undefined ? [`queued timeout ${build.queuedTimeoutMinutes} min`] : []),
  ];
  lines.push(
    'decision: run',
    `role:     ${role}`,
    `settings: ${settings.join(', ')}${decision.overridden.length > 0 ? ` (set by the rule: ${decision.overridden.join(', ')})` : ''}`,
  );
  return `${lines.join('\n')}\n`;
}

export async function runPolicyExplainCommand(options: { config?: string; job?: string; pool?: string }, output: CommandOutput): Promise<number> {
  try {
    if (!options.config || !options.job) throw new CbactionsError(PolicyExplainErrorCode.Usage, 'usage: cbactions policy explain --config FILE --job JOB.json [--pool NAME]');
    const config = await loadConfigFile(options.config);
    const pool = selectPool(config, options.pool);
    const message = jobMessageOf(await readJobFile(options.job), options.job);
    const context = readJobContext(message);
    const decision = decideAdmission(config.policy, pool, context);
    const jobId = typeof message.jobId === 'string' && /^[A-Za-z0-9_.:-]{1,128}$/.test(message.jobId) ? message.jobId : undefined;
    output.stdout(explainDecision(config, pool, context, decision, jobId));
    return decision.effect === 'run' ? ExitCode.Ok : ExitCode.InfrastructureFailure;
  } catch (error) {
    output.stderr(`cbactions policy explain: ${isCbactionsError(error) ? `${error.message} (${error.code})` : describeError(error)}\n`);
    return ExitCode.UsageOrConfig;
  }
}
