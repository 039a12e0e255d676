import { createHash } from 'node:crypto';
import type { BuildSettings } from '../config/schema.js';
import { awsErrorMessage, awsErrorName, isRetryableAwsError, isThrottlingError } from '../util/aws-errors.js';
import { CbactionsError } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { withRetries } from '../util/retry.js';
import type { CodeBuildApi, BuildSnapshot, StartBuildRequest } from './codebuild-api.js';
import { FailureCode, type JobFailure } from './failure.js';

/**
 * One token per job attempt: StartBuild retries reuse it, so CodeBuild never starts two
 * builds for one job (tokens live 5 minutes; CodeBuild caps them at 64 characters).
 */
export function idempotencyToken(jobId: string, requestId: string | undefined, runnerName: string | undefined): string {
  return createHash('sha256').update(`cbactions:${jobId}:${requestId ?? ''}:${runnerName ?? ''}`).digest('hex').slice(0, 48);
}

/** A pool's build settings as StartBuild overrides (Lambda compute gets none it would refuse). */
export function buildOverrides(settings: BuildSettings): Omit<StartBuildRequest, 'projectName' | 'idempotencyToken' | 'environmentVariables'> {
  const overrides: Omit<StartBuildRequest, 'projectName' | 'idempotencyToken' | 'environmentVariables'> = {};
  if (settings.fleetArn !== undefined) {
    // A fleet fixes compute and environment type; sending them too is refused.
    overrides.fleetArn = settings.fleetArn;
  } else {
    overrides.computeType = settings.computeType;
    overrides.environmentType = settings.environmentType;
  }
  if (settings.image !== undefined) overrides.image = settings.image;
  if (settings.imagePullCredentials !== undefined) overrides.imagePullCredentials = settings.imagePullCredentials;
  const lambda = settings.computeType.startsWith('BUILD_LAMBDA_');
  if (!lambda) {
    overrides.privileged = settings.privileged;
    if (settings.timeoutMinutes !== undefined) overrides.timeoutMinutes = settings.timeoutMinutes;
    if (settings.queuedTimeoutMinutes !== undefined) overrides.queuedTimeoutMinutes = settings.queuedTimeoutMinutes;
  }
  if (settings.serviceRole !== undefined) overrides.serviceRoleArn = settings.serviceRole.arn;
  return overrides;
}

/** Turns a StartBuild error that is not worth retrying into the reason the user sees. */
export function startFailure(error: unknown, projectName: string): JobFailure {
  const name = awsErrorName(error);
  const detail = awsErrorMessage(error);
  switch (name) {
    case 'AccountLimitExceededException':
      return { code: FailureCode.Quota, message: `CodeBuild refused to start a build: the account's build quota is reached (${detail}); raise the concurrent build quota or lower the pool's slots` };
    case 'AccessDeniedException':
    case 'AccessDenied':
    case 'UnauthorizedOperation':
      return { code: FailureCode.AccessDenied, message: `not allowed to start builds of CodeBuild project ${projectName} (${detail}); check the task role` };
    case 'ResourceNotFoundException':
      return { code: FailureCode.ProjectMissing, message: `CodeBuild project ${projectName} was not found (${detail})` };
    case 'InvalidInputException':
      return { code: FailureCode.InvalidSettings, message: `CodeBuild rejected the build settings (${detail}); check the pool's image, compute type and role` };
    default:
      if (isThrottlingError(error)) return { code: FailureCode.Throttled, message: `CodeBuild kept throttling StartBuild (${detail}); gave up after retrying` };
      return { code: FailureCode.StartFailed, message: `CodeBuild StartBuild failed (${detail})` };
  }
}

export class StartBuildError extends CbactionsError {
  constructor(readonly failure: JobFailure, cause: unknown) {
    super(failure.code, failure.message, { cause });
  }
}

export interface StartBuildOptions {
  maxAttempts?: number;
  initialDelayMs?: number;
  maxDelayMs?: number;
  /**
   * Ends the retry loop: no further attempt starts once it aborts, and a pending backoff
   * ends at once. An attempt already sent is never aborted: CodeBuild may have started the
   * build, and only its answer tells which build to stop.
   */
  stopRetrying?: AbortSignal;
  logger: Logger;
}

/**
 * StartBuild with jittered retries on throttling and transient errors; other errors fail at
 * once. When `stopRetrying` aborts, throws its reason (not a StartBuildError).
 */
export async function startBuildWithRetries(builds: CodeBuildApi, request: StartBuildRequest, options: StartBuildOptions): Promise<BuildSnapshot> {
  const stop = options.stopRetrying;
  try {
    return await withRetries((attempt) => {
      stop?.throwIfAborted();
      if (attempt > 0) options.logger.info({ event: 'worker.start-build.retry', attempt }, 'retrying StartBuild');
      return builds.startBuild(request);
    }, {
      maxAttempts: options.maxAttempts ?? 10,
      initialMs: options.initialDelayMs ?? 500,
      maxMs: options.maxDelayMs ?? 20_000,
      isRetryable: isRetryableAwsError,
      ...(stop ? { signal: stop } : {}),
      onRetry: (error, attempt, delayMs) =>
        options.logger.warn({ event: 'worker.start-build.failed-attempt', attempt, delayMs, error: awsErrorName(error) }, 'StartBuild failed; will retry'),
    });
  } catch (error) {
    if (stop?.aborted) throw stop.reason;
    throw new StartBuildError(startFailure(error, request.projectName), error);
  }
}
