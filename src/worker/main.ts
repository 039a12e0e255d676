import { KMSClient } from '@aws-sdk/client-kms';
import { S3Client } from '@aws-sdk/client-s3';
import { CodeBuildClient } from '@aws-sdk/client-codebuild';
import { Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { pino } from 'pino';
import { loadConfigFile } from '../config/load.js';
import type { Config, Pool } from '../config/schema.js';
import { readFrames } from '../protocol/codec.js';
import { ExitCode } from '../protocol/exit-codes.js';
import type { Frame } from '../protocol/messages.js';
import { createPayloadServices, payloadEnvironment, payloadRefsFromConfig } from '../seal/index.js';
import { CbactionsError, describeError, isCbactionsError } from '../util/errors.js';
import { createLogger, type Logger } from '../util/logger.js';
import { AwsCodeBuildApi } from '../dispatch/codebuild-api.js';
import { PollingBuildWaiter } from '../dispatch/build-waiter.js';
import { formatFailure, FailureCode } from '../dispatch/failure.js';
import { DEFAULT_JOB_LEASE, type JobLeaseSettings } from '../dispatch/job-lease.js';
import { runJob } from '../dispatch/run-job.js';
import { WorkerEnv } from './environment.js';
import { WatcherClient } from '../watcher/watcher-client.js';
import { readRunnerFiles } from '../dispatch/runner-files.js';

export { WorkerEnv } from './environment.js';

/**
 * The listener SIGKILLs the worker no sooner than 45 s after a cancel (RUNNER-PROTOCOL §2):
 * StopBuild must be sent well before that.
 */
export const DEFAULT_CANCEL_GRACE_SECONDS = 30;

function parseFd(value: string, name: string): number {
  if (!/^\d{1,9}$/.test(value)) throw new CbactionsError('WORKER_USAGE', `${name} must be a file descriptor number, got "${value.slice(0, 20)}"`);
  return Number(value);
}

export function selectPool(config: Config, name: string | undefined): Pool {
  if (name === undefined || name === '') {
    if (config.pools.length === 1) return config.pools[0] as Pool;
    throw new CbactionsError('CONFIG_POOL_MISSING', `${WorkerEnv.Pool} is not set and the config has ${config.pools.length} pools`);
  }
  const pool = config.pools.find((candidate) => candidate.name === name);
  if (!pool) throw new CbactionsError('CONFIG_POOL_UNKNOWN', `${WorkerEnv.Pool}="${name}" names no pool in the config (pools: ${config.pools.map((p) => p.name).join(', ')})`);
  return pool;
}

function cancelGraceMs(value: string | undefined): number {
  if (value === undefined || value === '') return DEFAULT_CANCEL_GRACE_SECONDS * 1000;
  if (!/^\d{1,3}$/.test(value) || Number(value) > 40) {
    throw new CbactionsError('CONFIG_INVALID', `${WorkerEnv.CancelGrace} must be whole seconds from 0 to 40 (the listener kills the worker 45 s after a cancel), got "${value}"`);
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

function workerLogger(env: NodeJS.ProcessEnv, runnerRoot: string): Logger {
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const path = env[WorkerEnv.Log] || join(runnerRoot, '_diag', `cbactions-worker-${stamp}-${process.pid}.log`);
  // Never stderr: the listener shows the worker's stderr to users when a job fails.
  return createLogger({ name: 'cbactions-worker', destination: pino.destination({ dest: path, mkdir: true, sync: true }) });
}

/**
 * `cbactions worker spawnclient R W`, started by Runner.Listener in place of the real
 * Runner.Worker. Its stderr is the job's error in the GitHub UI when it exits with an
 * invalid code, so it prints exactly one line there, and only then.
 */
export async function runWorkerCommand(args: { mode: string; readFd: string; writeFd: string }): Promise<number> {
  const env = process.env;
  let logger: Logger | undefined;
  let input: Socket | undefined;
  let codebuild: CodeBuildClient | undefined;
  let watcher: WatcherClient | undefined;
  const shutdown = new AbortController();
  const onSignal = () => shutdown.abort(new CbactionsError('WORKER_SIGNALLED', 'the worker was told to stop'));
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  try {
    if (args.mode !== 'spawnclient') throw new CbactionsError('WORKER_USAGE', `expected "spawnclient", got "${args.mode.slice(0, 20)}"`);
    const readFd = parseFd(args.readFd, 'readFd');
    parseFd(args.writeFd, 'writeFd');

    const runnerRoot = env[WorkerEnv.RunnerRoot] || dirname(process.cwd());
    logger = workerLogger(env, runnerRoot);
    const log = logger;
    process.removeAllListeners('warning');
    process.on('warning', (warning) => log.warn({ event: 'worker.node-warning', warning: warning.message }, 'Node.js warning'));

    input = new Socket({ fd: readFd, readable: true, writable: false });
    // Start reading the job at once, before loading config and clients: the listener's
    // send blocks on a full pipe and it kills a worker that has not read it in time.
    const iterator = readFrames(input)[Symbol.asyncIterator]();
    const firstFrame = iterator.next();
    firstFrame.catch(() => {});
    let firstTaken = false;
    const frames: AsyncIterator<Frame> = {
      next: () => {
        if (firstTaken) return iterator.next();
        firstTaken = true;
        return firstFrame;
      },
    };

    const configPath = env[WorkerEnv.Config];
    if (!configPath) throw new CbactionsError('CONFIG_MISSING', `${WorkerEnv.Config} is not set; the mux sets it to the config file`);
    const config = await loadConfigFile(configPath, { runtime: true });
    const pool = selectPool(config, env[WorkerEnv.Pool]);
    const refs = payloadRefsFromConfig(config.payloads, { baseDir: dirname(configPath) });
    const region = config.codebuild.region ?? env.AWS_REGION;
    const clientConfig = region ? { region } : {};
    // Retries are ours (jittered, with the idempotency token): one SDK attempt per call.
    codebuild = new CodeBuildClient({ ...clientConfig, maxAttempts: 1 });
    const services = await createPayloadServices(refs, {
      ...(refs.key.kind === 'kms' ? { kms: new KMSClient(clientConfig) } : {}),
      ...(refs.store.kind === 's3' ? { s3: new S3Client(clientConfig) } : {}),
    });
    const builds = new AwsCodeBuildApi(codebuild);
    const references = payloadEnvironment(refs);
    // The host's shared watcher when the mux runs one; polling on our own otherwise.
    const polling = new PollingBuildWaiter(builds, log);
    const socketPath = env[WorkerEnv.WatcherSocket];
    watcher = socketPath
      ? await WatcherClient.connect(socketPath, { pid: process.pid, pool: pool.name, ...(env[WorkerEnv.Slot] ? { slot: env[WorkerEnv.Slot] } : {}) }, polling, log)
      : undefined;
    const outcome = await runJob({
      frames,
      builds,
      waiter: watcher ?? polling,
      ...(watcher ? { tracker: watcher } : {}),
      keys: services.keys,
      store: services.store,
      runnerFiles: () => readRunnerFiles(env[WorkerEnv.SlotDir] || runnerRoot),
      logger: log,
      shutdownSignal: shutdown.signal,
      settings: {
        projectName: config.codebuild.projectName,
        poolName: pool.name,
        build: pool.build,
        ...(config.codebuild.buildRoleId ? { defaultRoleId: config.codebuild.buildRoleId } : {}),
        payloadReferences: { store: references.CBACTIONS_PAYLOAD_STORE, key: references.CBACTIONS_PAYLOAD_KEY },
        ...(env[WorkerEnv.RunnerVersion] ? { runnerVersion: env[WorkerEnv.RunnerVersion] } : {}),
        cancelGraceMs: cancelGraceMs(env[WorkerEnv.CancelGrace]),
        firstMessageTimeoutMs: 30_000,
        lease: leaseSettings(env),
        ...(env[WorkerEnv.MuxInstance] ? { muxInstance: env[WorkerEnv.MuxInstance] } : {}),
      },
    });
    if (outcome.failure) {
      process.stderr.write(`${formatFailure(outcome.failure)}\n`);
      log.error({ event: 'worker.failed', code: outcome.failure.code, buildId: outcome.buildId }, 'job did not run');
    } else {
      log.info({ event: 'worker.finished', exitCode: outcome.exitCode, buildId: outcome.buildId }, 'job finished');
    }
    await watcher?.finish(outcome.exitCode, outcome.failure?.code, outcome.jobId).catch(() => {});
    return outcome.exitCode;
  } catch (error) {
    const code = isCbactionsError(error) ? error.code : FailureCode.Internal;
    const message = isCbactionsError(error) ? error.message : describeError(error);
    process.stderr.write(`${formatFailure({ code, message: `the job could not be started: ${message}` })}\n`);
    logger?.error({ event: 'worker.failed', code, error: message }, 'worker failed');
    if (code.startsWith('PIPE_')) return ExitCode.ProtocolError;
    return code.startsWith('CONFIG_') || code === 'WORKER_USAGE' ? ExitCode.UsageOrConfig : ExitCode.InfrastructureFailure;
  } finally {
    input?.destroy();
    codebuild?.destroy();
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    // Bounded drain: whatever handle is left (an SDK socket), the worker must not outlive its job.
    setTimeout(() => process.exit(), 2000).unref();
  }
}
