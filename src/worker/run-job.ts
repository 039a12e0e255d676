import type { BuildSettings } from '../config/schema.js';
import { MessageType, messageTypeName, type Frame } from '../protocol/messages.js';
import { ExitCode, isValidWorkerExitCode } from '../protocol/exit-codes.js';
import { expectedUserId } from '../seal/identity.js';
import { sealPayload } from '../seal/envelope.js';
import type { KeyService, PayloadBinding, PayloadStore } from '../seal/types.js';
import { awsErrorName, isRetryableAwsError } from '../util/aws-errors.js';
import { CbactionsError, describeError, isCbactionsError } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { withRetries } from '../util/retry.js';
import type { BuildService, BuildSnapshot } from './build-service.js';
import type { BuildWaiter } from './build-waiter.js';
import { beforeJobPhase, explainBuild, FailureCode, type JobFailure } from './failure.js';
import { readJobIds, type JobIds } from './job-request.js';
import { DEFAULT_JOB_LEASE, holdJobLease, type JobLeaseHandle, type JobLeaseSettings } from './job-lease.js';
import type { RunnerFiles } from './runner-files.js';
import { buildOverrides, idempotencyToken, startBuildWithRetries, StartBuildError } from './start-build.js';

/** Environment variable names the worker sends as StartBuild overrides (references and ids only). */
export const BuildEnv = {
  PayloadStore: 'CBACTIONS_PAYLOAD_STORE',
  PayloadKey: 'CBACTIONS_PAYLOAD_KEY',
  Pool: 'CBACTIONS_POOL',
  JobId: 'CBACTIONS_JOB_ID',
  PayloadRoleId: 'CBACTIONS_PAYLOAD_ROLE_ID',
  RunnerRoot: 'CBACTIONS_RUNNER_ROOT',
  KitDir: 'CBACTIONS_KIT_DIR',
  ResultDir: 'CBACTIONS_RESULT_DIR',
  ComputeType: 'CBACTIONS_COMPUTE_TYPE',
  EnvironmentType: 'CBACTIONS_ENVIRONMENT_TYPE',
  MuxInstance: 'CBACTIONS_MUX_INSTANCE',
  ExitCode: 'CBACTIONS_EXIT_CODE',
  Failure: 'CBACTIONS_FAILURE',
} as const;

export interface JobSettings {
  projectName: string;
  poolName: string;
  build: BuildSettings;
  /** Unique id of the project's service role, for pools without their own (`codebuild.buildRoleId`). */
  defaultRoleId?: string;
  /** Non-secret references the build uses to find and open its payload. */
  payloadReferences: { store: string; key: string };
  runnerVersion?: string;
  /** After a cancel, how long the build may take to finish the job before StopBuild. */
  cancelGraceMs: number;
  /** The real worker waits 30 s for the first message. */
  firstMessageTimeoutMs: number;
  /** The job lease this worker holds while it lives (job-lease.ts); default DEFAULT_JOB_LEASE. */
  lease?: JobLeaseSettings;
  /** The mux's CBACTIONS_MUX_INSTANCE, put on the build so a next life (or a person) can find it. */
  muxInstance?: string;
}

/** Lets the host-wide watcher know which builds this worker owns (so orphans get stopped). */
export interface BuildTracker {
  track(buildId: string, job: { jobId: string }): Promise<void> | void;
}

export interface JobDependencies {
  frames: AsyncIterator<Frame>;
  builds: BuildService;
  waiter: BuildWaiter;
  keys: KeyService;
  store: PayloadStore;
  runnerFiles: () => Promise<RunnerFiles>;
  logger: Logger;
  settings: JobSettings;
  tracker?: BuildTracker;
  /** Aborts when the worker process itself is told to stop (SIGTERM): handled like RunnerShutdown. */
  shutdownSignal?: AbortSignal;
}

export interface JobOutcome {
  exitCode: number;
  failure?: JobFailure;
  jobId: string;
  buildId?: string;
}

type FollowUp = 'cancel' | 'runner-shutdown' | 'os-shutdown' | 'listener-gone' | 'worker-shutdown';

function followUpOf(frame: Frame): FollowUp {
  switch (frame.type) {
    case MessageType.CancelRequest:
      return 'cancel';
    case MessageType.RunnerShutdown:
      return 'runner-shutdown';
    case MessageType.OperatingSystemShutdown:
      return 'os-shutdown';
    default:
      return 'listener-gone';
  }
}

/**
 * Lambda compute can write only under /tmp (CODEBUILD-FACTS): the runner, the build kit and
 * the result files go there; the entrypoint installs the runner version the job names.
 */
