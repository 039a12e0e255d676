import type { BuildSnapshot } from './codebuild-api.js';

/**
 * The catalogue of infrastructure failures: every way a job can end without a result
 * from the real Runner.Worker, each with the one line a person sees in the GitHub UI
 * (the listener shows the worker's stderr when its exit code is not 100..105).
 */
export const FailureCode = {
  Quota: 'CODEBUILD_QUOTA',
  AccessDenied: 'CODEBUILD_ACCESS_DENIED',
  InvalidSettings: 'CODEBUILD_INVALID_SETTINGS',
  ProjectMissing: 'CODEBUILD_PROJECT_MISSING',
  Throttled: 'CODEBUILD_THROTTLED',
  StartFailed: 'CODEBUILD_START_FAILED',
  ImagePull: 'BUILD_IMAGE_PULL',
  Network: 'BUILD_VPC_NETWORK',
  QueuedTimeout: 'BUILD_QUEUED_TIMEOUT',
  Provisioning: 'BUILD_PROVISIONING',
  ProvisioningTimeout: 'BUILD_PROVISIONING_TIMEOUT',
  BuildTimeout: 'BUILD_TIMEOUT',
  Stopped: 'BUILD_STOPPED',
  PhaseFailed: 'BUILD_PHASE_FAILED',
  EntrypointFailed: 'ENTRYPOINT_FAILED',
  EntrypointCrashed: 'ENTRYPOINT_CRASHED',
  WorkerCrash: 'RUNNER_WORKER_CRASH',
  BuildVanished: 'BUILD_NOT_FOUND',
  PayloadUpload: 'PAYLOAD_UPLOAD_FAILED',
  /** Not a failure: the job was cancelled before it reached a build (exit code 103). */
  CancelledBeforeBuild: 'JOB_CANCELLED_BEFORE_BUILD',
  Internal: 'WORKER_INTERNAL',
} as const;
export type FailureCode = (typeof FailureCode)[keyof typeof FailureCode];

export interface JobFailure {
  code: FailureCode | string;
  message: string;
  buildId?: string;
  buildArn?: string;
}

/** `https://<region>.console.aws.amazon.com/codesuite/codebuild/<account>/projects/<project>/build/<id>/?region=<region>` */
export function consoleLink(buildArn: string | undefined): string | undefined {
  if (!buildArn) return undefined;
  const match = /^arn:(aws[a-z-]*):codebuild:([a-z0-9-]+):(\d{12}):build\/([^:]+):(.+)$/.exec(buildArn);
  if (!match) return undefined;
  const [, partition, region, account, project, uuid] = match as unknown as [string, string, string, string, string, string];
  const host = partition === 'aws-cn' ? `${region}.console.amazonaws.cn` : partition === 'aws-us-gov' ? `${region}.console.amazonaws-us-gov.com` : `${region}.console.aws.amazon.com`;
  return `https://${host}/codesuite/codebuild/${account}/projects/${encodeURIComponent(project)}/build/${encodeURIComponent(`${project}:${uuid}`)}/?region=${region}`;
}

/** The one stderr line: reason, then where to look. Never contains job content. */
export function formatFailure(failure: JobFailure): string {
  const where: string[] = [];
  if (failure.buildId) where.push(`build ${failure.buildId}`);
  const link = consoleLink(failure.buildArn);
  if (link) where.push(link);
  const oneLine = failure.message.replace(/\s+/g, ' ').trim();
  return `cbactions: ${oneLine}${where.length ? ` [${where.join(' ')}]` : ''} (${failure.code})`;
}

const PRE_JOB_PHASES = new Set(['SUBMITTED', 'QUEUED', 'PROVISIONING', 'DOWNLOAD_SOURCE', 'INSTALL', 'PRE_BUILD']);

/** True while the build has not reached the phase in which the entrypoint runs the job. */
export function beforeJobPhase(snapshot: BuildSnapshot): boolean {
  return snapshot.currentPhase === undefined || PRE_JOB_PHASES.has(snapshot.currentPhase);
}

function failedPhase(snapshot: BuildSnapshot): { type: string; status?: string; context?: { statusCode?: string; message?: string } } | undefined {
  const failing = snapshot.phases.filter((phase) => phase.status !== undefined && phase.status !== 'SUCCEEDED');
  const phase = failing[0];
  if (!phase) return undefined;
  const context = phase.contexts.find((c) => c.message || c.statusCode);
  return { type: phase.type, ...(phase.status ? { status: phase.status } : {}), ...(context ? { context } : {}) };
}

