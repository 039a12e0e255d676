import { spawn } from 'node:child_process';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { encodeFrame } from '../protocol/codec.js';
import { MessageType } from '../protocol/messages.js';
import { openPayload } from '../seal/envelope.js';
import type { JobPayload, KeyService, PayloadBinding, PayloadStore } from '../seal/types.js';
import { sleep } from '../util/backoff.js';
import { CbactionsError, describeError, isCbactionsError } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { formatBuildTimeline, type BuildTimeline } from '../dispatch/job-timeline.js';
import type { JobLogFacts } from '../seal/types.js';
import { hookContext } from './job-hook.js';
import { jobStartedLines, type JobLogContext } from './job-log.js';
import { jobCompletedHookScript, jobStartedHookScript, type BuildFacts } from './job-started-hook.js';
import { ensureRunnerInstalled } from './runner-install.js';
import { StandbyFailureCode } from '../dispatch/standby-claim.js';
import { SealErrorCode } from '../seal/errors.js';
import { access, constants } from 'node:fs/promises';

export interface EntrypointDependencies {
  keys: KeyService;
  store: PayloadStore;
  /** Resolves this build's binding (with the caller identity check when IAM-bound). */
  resolveBinding: () => Promise<PayloadBinding>;
  runnerRoot: string;
  resultDir: string;
  logger: Logger;
  facts: BuildFacts;
  payloadWaitMs: number;
  cancelPollMs: number;
  /**
   * How often the job's lease is checked. When the holder (the worker) let it expire, it is
   * gone: the job is cancelled like a StopBuild and the result is JOB_LEASE_EXPIRED.
   */
  leaseCheckMs: number;
  /** After a lease-expiry cancel, how long the real worker may take before it is killed. */
  leaseCancelGraceMs: number;
  /** The clock leases are compared with (tests inject one). */
  now?: () => number;
  /** Aborts when CodeBuild (or the local build service) stops the build: relayed as a cancel. */
  stopSignal: AbortSignal;
  /** Environment for the real worker (the build's own). */
  workerEnv: NodeJS.ProcessEnv;
  /** Installs the runner on images that lack it (docker/install-runner.sh and its checksum file). */
  runnerInstall: { installer: string; checksums: string };
  /** When `cbactions entrypoint` started (default: when this function was called). */
  startedAt?: number;
  /** CODEBUILD_START_TIME: when CodeBuild accepted the build (epoch ms). */
  submittedAt?: number;
  /** argv that runs `cbactions` (the job-completed hook calls `cbactions job-hook completed`). */
  cbactionsCommand: readonly string[];
  /**
   * A standby build (CBACTIONS_STANDBY_WAIT_SECONDS): started before any job, it waits up
   * to `waitMs` from when it is ready, polling every `pollMs`, for a payload addressed to it.
   */
  standby?: { waitMs: number; pollMs: number };
  /** Told when a standby is ready (epoch ms), for the build's exported timeline. */
  onStandbyReady?: (readyAt: number) => void;
}

/** The result codes of a standby that ended without a job. */
export const STANDBY_EXPIRED = StandbyFailureCode.Expired;
export const STANDBY_STOPPED = StandbyFailureCode.Stopped;

export type EntrypointResult = { kind: 'exit-code'; exitCode: number } | { kind: 'failure'; code: string; message: string };

/** The result code of a build whose job holder let its lease expire. */
export const LEASE_EXPIRED = 'JOB_LEASE_EXPIRED';

export const RESULT_FILES = {
  exitCode: 'exit-code',
  failure: 'failure',
  hook: 'job-started.sh',
  completedHook: 'job-completed.sh',
  hookContext: 'job-hook.json',
  /** Exported as CBACTIONS_TIMELINE: the in-build times (dispatch/job-timeline.ts). */
  timeline: 'timeline',
} as const;

/** Writes what the buildspec exports: `exit-code` (the real worker's) or `failure` ("CODE: reason"). */
export async function writeResult(resultDir: string, result: EntrypointResult): Promise<void> {
  await mkdir(resultDir, { recursive: true, mode: 0o700 });
  if (result.kind === 'exit-code') {
    await writeFile(join(resultDir, RESULT_FILES.exitCode), String(result.exitCode));
  } else {
    // Exported variables are visible in the console: a reason, ids, never job content.
    const line = `${result.code}: ${result.message}`.replace(/\s+/g, ' ').slice(0, 1000);
    await writeFile(join(resultDir, RESULT_FILES.failure), line);
  }
}

async function writeRunnerFiles(runnerRoot: string, payload: JobPayload): Promise<void> {
  await writeFile(join(runnerRoot, '.runner'), payload.runnerFile, { mode: 0o600 });
  if (payload.credentialsFile) await writeFile(join(runnerRoot, '.credentials'), payload.credentialsFile, { mode: 0o600 });
}

