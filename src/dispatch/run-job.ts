import type { OverridableSetting, PolicyConfig } from '../config/policy-schema.js';
import type { BuildSettings, PricingConfig } from '../config/schema.js';
import { MessageType, messageTypeName, type Frame } from '../protocol/messages.js';
import { ExitCode, isValidWorkerExitCode, WorkerExitCode } from '../protocol/exit-codes.js';
import { expectedUserId } from '../seal/identity.js';
import { sealPayload } from '../seal/envelope.js';
import type { KeyService, PayloadBinding, PayloadStore } from '../seal/types.js';
import { awsErrorName, isRetryableAwsError } from '../util/aws-errors.js';
import { sleep } from '../util/backoff.js';
import { CbactionsError, describeError, isCbactionsError } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { withRetries } from '../util/retry.js';
import type { CodeBuildApi, BuildSnapshot, StartBuildRequest } from './codebuild-api.js';
import type { BuildWaiter } from './build-waiter.js';
import { beforeJobPhase, explainBuild, FailureCode, type JobFailure } from './failure.js';
import { decideAdmission, DEFAULT_RULE, type AdmissionDecision } from './admission.js';
import { readJobContext } from './job-context.js';
import { jobIdsOf, parseJobMessage, type JobIds } from './job-request.js';
import { DEFAULT_JOB_LEASE, holdJobLease, type JobLeaseHandle, type JobLeaseSettings } from './job-lease.js';
import type { RunnerFiles } from './runner-files.js';
import { endedUntaken, startOverridesKey, type ClaimedStandby, type StandbyClaims } from './standby-claim.js';
import { buildOverrides, idempotencyToken, startBuildWithRetries, StartBuildError } from './start-build.js';
import { priceFacts, type PriceFacts } from './job-cost.js';
import { clockOffset, jobTimelineRecord, phaseWaits, waitsSince, type JobTimelineRecord } from './job-timeline.js';

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
  /** Only on standby builds: how long the entrypoint waits for a job once ready. */
  StandbyWait: 'CBACTIONS_STANDBY_WAIT_SECONDS',
  ExitCode: 'CBACTIONS_EXIT_CODE',
  Failure: 'CBACTIONS_FAILURE',
  Timeline: 'CBACTIONS_TIMELINE',
} as const;

export interface JobSettings {
  projectName: string;
  poolName: string;
  /** The pool's build settings; the admission policy may change them per job. */
  build: BuildSettings;
  /** The admission policy decided for each job before its build starts (absent: every job runs with `build`). */
  policy?: PolicyConfig;
  /** Which of `build` a policy rule may change (the pool's `overridable`). */
  overridable?: readonly OverridableSetting[];
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
  /** The price table for the job's cost (config `pricing`). */
  pricing?: PricingConfig;
  /** `codebuild.region`; the build's ARN names its region first. */
  region?: string;
  /** How long a standby has to take a job handed to it before it is stopped and the job goes to a new build. */
  standbyHandoverMs?: number;
}

/** A standby takes its payload within a poll (≤ 250 ms) when healthy; this is for one that is not. */
export const DEFAULT_STANDBY_HANDOVER_MS = 60_000;
/** How many standbys one job may stop to get past a full build quota. */
const MAX_QUOTA_YIELDS = 3;

/** Lets the host-wide watcher know which builds this worker owns (so orphans get stopped). */
export interface BuildTracker {
  track(buildId: string, job: { jobId: string }): Promise<void> | void;
}

export interface JobDependencies {
  frames: AsyncIterator<Frame>;
  builds: CodeBuildApi;
  waiter: BuildWaiter;
  keys: KeyService;
  store: PayloadStore;
  runnerFiles: () => Promise<RunnerFiles>;
  logger: Logger;
  settings: JobSettings;
  tracker?: BuildTracker;
  /** Aborts when the worker process itself is told to stop (SIGTERM): handled like RunnerShutdown. */
  shutdownSignal?: AbortSignal;
  /** The mux's standby builds (in-process dispatch only). */
  standbys?: StandbyClaims;
  /** Epoch ms for the job's timeline; Date.now by default. */
  now?: () => number;
  /** Told every admission decision, before anything else happens to the job (the mux counts them per rule). */
  onAdmission?: (decision: AdmissionDecision, job: { jobId: string; pool: string }) => void;
}