function contextText(context: { statusCode?: string; message?: string } | undefined): string {
  if (!context) return '';
  return [context.statusCode, context.message].filter(Boolean).join(': ');
}

/**
 * Why a finished build produced no job result. Called only when the build exported no
 * valid CBACTIONS_EXIT_CODE.
 */
export function explainBuild(snapshot: BuildSnapshot, options: { stoppedByCbactions?: boolean } = {}): JobFailure {
  const base = { buildId: snapshot.id, ...(snapshot.arn ? { buildArn: snapshot.arn } : {}) };
  const exitCode = snapshot.exported.CBACTIONS_EXIT_CODE;
  const reported = snapshot.exported.CBACTIONS_FAILURE;
  if (reported) {
    const match = /^([A-Z][A-Z0-9_]{2,63}): (.*)$/s.exec(reported);
    return { ...base, code: match?.[1] ?? FailureCode.EntrypointFailed, message: `the build could not run the job: ${match?.[2] ?? reported}` };
  }
  if (exitCode !== undefined && exitCode !== '') {
    return {
      ...base,
      code: FailureCode.WorkerCrash,
      message: `the runner's Runner.Worker crashed in the build (exit code ${exitCode.slice(0, 20)}); its log is in the build log`,
    };
  }
  const phase = failedPhase(snapshot);
  const detail = contextText(phase?.context);
  const detailSuffix = detail ? `: ${detail}` : '';
  if (snapshot.status === 'STOPPED') {
    return {
      ...base,
      code: FailureCode.Stopped,
      message: options.stoppedByCbactions ? 'the job was cancelled and its build stopped before the job reported a result' : `the build was stopped before the job reported a result${detailSuffix}`,
    };
  }
  if (snapshot.status === 'TIMED_OUT') {
    if (phase !== undefined && (phase.type === 'QUEUED' || phase.type === 'SUBMITTED')) {
      return { ...base, code: FailureCode.QueuedTimeout, message: `the build waited in the CodeBuild queue longer than its queued timeout (the account's concurrent build limit may be too low)${detailSuffix}` };
    }
    if (phase !== undefined && (phase.type === 'PROVISIONING' || phase.type === 'DOWNLOAD_SOURCE')) {
      return { ...base, code: FailureCode.ProvisioningTimeout, message: `the build timed out while CodeBuild was still provisioning it (${phase.type})${detailSuffix}` };
    }
    return { ...base, code: FailureCode.BuildTimeout, message: `the build reached its timeout before the job finished (raise timeoutMinutes for this pool)${detailSuffix}` };
  }
  if (phase?.type === 'PROVISIONING' || phase?.type === 'QUEUED' || phase?.type === 'SUBMITTED') {
    const text = `${phase.context?.statusCode ?? ''} ${phase.context?.message ?? ''}`.toLowerCase();
    if (/pull|image|manifest|registry|ecr/.test(text)) {
      return { ...base, code: FailureCode.ImagePull, message: `the build could not pull its container image${snapshot.image ? ` ${snapshot.image}` : ''}${detailSuffix}` };
    }
    if (/vpc|eni|subnet|network interface|security group/.test(text)) {
      return { ...base, code: FailureCode.Network, message: `the build could not attach to its VPC network${detailSuffix}` };
    }
    return { ...base, code: FailureCode.Provisioning, message: `CodeBuild could not provision the build (${snapshot.status} in ${phase.type})${detailSuffix}` };
  }
  if (phase?.type === 'BUILD') {
    return {
      ...base,
      code: FailureCode.EntrypointCrashed,
      message: `cbactions entrypoint failed in the build without reporting a result (${snapshot.status} in BUILD)${detailSuffix}; see the build log`,
    };
  }
  if (phase) {
    return { ...base, code: FailureCode.PhaseFailed, message: `the build ${snapshot.status} in phase ${phase.type} before the job ran${detailSuffix}` };
  }
  return {
    ...base,
    code: FailureCode.EntrypointCrashed,
    message: `the build ended ${snapshot.status} without reporting a job result; see the build log`,
  };
}