export function lambdaPaths(build: BuildSettings): Record<string, string> {
  if (!build.computeType.startsWith('BUILD_LAMBDA_')) return {};
  return {
    [BuildEnv.RunnerRoot]: '/tmp/actions-runner',
    [BuildEnv.KitDir]: '/tmp/cbactions',
    [BuildEnv.ResultDir]: '/tmp/cbactions-result',
  };
}

async function firstFrame(frames: AsyncIterator<Frame>, timeoutMs: number): Promise<Frame> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new CbactionsError('PIPE_NO_JOB', `no job message from the listener within ${timeoutMs / 1000} s`)), timeoutMs);
  });
  try {
    const next = await Promise.race([frames.next(), timeout]);
    if (next.done) throw new CbactionsError('PIPE_NO_JOB', 'the listener closed the pipe before sending the job');
    return next.value;
  } finally {
    clearTimeout(timer);
  }
}

function parseExitCode(value: string | undefined): number | undefined {
  if (value === undefined || !/^\d{1,3}$/.test(value)) return undefined;
  return Number(value);
}

/**
 * The path of one job through the worker: read the job, start the build, seal the job
 * for that build while it provisions, wait, relay a cancel, return the job's exit code —
 * or an invalid code with the one-line reason the GitHub UI shows.
 */