export interface JobOutcome {
  exitCode: number;
  failure?: JobFailure;
  jobId: string;
  buildId?: string;
  /** The admission policy's decision (its rule; the reason when refused). */
  admission?: AdmissionDecision;
  /** The job's timeline and cost (logged as `job.timeline`), for every job a build ran. */
  timeline?: JobTimelineRecord;
}

/** The region a build runs in: its ARN says (arn:aws:codebuild:<region>:…), else the config. */
export function buildRegion(arn: string | undefined, fallback: string | undefined): string | undefined {
  const fromArn = arn?.split(':')[3];
  return fromArn && /^[a-z]{2}(-[a-z]+)+-\d$/.test(fromArn) ? fromArn : fallback;
}

type FollowUp = 'cancel' | 'runner-shutdown' | 'os-shutdown' | 'listener-gone' | 'worker-shutdown';

/** What the GitHub UI and the logs say about a job that ended before a build ran it. */
const ENDED_BEFORE_BUILD: Record<FollowUp, string> = {
  cancel: 'the job was cancelled',
  'runner-shutdown': 'the runner was shut down',
  'os-shutdown': 'the runner host was shut down',
  'listener-gone': 'the runner listener went away',
  'worker-shutdown': 'the worker was told to stop',
};

/**
 * A follow-up before the job reached a build ends it Canceled (103), as the real
 * Runner.Worker ends a job cancelled before its first step. Per sender:
 * - CancelRequest, RunnerShutdown, OS shutdown: the listener sent them from its cancel
 *   path, which completes the job Canceled whatever the code (JobDispatcher.cs); a crash
 *   code would only add a misleading WORKER_CRASH annotation to a job someone stopped.
 * - worker SIGTERM: the listener did not ask, so it reads the code; the real worker
 *   treats SIGTERM as a user cancel and exits 103 too.
 * - listener gone: nobody reads the code; 103 keeps the mux's record truthful.
 * The reason still goes on stderr (kept by the listener, shown only for invalid codes).
 */
function canceledBeforeBuild(kind: FollowUp, jobId: string, build?: BuildSnapshot): JobOutcome {
  const what = ENDED_BEFORE_BUILD[kind];
  const failure: JobFailure = build
    ? { code: FailureCode.CancelledBeforeBuild, message: `${what} while its build was being started; the build was stopped before the job was delivered to it`, buildId: build.id, ...(build.arn ? { buildArn: build.arn } : {}) }
    : { code: FailureCode.CancelledBeforeBuild, message: `${what} before its build was started; no build was started` };
  return { exitCode: WorkerExitCode.Canceled, failure, jobId, ...(build ? { buildId: build.id } : {}) };
}

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

/**
 * The environment every build of a pool starts with (references and ids only), without the
 * per-build `CBACTIONS_JOB_ID` / `CBACTIONS_STANDBY_WAIT_SECONDS`: the same for a job's
 * build and a standby, so a standby's overrides equal those of the jobs it can take.
 */