/**
 * Inside the build: open this build's payload (single use), write `.runner`, run the real
 * `Runner.Worker spawnclient` with a fresh pipe pair as the listener would, relay a
 * cancel, and return the worker's exit code — or why the job could not run. Whatever the
 * outcome, the times it saw go to `<resultDir>/timeline` for the buildspec to export.
 */
export async function runEntrypoint(deps: EntrypointDependencies): Promise<EntrypointResult> {
  const now = deps.now ?? Date.now;
  const timeline: BuildTimeline = { entrypointStartedAt: Math.round(deps.startedAt ?? now()) };
  try {
    return await runJobInBuild(deps, timeline);
  } finally {
    await mkdir(deps.resultDir, { recursive: true, mode: 0o700 });
    await writeFile(join(deps.resultDir, RESULT_FILES.timeline), formatBuildTimeline(timeline)).catch((error: unknown) =>
      deps.logger.warn({ event: 'entrypoint.timeline-failed', error: describeError(error) }, 'could not write the timeline'),
    );
  }
}

async function runJobInBuild(deps: EntrypointDependencies, timeline: BuildTimeline): Promise<EntrypointResult> {
  const { logger } = deps;
  const clock = deps.now ?? Date.now;
  let payload: JobPayload;
  let binding: PayloadBinding;
  try {
    binding = await deps.resolveBinding();
    let sealed: Buffer;
    if (deps.standby) {
      const onStandbyReady = deps.onStandbyReady;
      const waited = await waitAsStandby(
        {
          ...deps,
          onStandbyReady: (readyAt) => {
            timeline.readyAt = Math.round(readyAt);
            onStandbyReady?.(readyAt);
          },
        },
        deps.standby,
        binding,
      );
      if (waited.kind === 'failure') return waited;
      sealed = waited.sealed;
    } else {
      logger.info({ event: 'entrypoint.payload-wait', buildId: binding.buildId, location: deps.store.describe(binding) }, 'fetching the sealed job');
      sealed = await deps.store.take(binding, { waitMs: deps.payloadWaitMs, signal: deps.stopSignal });
    }
    payload = await openPayload(deps.keys, sealed, binding);
    timeline.payloadOpenedAt = Math.round(clock());
  } catch (error) {
    if (deps.stopSignal.aborted) return { kind: 'failure', code: 'JOB_CANCELLED_BEFORE_START', message: 'the build was stopped before the job started' };
    if (isCbactionsError(error)) return { kind: 'failure', code: error.code, message: error.message };
    throw error;
  }
  if (payload.ids.buildId !== binding.buildId) {
    return { kind: 'failure', code: 'PAYLOAD_WRONG_BUILD', message: `the payload names build ${payload.ids.buildId}, this is ${binding.buildId}` };
  }
  logger.info({ event: 'entrypoint.payload-opened', buildId: binding.buildId, jobId: payload.ids.jobId, bytes: payload.jobMessage.length }, 'job opened');
  if (await deps.store.isCancelRequested(binding).catch(() => false)) {
    return { kind: 'failure', code: 'JOB_CANCELLED_BEFORE_START', message: 'the job was cancelled before it started' };
  }

  try {
    await ensureRunnerInstalled({
      runnerRoot: deps.runnerRoot,
      ...(payload.runnerVersion ? { version: payload.runnerVersion } : {}),
      ...deps.runnerInstall,
      env: deps.workerEnv,
      logger,
    });
  } catch (error) {
    if (isCbactionsError(error)) return { kind: 'failure', code: error.code, message: error.message };
    throw error;
  }
  await writeRunnerFiles(deps.runnerRoot, payload);
  const hookPath = join(deps.resultDir, RESULT_FILES.hook);
  await mkdir(deps.resultDir, { recursive: true, mode: 0o700 });
  // What the mux has told so far (the price; CodeBuild's waits once it saw them), for the job's log.
  const facts: JobLogFacts | undefined = await deps.store.readLease(binding, deps.stopSignal).then(
    (lease) => lease?.facts,
    () => undefined,
  );
  const logContext: JobLogContext = {
    entrypointStartedAt: timeline.entrypointStartedAt,
    ...(deps.submittedAt !== undefined ? { submittedAt: deps.submittedAt } : {}),
    ...(payload.timeline ? { start: payload.timeline.start } : {}),
  };
  await writeFile(hookPath, jobStartedHookScript(deps.facts, deps.workerEnv.ACTIONS_RUNNER_HOOK_JOB_STARTED, jobStartedLines(logContext, facts)));
  await chmod(hookPath, 0o755);
  const contextPath = join(deps.resultDir, RESULT_FILES.hookContext);
  await writeFile(contextPath, JSON.stringify(hookContext(logContext, binding, facts)), { mode: 0o600 });
  const completedHookPath = join(deps.resultDir, RESULT_FILES.completedHook);
  await writeFile(completedHookPath, jobCompletedHookScript(deps.cbactionsCommand, contextPath, deps.workerEnv.ACTIONS_RUNNER_HOOK_JOB_COMPLETED));
  await chmod(completedHookPath, 0o755);

  // A stop that came while the runner was installed: its abort event has fired already, and the
  // listener below would never hear it. From the spawn on, the listener is in place.
  if (deps.stopSignal.aborted) return { kind: 'failure', code: 'JOB_CANCELLED_BEFORE_START', message: 'the build was stopped before the job started' };

  const bin = join(deps.runnerRoot, 'bin');
  const env: NodeJS.ProcessEnv = { ...deps.workerEnv, ACTIONS_RUNNER_HOOK_JOB_STARTED: hookPath, ACTIONS_RUNNER_HOOK_JOB_COMPLETED: completedHookPath };
  env.GITHUB_ACTIONS ??= 'true';
  env.CI ??= 'true';
  // fds 3 and 4 are socket pairs: the worker side of .NET accepts a FIFO or a socket.
  const child = spawn(join(bin, 'Runner.Worker'), ['spawnclient', '3', '4'], {
    cwd: bin,
    env,
    stdio: ['pipe', 'inherit', 'inherit', 'pipe', 'pipe'],
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    child.once('error', (error) => reject(new CbactionsError('RUNNER_WORKER_START_FAILED', `cannot start ${join(bin, 'Runner.Worker')}: ${error.message}`, { cause: error })));
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  child.stdin?.end();
  const toWorker = child.stdio[3] as Duplex;
  const fromWorker = child.stdio[4] as Duplex;
  toWorker.on('error', (error) => logger.warn({ event: 'entrypoint.pipe-error', error: error.message }, 'pipe to Runner.Worker failed'));
  fromWorker.on('error', () => {});
  fromWorker.resume();
  timeline.workerStartedAt = Math.round(clock());
  logger.info({ event: 'entrypoint.worker-started', pid: child.pid }, 'Runner.Worker started');

  toWorker.write(encodeFrame(MessageType.NewJobRequest, payload.jobMessage));
  // Drop our reference to the plaintext as soon as it is on the pipe.
  payload.jobMessage = Buffer.alloc(0);

  let cancelSent = false;
  const sendCancel = (source: string) => {
    if (cancelSent || child.exitCode !== null || child.signalCode !== null) return;
    cancelSent = true;
    logger.info({ event: 'entrypoint.cancel', source }, 'relaying cancel to Runner.Worker');
    toWorker.write(encodeFrame(MessageType.CancelRequest));
  };
  deps.stopSignal.addEventListener('abort', () => sendCancel('signal'), { once: true });
  const polling = new AbortController();
  void (async () => {
    while (!polling.signal.aborted) {
      try {
        await sleep(deps.cancelPollMs, polling.signal);
        if (await deps.store.isCancelRequested(binding, polling.signal)) {
          sendCancel('cancel marker');
          return;
        }
      } catch (error) {
        if (polling.signal.aborted) return;
        logger.warn({ event: 'entrypoint.cancel-poll-failed', error: describeError(error) }, 'checking for a cancel failed');
      }
    }
  })();

  // The job's lease: its holder renews it while it lives. A missing lease (an older worker,
  // or one released at the end of the job) is no verdict; only an expired one is.
  const now = deps.now ?? Date.now;
  let leaseExpired: Date | undefined;
  let killTimer: NodeJS.Timeout | undefined;
  void (async () => {
    let missingLogged = false;
    while (!polling.signal.aborted) {
      try {
        await sleep(deps.leaseCheckMs, polling.signal);
        const lease = await deps.store.readLease(binding, polling.signal);
        if (lease === undefined) {
          if (!missingLogged) logger.warn({ event: 'entrypoint.lease-missing', buildId: binding.buildId }, 'no job lease to watch');
          missingLogged = true;
          continue;
        }
        if (lease.expiresAt.getTime() >= now()) continue;
        leaseExpired = lease.expiresAt;
        logger.error({ event: 'entrypoint.lease-expired', code: LEASE_EXPIRED, buildId: binding.buildId, expiredAt: lease.expiresAt.toISOString() }, 'the job lease expired: its holder is gone');
        sendCancel('lease expired');
        killTimer = setTimeout(() => {
          logger.warn({ event: 'entrypoint.worker-killed', reason: 'no exit after the lease-expiry cancel', graceMs: deps.leaseCancelGraceMs }, 'killing Runner.Worker');
          child.kill('SIGKILL');
        }, deps.leaseCancelGraceMs);
        return;
      } catch (error) {
        if (polling.signal.aborted) return;
        logger.warn({ event: 'entrypoint.lease-check-failed', error: describeError(error) }, 'checking the job lease failed');
      }
    }
  })();

  let outcome: { code: number | null; signal: NodeJS.Signals | null };
  try {
    outcome = await exited;
  } catch (error) {
    clearTimeout(killTimer);
    polling.abort();
    if (isCbactionsError(error)) return { kind: 'failure', code: error.code, message: error.message };
    throw error;
  }
  timeline.workerExitedAt = Math.round(clock());
  clearTimeout(killTimer);
  polling.abort();
  toWorker.destroy();
  fromWorker.destroy();
  await deps.store.clearCancel(binding).catch(() => {});
  const exitCode = outcome.code ?? 128 + signalNumber(outcome.signal);
  logger.info({ event: 'entrypoint.worker-exited', exitCode, signal: outcome.signal, cancelSent }, 'Runner.Worker exited');
  if (leaseExpired !== undefined) {
    return { kind: 'failure', code: LEASE_EXPIRED, message: `the job's lease expired at ${leaseExpired.toISOString()} (the cbactions worker holding the job is gone); the job was cancelled (Runner.Worker exited ${exitCode})` };
  }
  return { kind: 'exit-code', exitCode };
}

/**
 * A standby's wait: ready (what can be done before a job is done: the buildspec's install
 * phase started Docker on privileged pools), then one `take` per poll. The deadline is
 * checked before each poll, so no payload is taken after it; past it the build ends with
 * STANDBY_EXPIRED, stopped while waiting with STANDBY_STOPPED — the mux then knows for
 * sure that a payload it handed over was never opened.
 */
async function waitAsStandby(deps: EntrypointDependencies, standby: { waitMs: number; pollMs: number }, binding: PayloadBinding): Promise<{ kind: 'taken'; sealed: Buffer } | Extract<EntrypointResult, { kind: 'failure' }>> {
  const { logger } = deps;
  const now = deps.now ?? Date.now;
  const readyAt = now();
  const deadline = readyAt + standby.waitMs;
  deps.onStandbyReady?.(readyAt);
  const runnerPresent = await access(join(deps.runnerRoot, 'bin', 'Runner.Worker'), constants.X_OK).then(() => true, () => false);
  logger.info({ event: 'entrypoint.standby-ready', buildId: binding.buildId, readyAt, waitSeconds: standby.waitMs / 1000, pollMs: standby.pollMs, runnerPresent, location: deps.store.describe(binding) }, 'standby ready; waiting for a job');
  const stopped = () => ({ kind: 'failure' as const, code: STANDBY_STOPPED, message: `the standby build was stopped after waiting ${Math.round((now() - readyAt) / 1000)} s for a job; it took none` });
  let polls = 0;
  let warned = false;
  for (;;) {
    if (deps.stopSignal.aborted) return stopped();
    if (now() >= deadline) {
      logger.info({ event: 'entrypoint.standby-expired', buildId: binding.buildId, polls }, 'no job within the standby wait');
      return { kind: 'failure', code: STANDBY_EXPIRED, message: `no job came within the standby wait of ${standby.waitMs / 1000} s; the standby took none` };
    }
    polls += 1;
    try {
      const sealed = await deps.store.take(binding, { waitMs: 0, signal: deps.stopSignal });
      logger.info({ event: 'entrypoint.standby-taken', buildId: binding.buildId, waitedMs: now() - readyAt, polls }, 'standby took its job');
      return { kind: 'taken', sealed };
    } catch (error) {
      if (deps.stopSignal.aborted) return stopped();
      if (isCbactionsError(error, SealErrorCode.AlreadyUsed)) return { kind: 'failure', code: error.code, message: error.message };
      // Not there yet; S3 may also answer 403 for a key not there yet, or fail for a moment: keep polling until the deadline.
      if (!isCbactionsError(error, SealErrorCode.NotFound) && !warned) {
        warned = true;
        logger.warn({ event: 'entrypoint.standby-poll-failed', buildId: binding.buildId, error: describeError(error) }, 'polling for the job failed; still waiting');
      }
    }
    await sleep(Math.max(0, Math.min(standby.pollMs, deadline - now())), deps.stopSignal).catch(() => {});
  }
}

const SIGNAL_NUMBERS: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGABRT: 6, SIGKILL: 9, SIGSEGV: 11, SIGPIPE: 13, SIGTERM: 15 };

function signalNumber(signal: NodeJS.Signals | null): number {
  return (signal && SIGNAL_NUMBERS[signal]) ?? 0;
}