export async function runJob(deps: JobDependencies): Promise<JobOutcome> {
  const { logger, settings } = deps;
  const frame = await firstFrame(deps.frames, settings.firstMessageTimeoutMs);
  if (frame.type !== MessageType.NewJobRequest || frame.body.length === 0) {
    throw new CbactionsError('PIPE_UNEXPECTED_MESSAGE', `the first message from the listener was ${messageTypeName(frame.type)} with ${frame.body.length} bytes, not a job`);
  }
  const job: JobIds = readJobIds(frame.body);
  logger.info({ event: 'worker.job-received', jobId: job.jobId, requestId: job.requestId, bytes: frame.body.length }, 'job received');

  // Listen for the one follow-up message while everything else happens.
  let followUp: FollowUp | undefined;
  let onFollowUp: ((kind: FollowUp) => void) | undefined;
  let jobOver = false;
  const deliver = (kind: FollowUp) => {
    if (followUp !== undefined) return;
    followUp = kind;
    onFollowUp?.(kind);
  };
  void (async () => {
    try {
      const next = await deps.frames.next();
      deliver(next.done ? 'listener-gone' : followUpOf(next.value));
    } catch (error) {
      // Closing the pipe ourselves at the end is not the listener going away.
      if (jobOver) return;
      logger.warn({ event: 'worker.pipe-error', error: describeError(error) }, 'reading the listener pipe failed');
      deliver('listener-gone');
    }
  })();
  deps.shutdownSignal?.addEventListener('abort', () => deliver('worker-shutdown'), { once: true });

  const files = await deps.runnerFiles();
  const roleId = settings.build.serviceRole?.roleId ?? settings.defaultRoleId;
  const request = {
    projectName: settings.projectName,
    idempotencyToken: idempotencyToken(job.jobId, job.requestId, files.runnerName),
    environmentVariables: {
      [BuildEnv.PayloadStore]: settings.payloadReferences.store,
      [BuildEnv.PayloadKey]: settings.payloadReferences.key,
      [BuildEnv.Pool]: settings.poolName,
      [BuildEnv.JobId]: job.jobId,
      // The entrypoint checks that it runs as the role the payload is bound to.
      ...(roleId !== undefined ? { [BuildEnv.PayloadRoleId]: roleId } : {}),
      // For the job-started hook's "where does this run" line; a fleet defines its own.
      ...(settings.build.fleetArn === undefined
        ? { [BuildEnv.ComputeType]: settings.build.computeType, [BuildEnv.EnvironmentType]: settings.build.environmentType }
        : {}),
      ...lambdaPaths(settings.build),
      ...(settings.muxInstance ? { [BuildEnv.MuxInstance]: settings.muxInstance } : {}),
    },
    ...buildOverrides(settings.build),
  };

  let started: BuildSnapshot;
  try {
    started = await startBuildWithRetries(deps.builds, request, { logger });
  } catch (error) {
    jobOver = true;
    if (error instanceof StartBuildError) return { exitCode: ExitCode.InfrastructureFailure, failure: error.failure, jobId: job.jobId };
    throw error;
  }
  const buildId = started.id;
  logger.info({ event: 'worker.build-started', jobId: job.jobId, buildId }, 'build started');
  await deps.tracker?.track(buildId, { jobId: job.jobId });

  const binding: PayloadBinding = { buildId };
  if (roleId !== undefined) binding.userId = expectedUserId(roleId, buildId);

  let latest = started;
  let stoppedByCbactions = false;
  let graceTimer: NodeJS.Timeout | undefined;

  const stopBuild = async (why: string): Promise<void> => {
    if (stoppedByCbactions) return;
    stoppedByCbactions = true;
    clearTimeout(graceTimer);
    logger.info({ event: 'worker.stop-build', buildId, why }, 'stopping build');
    try {
      await withRetries(() => deps.builds.stopBuild(buildId), { maxAttempts: 6, initialMs: 500, maxMs: 5000, isRetryable: isRetryableAwsError });
    } catch (error) {
      // A build that already ended cannot be stopped; the waiter sees its final state.
      logger.warn({ event: 'worker.stop-build.failed', buildId, error: awsErrorName(error) }, 'StopBuild failed');
    }
    deps.waiter.poke?.(buildId);
  };

  const cancel = async (kind: FollowUp): Promise<void> => {
    logger.info({ event: 'worker.cancel', buildId, kind, phase: latest.currentPhase }, 'cancel requested');
    try {
      await withRetries(() => deps.store.requestCancel(binding), { maxAttempts: 4, initialMs: 250, maxMs: 2000, isRetryable: () => true });
    } catch (error) {
      logger.warn({ event: 'worker.cancel-marker.failed', buildId, error: describeError(error) }, 'could not write the cancel marker');
      await stopBuild('cancel marker failed');
      return;
    }
    // The last poll may be seconds old: ask once more before stopping a build outright.
    try {
      const fresh = (await deps.builds.getBuilds([buildId])).builds.find((build) => build.id === buildId);
      if (fresh) latest = fresh;
    } catch (error) {
      logger.warn({ event: 'worker.cancel-refresh-failed', buildId, error: awsErrorName(error) }, 'could not refresh the build before cancelling');
    }
    if (beforeJobPhase(latest)) {
      // The job has not started in the build: nothing to cancel gracefully.
      await stopBuild(`cancelled while ${latest.currentPhase ?? 'starting'}`);
      return;
    }
    graceTimer = setTimeout(() => void stopBuild('cancel grace period expired'), settings.cancelGraceMs);
  };
  onFollowUp = (kind) => void cancel(kind);

  let failure: JobFailure | undefined;
  let lease: JobLeaseHandle | undefined;
  try {
    // Before the payload: a build that has its job always finds a lease to watch.
    lease = await holdJobLease({ store: deps.store, binding, settings: settings.lease ?? DEFAULT_JOB_LEASE, logger });
    const sealed = await sealPayload(
      deps.keys,
      {
        jobMessage: frame.body,
        runnerFile: files.runnerFile,
        ...(files.credentialsFile ? { credentialsFile: files.credentialsFile } : {}),
        ...(settings.runnerVersion ? { runnerVersion: settings.runnerVersion } : {}),
        ids: {
          buildId,
          jobId: job.jobId,
          ...(job.requestId ? { requestId: job.requestId } : {}),
          ...(files.runnerName ? { runnerName: files.runnerName } : {}),
          pool: settings.poolName,
        },
      },
      binding,
    );
    await withRetries(() => deps.store.put(binding, sealed), { maxAttempts: 5, initialMs: 300, maxMs: 5000, isRetryable: (error) => !isCbactionsError(error) || isRetryableAwsError(error) });
    logger.info({ event: 'worker.payload-stored', buildId, bytes: sealed.length, location: deps.store.describe(binding) }, 'payload sealed and stored');
  } catch (error) {
    failure = { code: FailureCode.PayloadUpload, message: `could not deliver the sealed job to the build (${describeError(error)})`, buildId, ...(started.arn ? { buildArn: started.arn } : {}) };
    logger.error({ event: 'worker.payload-failed', buildId, error: describeError(error) }, 'payload delivery failed');
    await stopBuild('payload delivery failed');
  }
  if (followUp !== undefined && failure === undefined) void cancel(followUp);

  let final: BuildSnapshot;
  try {
    final = await deps.waiter.waitForCompletion(buildId, {
      onUpdate: (snapshot) => {
        latest = snapshot;
        logger.info({ event: 'worker.build-update', buildId, status: snapshot.status, phase: snapshot.currentPhase }, 'build update');
      },
    });
  } finally {
    jobOver = true;
    clearTimeout(graceTimer);
    onFollowUp = undefined;
    await Promise.allSettled([deps.store.delete(binding), deps.store.clearCancel(binding), lease?.release()]);
  }
  logger.info({ event: 'worker.build-finished', buildId, status: final.status }, 'build finished');

  const exitCode = parseExitCode(final.exported[BuildEnv.ExitCode]);
  if (failure === undefined && exitCode !== undefined && isValidWorkerExitCode(exitCode)) {
    return { exitCode, jobId: job.jobId, buildId };
  }
  return {
    exitCode: ExitCode.InfrastructureFailure,
    failure: failure ?? explainBuild(final, { stoppedByCbactions }),
    jobId: job.jobId,
    buildId,
  };
}