export function buildEnvironment(settings: JobSettings, build: BuildSettings, roleId: string | undefined): Record<string, string> {
  return {
    [BuildEnv.PayloadStore]: settings.payloadReferences.store,
    [BuildEnv.PayloadKey]: settings.payloadReferences.key,
    [BuildEnv.Pool]: settings.poolName,
    // The entrypoint checks that it runs as the role the payload is bound to.
    ...(roleId !== undefined ? { [BuildEnv.PayloadRoleId]: roleId } : {}),
    // For the job-started hook's "where does this run" line; a fleet defines its own.
    ...(build.fleetArn === undefined
      ? { [BuildEnv.ComputeType]: build.computeType, [BuildEnv.EnvironmentType]: build.environmentType }
      : {}),
    ...lambdaPaths(build),
    ...(settings.muxInstance ? { [BuildEnv.MuxInstance]: settings.muxInstance } : {}),
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

function withClock(clock: ReturnType<typeof clockOffset>): { clock?: NonNullable<ReturnType<typeof clockOffset>> } {
  return clock ? { clock } : {};
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
  const now = deps.now ?? Date.now;
  const frame = await firstFrame(deps.frames, settings.firstMessageTimeoutMs);
  const assignedAt = now();
  if (frame.type !== MessageType.NewJobRequest || frame.body.length === 0) {
    throw new CbactionsError('PIPE_UNEXPECTED_MESSAGE', `the first message from the listener was ${messageTypeName(frame.type)} with ${frame.body.length} bytes, not a job`);
  }
  const message = parseJobMessage(frame.body);
  const job: JobIds = jobIdsOf(message);
  logger.info({ event: 'worker.job-received', jobId: job.jobId, requestId: job.requestId, bytes: frame.body.length }, 'job received');

  // Before anything is started or claimed for the job: its rule decides its role and settings, or refuses it.
  const admission = admit(settings, message, job.jobId, logger);
  deps.onAdmission?.(admission, { jobId: job.jobId, pool: settings.poolName });
  if (admission.effect === 'refuse') {
    return { exitCode: ExitCode.InfrastructureFailure, failure: { code: admission.code, message: admission.reason }, jobId: job.jobId, admission };
  }
  const build = admission.build;

  // Ends with the job: every wait, retry and timer of this job takes it, so none outlives it.
  const jobScope = new AbortController();

  // Listen for the one follow-up message while everything else happens.
  let followUp: FollowUp | undefined;
  let onFollowUp: ((kind: FollowUp) => void) | undefined;
  // Aborts StartBuild's retry loop: a job cancelled before its build exists gets none.
  const followUpSeen = new AbortController();
  const deliver = (kind: FollowUp) => {
    if (followUp !== undefined || jobScope.signal.aborted) return;
    followUp = kind;
    logger.info({ event: 'worker.follow-up', jobId: job.jobId, kind }, 'follow-up from the listener');
    followUpSeen.abort(new CbactionsError(FailureCode.CancelledBeforeBuild, ENDED_BEFORE_BUILD[kind]));
    onFollowUp?.(kind);
  };
  void (async () => {
    try {
      const next = await deps.frames.next();
      deliver(next.done ? 'listener-gone' : followUpOf(next.value));
    } catch (error) {
      // Closing the pipe ourselves at the end is not the listener going away.
      if (jobScope.signal.aborted) return;
      logger.warn({ event: 'worker.pipe-error', error: describeError(error) }, 'reading the listener pipe failed');
      deliver('listener-gone');
    }
  })();
  // A SIGTERM that came before this point (while config loaded) has fired its event already.
  if (deps.shutdownSignal?.aborted) deliver('worker-shutdown');
  else deps.shutdownSignal?.addEventListener('abort', () => deliver('worker-shutdown'), { once: true, signal: jobScope.signal });

  const files = await deps.runnerFiles();
  const roleId = build.serviceRole?.roleId ?? settings.defaultRoleId;
  const request: StartBuildRequest = {
    projectName: settings.projectName,
    idempotencyToken: idempotencyToken(job.jobId, job.requestId, files.runnerName),
    environmentVariables: { ...buildEnvironment(settings, build, roleId), [BuildEnv.JobId]: job.jobId },
    ...buildOverrides(build),
  };

  try {
    // A standby started with exactly these overrides takes the job at once (claimed
    // synchronously: of two jobs racing for the last one, one gets it, the other goes cold).
    const claimed = followUp === undefined ? deps.standbys?.claim(settings.poolName, startOverridesKey(request)) : undefined;
    if (claimed) {
      logger.info({ event: 'dispatch.standby-claimed', jobId: job.jobId, buildId: claimed.build.id }, 'job handed to a standby build');
      const warm = await runOnBuild(claimed.build, claimed.roleId, claimed, undefined);
      claimed.release(warm.kind === 'reroute' ? 'rerouted' : 'ran');
      if (warm.kind === 'outcome') return warm.outcome;
      // Never opened: the job was not started anywhere, so a new build runs it as if no standby had been.
      logger.warn({ event: 'dispatch.standby-handover-failed', jobId: job.jobId, buildId: claimed.build.id, reason: warm.reason }, 'the standby did not take the job; starting a new build for it');
    }

    // The last look before a build is billed.
    if (followUp !== undefined) return canceledBeforeBuild(followUp, job.jobId);
    let started: BuildSnapshot | undefined;
    const dispatchedAt = now();
    for (let yielded = 0; started === undefined; yielded++) {
      try {
        started = await startBuildWithRetries(deps.builds, request, { logger, stopRetrying: followUpSeen.signal });
      } catch (error) {
        // The retry loop was stopped, or the last attempt failed after the follow-up: no build.
        if (followUp !== undefined) return canceledBeforeBuild(followUp, job.jobId);
        if (!(error instanceof StartBuildError)) throw error;
        // Standbys must never keep a job from running: one of them makes room.
        if (error.failure.code === FailureCode.Quota && yielded < MAX_QUOTA_YIELDS && deps.standbys && (await deps.standbys.yieldForQuota(build.fleetArn === undefined ? build.computeType : undefined))) {
          logger.warn({ event: 'dispatch.standby-yielded', jobId: job.jobId, attempt: yielded + 1 }, 'the build quota is full: stopped a standby build to make room for the job');
          continue;
        }
        return { exitCode: ExitCode.InfrastructureFailure, failure: error.failure, jobId: job.jobId, admission };
      }
    }
    const cold = await runOnBuild(started, roleId, undefined, { sentAt: dispatchedAt, answeredAt: now() });
    if (cold.kind === 'reroute') throw new CbactionsError('DISPATCH_INTERNAL', `a new build was treated as a standby (${cold.reason})`);
    return cold.outcome;
  } finally {
    jobScope.abort();
  }

  /**
   * The job on one build: lease, seal, payload, wait, cancel relay, result. For a standby
   * (`warm`) the result may instead be `reroute`: the build ended (or was stopped for not
   * taking the job in time) with its payload still in the store, so it never opened the job.
   */
  async function runOnBuild(
    started: BuildSnapshot,
    buildRoleId: string | undefined,
    warm: ClaimedStandby | undefined,
    /** The cold StartBuild's send and answer on the mux's clock: how the build's times are put on it. */
    startCall: { sentAt: number; answeredAt: number } | undefined,
  ): Promise<{ kind: 'outcome'; outcome: JobOutcome } | { kind: 'reroute'; reason: string }> {
    const buildId = started.id;
    // Ends with this build: its timers, retries and relays.
    const buildScope = new AbortController();
    if (!warm) logger.info({ event: 'worker.build-started', jobId: job.jobId, buildId }, 'build started');
    const dispatchedAt = warm ? warm.claimedAt : (startCall?.sentAt ?? assignedAt);
    const start = warm ? 'warm' : 'cold';
    const region = buildRegion(started.arn, settings.region);
    const price: PriceFacts | undefined = settings.pricing && region ? priceFacts(settings.pricing, region, build) : undefined;
    await deps.tracker?.track(buildId, { jobId: job.jobId });

    const binding: PayloadBinding = { buildId };
    if (buildRoleId !== undefined) binding.userId = expectedUserId(buildRoleId, buildId);

    let latest = started;
    let stoppedByCbactions = false;

    const stopBuild = async (why: string): Promise<void> => {
      // Never for a build whose end the waiter has already seen.
      if (stoppedByCbactions || buildScope.signal.aborted) return;
      stoppedByCbactions = true;
      logger.info({ event: 'worker.stop-build', buildId, why }, 'stopping build');
      try {
        await withRetries(() => deps.builds.stopBuild(buildId, buildScope.signal), { maxAttempts: 6, initialMs: 500, maxMs: 5000, isRetryable: isRetryableAwsError, signal: buildScope.signal });
      } catch (error) {
        // A build that already ended cannot be stopped; the waiter sees its final state.
        logger.warn({ event: 'worker.stop-build.failed', buildId, error: awsErrorName(error) }, 'StopBuild failed');
      }
      deps.waiter.poke?.(buildId);
    };

    const relayCancel = async (kind: FollowUp): Promise<void> => {
      logger.info({ event: 'worker.cancel', buildId, kind, phase: latest.currentPhase }, 'cancel requested');
      try {
        await withRetries(() => deps.store.requestCancel(binding, buildScope.signal), { maxAttempts: 4, initialMs: 250, maxMs: 2000, isRetryable: () => true, signal: buildScope.signal });
      } catch (error) {
        if (buildScope.signal.aborted) return;
        logger.warn({ event: 'worker.cancel-marker.failed', buildId, error: describeError(error) }, 'could not write the cancel marker');
        await stopBuild('cancel marker failed');
        return;
      }
      // The last poll may be seconds old: ask once more before stopping a build outright.
      try {
        const fresh = (await deps.builds.getBuilds([buildId], buildScope.signal)).builds.find((build) => build.id === buildId);
        if (fresh) latest = fresh;
      } catch (error) {
        if (buildScope.signal.aborted) return;
        logger.warn({ event: 'worker.cancel-refresh-failed', buildId, error: awsErrorName(error) }, 'could not refresh the build before cancelling');
      }
      if (buildScope.signal.aborted) return;
      if (beforeJobPhase(latest)) {
        // The job has not started in the build: nothing to cancel gracefully.
        await stopBuild(`cancelled while ${latest.currentPhase ?? 'starting'}`);
        return;
      }
      // The one grace timer of this job; it ends with the build. A standby that has not
      // taken the job yet finds the marker as soon as it opens it.
      void sleep(settings.cancelGraceMs, buildScope.signal).then(
        () => stopBuild('cancel grace period expired'),
        () => {},
      );
    };
    // Once per job, whichever way the follow-up arrives.
    let cancelling: Promise<void> | undefined;
    const cancel = (kind: FollowUp): Promise<void> => (cancelling ??= relayCancel(kind));

    // A follow-up while StartBuild was on its way: the build exists but has no job yet, so it
    // gets none — it is stopped at once and the job ends Canceled.
    const cancelledWhileStarting = followUp;
    let failure: JobFailure | undefined;
    let lease: JobLeaseHandle | undefined;
    let handoverLate = false;
    if (cancelledWhileStarting !== undefined) {
      await stopBuild(`${cancelledWhileStarting} before the job was delivered`);
    } else {
      onFollowUp = (kind) => void cancel(kind);
      try {
        // Before the payload: a build that has its job always finds a lease to watch.
        // The price rides on the lease from the start: the build prints the job's cost from it.
        lease = await holdJobLease({ store: deps.store, binding, settings: settings.lease ?? DEFAULT_JOB_LEASE, logger, ...(price ? { facts: { price } } : {}) });
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
            timeline: { assignedAt, dispatchedAt, start },
          },
          binding,
        );
        await withRetries(() => deps.store.put(binding, sealed), { maxAttempts: 5, initialMs: 300, maxMs: 5000, isRetryable: (error) => !isCbactionsError(error) || isRetryableAwsError(error) });
        logger.info({ event: 'worker.payload-stored', buildId, bytes: sealed.length, location: deps.store.describe(binding) }, 'payload sealed and stored');
        if (warm) {
          // A standby that does not take its job in time (frozen, lost its network) is stopped; the job then goes to a new build.
          void sleep(settings.standbyHandoverMs ?? DEFAULT_STANDBY_HANDOVER_MS, buildScope.signal).then(async () => {
            const pending = await deps.store.isPending(binding, buildScope.signal).catch(() => false);
            if (!pending || buildScope.signal.aborted) return;
            handoverLate = true;
            await stopBuild('the standby did not take its job in time');
          }, () => {});
        }
      } catch (error) {
        failure = { code: FailureCode.PayloadUpload, message: `could not deliver the sealed job to the build (${describeError(error)})`, buildId, ...(started.arn ? { buildArn: started.arn } : {}) };
        logger.error({ event: 'worker.payload-failed', buildId, error: describeError(error) }, 'payload delivery failed');
        await stopBuild('payload delivery failed');
      }
    }

    let final: BuildSnapshot;
    let reroute: string | undefined;
    // Only the mux sees CodeBuild's phases: the build learns its queued/provisioning split from
    // the lease. A standby's own provisioning was before the job: only what came after the claim counts.
    let waitsSent = false;
    try {
      final = await deps.waiter.waitForCompletion(buildId, {
        onUpdate: (snapshot) => {
          latest = snapshot;
          const phases = waitsSent ? undefined : phaseWaits(snapshot);
          const waits = phases && warm ? waitsSince(phases, warm.claimedAt) : phases;
          if (waits && lease) {
            waitsSent = true;
            void lease.addFacts({ waits: { submittedMs: waits.submittedMs, queuedMs: waits.queuedMs, provisioningMs: waits.provisioningMs } });
          }
          logger.info({ event: 'worker.build-update', buildId, status: snapshot.status, phase: snapshot.currentPhase }, 'build update');
        },
      });
      // Before the cleanup deletes it: a payload still waiting means the standby never opened the job.
      if (warm && followUp === undefined) reroute = await handoverFailure(final, binding, handoverLate);
    } finally {
      onFollowUp = undefined;
      buildScope.abort();
      // A cancel still on its way ends at its next step; its marker must not outlive the cleanup.
      await cancelling?.catch(() => {});
      await Promise.allSettled([deps.store.delete(binding), deps.store.clearCancel(binding), lease?.release()]);
    }
    logger.info({ event: 'worker.build-finished', buildId, status: final.status }, 'build finished');
    if (reroute !== undefined) return { kind: 'reroute', reason: reroute };
    const timeline = jobTimelineRecord({
      pool: settings.poolName,
      jobId: job.jobId,
      buildId,
      mux: { assignedAt, dispatchedAt, start },
      ...(startCall ? withClock(clockOffset(startCall.sentAt, startCall.answeredAt, started.startTime?.getTime())) : {}),
      final,
      exported: final.exported[BuildEnv.Timeline],
      ...(price ? { price } : {}),
    });
    // One event per job with every time and duration (the dashboard's and the metrics' source).
    logger.info({ event: 'job.timeline', ...timeline }, 'job timeline');

    if (cancelledWhileStarting !== undefined) return { kind: 'outcome', outcome: { ...canceledBeforeBuild(cancelledWhileStarting, job.jobId, started), timeline } };
    const exitCode = parseExitCode(final.exported[BuildEnv.ExitCode]);
    if (failure === undefined && exitCode !== undefined && isValidWorkerExitCode(exitCode)) {
      return { kind: 'outcome', outcome: { exitCode, jobId: job.jobId, buildId, timeline, admission } };
    }
    return {
      kind: 'outcome',
      outcome: {
        exitCode: ExitCode.InfrastructureFailure,
        failure: failure ?? explainBuild(final, { stoppedByCbactions }),
        jobId: job.jobId,
        buildId,
        timeline,
        admission,
      },
    };
  }

  /** Why a standby that ended never opened its job, or undefined when it did (or may have). */
  async function handoverFailure(final: BuildSnapshot, binding: PayloadBinding, late: boolean): Promise<string | undefined> {
    if (final.exported[BuildEnv.ExitCode] !== undefined && final.exported[BuildEnv.ExitCode] !== '') return undefined;
    const exportedFailure = final.exported[BuildEnv.Failure];
    // Its entrypoint says so: it checks its deadline before each poll and never takes after it.
    if (endedUntaken(exportedFailure)) return `the standby ended without taking the job (${(exportedFailure ?? '').slice(0, 200)})`;
    try {
      if (await deps.store.isPending(binding)) {
        return late ? 'the standby did not take the job in time and was stopped' : `the standby build ended ${final.status} before taking the job`;
      }
    } catch (error) {
      // Cannot tell: the standby may have opened the job, so it must not run a second time.
      logger.warn({ event: 'dispatch.standby-handover-unknown', buildId: binding.buildId, error: describeError(error) }, 'cannot tell whether the standby took its job; treating it as taken');
    }
    return undefined;
  }
}

/** The admission decision for the job, logged with its job id and rule (config names and the job's repository/event/ref only). */
function admit(settings: JobSettings, message: Record<string, unknown>, jobId: string, logger: Logger): AdmissionDecision {
  if (settings.policy === undefined) return { effect: 'run', rule: DEFAULT_RULE, build: settings.build, overridden: [] };
  const context = readJobContext(message);
  const decision = decideAdmission(settings.policy, { name: settings.poolName, build: settings.build, overridable: [...(settings.overridable ?? [])] }, context);
  const about = {
    jobId,
    pool: settings.poolName,
    rule: decision.rule,
    effect: decision.effect,
    repository: context.repository,
    eventName: context.event,
    ref: context.ref?.slice(0, 200),
    fork: context.fork,
    ...(context.problem !== undefined ? { contextProblem: context.problem } : {}),
  };
  if (decision.effect === 'refuse') logger.warn({ event: 'worker.admission', ...about, code: decision.code, reason: decision.reason }, 'job refused by the admission policy');
  else logger.info({ event: 'worker.admission', ...about, role: decision.role, overridden: decision.overridden }, 'job admitted');
  return decision;
}
