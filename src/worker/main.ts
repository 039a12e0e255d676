import { Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { pino } from 'pino';
import { loadConfigFile } from '../config/load.js';
import { readFrames } from '../protocol/codec.js';
import type { Frame } from '../protocol/messages.js';
import { CbactionsError } from '../util/errors.js';
import { createLogger, type Logger } from '../util/logger.js';
import { PollingBuildWaiter } from '../dispatch/build-waiter.js';
import { createJobClients, type JobClients } from '../dispatch/job-clients.js';
import { isAdmissionRefusal } from '../dispatch/admission.js';
import { reportError, reportOutcome } from '../dispatch/job-report.js';
import { jobSettings, selectPool } from '../dispatch/job-settings.js';
import { runJob } from '../dispatch/run-job.js';
import { WorkerEnv } from './environment.js';
import { WatcherClient } from '../watcher/watcher-client.js';
import { readRunnerFiles } from '../dispatch/runner-files.js';


function parseFd(value: string, name: string): number {
  if (!/^\d{1,9}$/.test(value)) throw new CbactionsError('WORKER_USAGE', `${name} must be a file descriptor number, got "${value.slice(0, 20)}"`);
  return Number(value);
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
  let clients: JobClients | undefined;
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
    clients = createJobClients(config, configPath, env);
    const { builds } = clients;
    const { keys, store } = await clients.payloads();
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
      keys,
      store,
      runnerFiles: () => readRunnerFiles(env[WorkerEnv.SlotDir] || runnerRoot),
      logger: log,
      shutdownSignal: shutdown.signal,
      settings: jobSettings(config, configPath, pool, env),
    });
    const report = reportOutcome(outcome);
    for (const line of report.lines) process.stderr.write(`${line}\n`);
    if (isAdmissionRefusal(report.failureCode)) log.warn({ event: 'worker.refused', jobId: outcome.jobId, code: report.failureCode, rule: outcome.admission?.rule }, 'job refused by the admission policy');
    else if (report.failureCode) log.error({ event: 'worker.failed', code: report.failureCode, buildId: outcome.buildId }, 'job did not run');
    else log.info({ event: 'worker.finished', exitCode: outcome.exitCode, buildId: outcome.buildId }, 'job finished');
    await watcher?.finish(outcome.exitCode, outcome.failure?.code, outcome.jobId).catch(() => {});
    return outcome.exitCode;
  } catch (error) {
    const report = reportError(error);
    for (const line of report.lines) process.stderr.write(`${line}\n`);
    logger?.error({ event: 'worker.failed', code: report.failureCode, error: report.error }, 'worker failed');
    return report.exitCode;
  } finally {
    input?.destroy();
    clients?.destroy();
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    // Bounded drain: whatever handle is left (an SDK socket), the worker must not outlive its job.
    setTimeout(() => process.exit(), 2000).unref();
  }
}
