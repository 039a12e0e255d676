/**
 * A job's settings from the config and the listener's `CBACTIONS_*` environment: the same
 * for `cbactions worker` (its own environment) and in-mux dispatch (the shim's HELLO).
 */
import { dirname } from 'node:path';
import type { Config, Pool } from '../config/schema.js';
import { payloadEnvironment, payloadRefsFromConfig } from '../seal/index.js';
import { CbactionsError } from '../util/errors.js';
import { WorkerEnv } from '../worker/environment.js';
import { DEFAULT_JOB_LEASE, type JobLeaseSettings } from './job-lease.js';
import type { JobSettings } from './run-job.js';

/**
 * The listener SIGKILLs the worker no sooner than 45 s after a cancel (RUNNER-PROTOCOL §2):
 * StopBuild must be sent well before that.
 */
export const DEFAULT_CANCEL_GRACE_SECONDS = 30;

export function selectPool(config: Config, name: string | undefined): Pool {
  if (name === undefined || name === '') {
    if (config.pools.length === 1) return config.pools[0] as Pool;
    throw new CbactionsError('CONFIG_POOL_MISSING', `${WorkerEnv.Pool} is not set and the config has ${config.pools.length} pools`);
  }
  const pool = config.pools.find((candidate) => candidate.name === name);
  if (!pool) throw new CbactionsError('CONFIG_POOL_UNKNOWN', `${WorkerEnv.Pool}="${name}" names no pool in the config (pools: ${config.pools.map((p) => p.name).join(', ')})`);
  return pool;
}

export function cancelGraceMs(value: string | undefined): number {
  if (value === undefined || value === '') return DEFAULT_CANCEL_GRACE_SECONDS * 1000;
  if (!/^\d{1,3}$/.test(value) || Number(value) > 40) {
    throw new CbactionsError('CONFIG_INVALID', `${WorkerEnv.CancelGrace} must be whole seconds from 0 to 40 (the listener kills the worker 45 s after a cancel), got "${value.slice(0, 20)}"`);
  }
  return Number(value) * 1000;
}

/** The job lease's timing from the environment (seconds; for tests, short). */
export function leaseSettings(env: NodeJS.ProcessEnv): JobLeaseSettings {
  const read = (name: string, fallbackMs: number): number => {
    const value = env[name];
    if (value === undefined || value === '') return fallbackMs;
    if (!/^\d{1,5}$/.test(value) || Number(value) < 1 || Number(value) > 86_400) throw new CbactionsError('CONFIG_INVALID', `${name} must be whole seconds from 1 to 86400, got "${value.slice(0, 20)}"`);
    return Number(value) * 1000;
  };
  const renewMs = read(WorkerEnv.LeaseRenew, DEFAULT_JOB_LEASE.renewMs);
  const ttlMs = read(WorkerEnv.LeaseTtl, Math.max(DEFAULT_JOB_LEASE.ttlMs, renewMs * 3));
  if (ttlMs < renewMs * 2) throw new CbactionsError('CONFIG_INVALID', `${WorkerEnv.LeaseTtl} (${ttlMs / 1000} s) must be at least twice ${WorkerEnv.LeaseRenew} (${renewMs / 1000} s), so one failed renewal does not end the job`);
  return { renewMs, ttlMs };
}

/** Everything runJob needs to know about one job's build, from the config and the listener's environment. */
export function jobSettings(config: Config, configPath: string, pool: Pool, env: NodeJS.ProcessEnv): JobSettings {
  const references = payloadEnvironment(payloadRefsFromConfig(config.payloads, { baseDir: dirname(configPath) }));
  return {
    projectName: config.codebuild.projectName,
    poolName: pool.name,
    build: pool.build,
    policy: config.policy,
    overridable: pool.overridable,
    ...(config.codebuild.buildRoleId ? { defaultRoleId: config.codebuild.buildRoleId } : {}),
    payloadReferences: { store: references.CBACTIONS_PAYLOAD_STORE, key: references.CBACTIONS_PAYLOAD_KEY },
    ...(env[WorkerEnv.RunnerVersion] ? { runnerVersion: env[WorkerEnv.RunnerVersion] } : {}),
    cancelGraceMs: cancelGraceMs(env[WorkerEnv.CancelGrace]),
    firstMessageTimeoutMs: 30_000,
    lease: leaseSettings(env),
    ...(env[WorkerEnv.MuxInstance] ? { muxInstance: env[WorkerEnv.MuxInstance] } : {}),
    pricing: config.pricing,
    ...(config.codebuild.region ? { region: config.codebuild.region } : {}),
  };
}
