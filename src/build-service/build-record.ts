import type { BuildFailureFault } from './faults.js';
import type { SimulatedDelays } from './simulate.js';

/**
 * One build's state and its two views: the CodeBuild `Build` shape (what BatchGetBuilds
 * returns, timestamps in epoch seconds) and the local record (`GET /_local/builds`), which
 * adds the StartBuild request exactly as received.
 */

export type BuildStatus = 'IN_PROGRESS' | 'SUCCEEDED' | 'FAILED' | 'FAULT' | 'TIMED_OUT' | 'STOPPED';
export type PhaseStatus = BuildStatus;
export type PhaseType =
  | 'SUBMITTED'
  | 'QUEUED'
  | 'PROVISIONING'
  | 'DOWNLOAD_SOURCE'
  | 'INSTALL'
  | 'PRE_BUILD'
  | 'BUILD'
  | 'POST_BUILD'
  | 'UPLOAD_ARTIFACTS'
  | 'FINALIZING'
  | 'COMPLETED';

export interface PhaseContext {
  statusCode: string;
  message: string;
}

export interface ApiBuildPhase {
  phaseType: PhaseType;
  phaseStatus?: PhaseStatus;
  startTime: number;
  endTime?: number;
  durationInSeconds?: number;
  contexts?: PhaseContext[];
}

export interface ApiEnvironmentVariable {
  name: string;
  value: string;
  type: string;
}

export interface ApiBuildEnvironment {
  type: string;
  image: string;
  computeType: string;
  privilegedMode: boolean;
  imagePullCredentialsType: string;
  environmentVariables: ApiEnvironmentVariable[];
  fleet?: { fleetArn: string };
}

/** CodeBuild's `Build`, as JSON on the wire. */
export interface ApiBuild {
  id: string;
  arn: string;
  buildNumber: number;
  startTime: number;
  endTime?: number;
  currentPhase: PhaseType;
  buildStatus: BuildStatus;
  buildComplete: boolean;
  projectName: string;
  sourceVersion?: string;
  phases: ApiBuildPhase[];
  source: { type: 'NO_SOURCE'; buildspec?: string };
  artifacts: { location: string };
  cache: { type: 'NO_CACHE' };
  environment: ApiBuildEnvironment;
  serviceRole?: string;
  logs: {
    groupName: string;
    streamName: string;
    deepLink: string;
    cloudWatchLogsArn: string;
    cloudWatchLogs: { status: 'ENABLED'; groupName: string; streamName: string };
  };
  timeoutInMinutes: number;
  queuedTimeoutInMinutes: number;
  initiator: string;
  encryptionKey: string;
  exportedEnvironmentVariables?: { name: string; value: string }[];
}

/** Why a build was ended from outside. */
export type StopReason = 'StopBuild' | 'timeout' | 'queued-timeout' | 'shutdown';

/** `GET /_local/builds` entry; also `<stateDir>/builds/<uuid>/record.json`. */
export interface LocalBuildRecord {
  id: string;
  uuid: string;
  arn: string;
  buildNumber: number;
  projectName: string;
  /** The StartBuild request body exactly as received (parsed JSON). */
  request: Record<string, unknown>;
  buildStatus: BuildStatus;
  buildComplete: boolean;
  currentPhase: PhaseType;
  phases: ApiBuildPhase[];
  exportedEnvironmentVariables: { name: string; value: string }[];
  /** An injected failure this build was given at StartBuild. */
  plannedFailure?: BuildFailureFault;
  /** The simulated delays this build was given at StartBuild (the phases show what it really spent). */
  simulated?: { queuedSeconds: number; provisioningSeconds: number };
  stop?: { reason: StopReason; at: number };
  /** The build's process group while it runs commands. */
  processGroup?: number;
  /** `AWSCodeBuild-<uuid>` when the service role was assumed for this build. */
  roleSessionName?: string;
  srcDir: string;
  logFile: string;
  /** Exactly what BatchGetBuilds returns for this build now. */
  build: ApiBuild;
}

const epochSeconds = (ms: number): number => ms / 1000;

export interface BuildIdentity {
  id: string;
  uuid: string;
  arn: string;
  buildNumber: number;
  projectName: string;
}

export interface BuildSettings {
  environment: ApiBuildEnvironment;
  serviceRole: string | undefined;
  timeoutInMinutes: number;
  queuedTimeoutInMinutes: number;
  initiator: string;
  sourceVersion: string | undefined;
  /** The inline buildspec, when StartBuild overrode it with YAML. */
  inlineBuildspec: string | undefined;
  region: string;
  accountId: string;
}

/** Mutable state of one build; every change calls `onChange` (persistence). */
export class BuildState {
  readonly identity: BuildIdentity;
  readonly request: Record<string, unknown>;
  readonly settings: BuildSettings;
  readonly startMs: number;
  readonly srcDir: string;
  readonly logFile: string;
  plannedFailure: BuildFailureFault | undefined;
  readonly simulated: SimulatedDelays | undefined;
  buildStatus: BuildStatus = 'IN_PROGRESS';
  buildComplete = false;
  endMs: number | undefined;
  phases: ApiBuildPhase[] = [];
  exportedVariables: { name: string; value: string }[] | undefined;
  stop: { reason: StopReason; at: number } | undefined;
  processGroup: number | undefined;
  roleSessionName: string | undefined;

  constructor(input: {
    identity: BuildIdentity;
    request: Record<string, unknown>;
    settings: BuildSettings;
    startMs: number;
    srcDir: string;
    logFile: string;
    plannedFailure: BuildFailureFault | undefined;
    simulated?: SimulatedDelays | undefined;
    onChange: (state: BuildState) => void;
  }) {
    this.identity = input.identity;
    this.request = input.request;
    this.settings = input.settings;
    this.startMs = input.startMs;
    this.srcDir = input.srcDir;
    this.logFile = input.logFile;
    this.plannedFailure = input.plannedFailure;
    this.simulated = input.simulated;
    this.onChange = input.onChange;
  }

  private readonly onChange: (state: BuildState) => void;

  changed(): void {
    this.onChange(this);
  }

  get currentPhase(): PhaseType {
    return this.phases.at(-1)?.phaseType ?? 'SUBMITTED';
  }

  get openPhase(): ApiBuildPhase | undefined {
    const last = this.phases.at(-1);
    return last && last.phaseStatus === 'IN_PROGRESS' ? last : undefined;
  }

  startPhase(phaseType: PhaseType, nowMs: number): void {
    this.phases.push(
      phaseType === 'COMPLETED' ? { phaseType, startTime: epochSeconds(nowMs) } : { phaseType, phaseStatus: 'IN_PROGRESS', startTime: epochSeconds(nowMs) },
    );
    this.changed();
  }

  /** Ends the open phase; successful phases carry CodeBuild's empty context. */
  endPhase(status: PhaseStatus, nowMs: number, context?: PhaseContext): void {
    const phase = this.openPhase;
    if (!phase) return;
    phase.phaseStatus = status;
    phase.endTime = epochSeconds(nowMs);
    phase.durationInSeconds = Math.max(0, Math.round(phase.endTime - phase.startTime));
    phase.contexts = [context ?? { statusCode: '', message: '' }];
    this.changed();
  }

  complete(status: BuildStatus, nowMs: number): void {
    this.buildStatus = status;
    this.buildComplete = true;
    this.endMs = nowMs;
    this.processGroup = undefined;
    this.changed();
  }

  toApi(): ApiBuild {
    const { identity, settings } = this;
    const groupName = `/aws/codebuild/${identity.projectName}`;
    const streamName = identity.uuid;
    const build: ApiBuild = {
      id: identity.id,
      arn: identity.arn,
      buildNumber: identity.buildNumber,
      startTime: epochSeconds(this.startMs),
      currentPhase: this.currentPhase,
      buildStatus: this.buildStatus,
      buildComplete: this.buildComplete,
      projectName: identity.projectName,
      phases: this.phases.map((phase) => ({ ...phase, ...(phase.contexts ? { contexts: phase.contexts.map((context) => ({ ...context })) } : {}) })),
      source: { type: 'NO_SOURCE', ...(settings.inlineBuildspec !== undefined ? { buildspec: settings.inlineBuildspec } : {}) },
      artifacts: { location: '' },
      cache: { type: 'NO_CACHE' },
      environment: {
        ...settings.environment,
        environmentVariables: settings.environment.environmentVariables.map((variable) => ({ ...variable })),
        ...(settings.environment.fleet ? { fleet: { ...settings.environment.fleet } } : {}),
      },
      logs: {
        groupName,
        streamName,
        deepLink: `https://console.aws.amazon.com/cloudwatch/home?region=${settings.region}#logsV2:log-groups/log-group/${encodeURIComponent(groupName)}/log-events/${streamName}`,
        cloudWatchLogsArn: `arn:aws:logs:${settings.region}:${settings.accountId}:log-group:${groupName}:log-stream:${streamName}`,
        cloudWatchLogs: { status: 'ENABLED', groupName, streamName },
      },
      timeoutInMinutes: settings.timeoutInMinutes,
      queuedTimeoutInMinutes: settings.queuedTimeoutInMinutes,
      initiator: settings.initiator,
      encryptionKey: `arn:aws:kms:${settings.region}:${settings.accountId}:alias/aws/s3`,
    };
    if (this.endMs !== undefined) build.endTime = epochSeconds(this.endMs);
    if (settings.sourceVersion !== undefined) build.sourceVersion = settings.sourceVersion;
    if (settings.serviceRole !== undefined) build.serviceRole = settings.serviceRole;
    if (this.exportedVariables !== undefined) build.exportedEnvironmentVariables = this.exportedVariables.map((variable) => ({ ...variable }));
    return build;
  }

  toRecord(): LocalBuildRecord {
    const build = this.toApi();
    const record: LocalBuildRecord = {
      id: this.identity.id,
      uuid: this.identity.uuid,
      arn: this.identity.arn,
      buildNumber: this.identity.buildNumber,
      projectName: this.identity.projectName,
      request: this.request,
      buildStatus: build.buildStatus,
      buildComplete: build.buildComplete,
      currentPhase: build.currentPhase,
      phases: build.phases,
      exportedEnvironmentVariables: build.exportedEnvironmentVariables ?? [],
      srcDir: this.srcDir,
      logFile: this.logFile,
      build,
    };
    if (this.plannedFailure) record.plannedFailure = { ...this.plannedFailure };
    if (this.simulated) record.simulated = { queuedSeconds: this.simulated.queuedMs / 1000, provisioningSeconds: this.simulated.provisioningMs / 1000 };
    if (this.stop) record.stop = { ...this.stop };
    if (this.processGroup !== undefined) record.processGroup = this.processGroup;
    if (this.roleSessionName !== undefined) record.roleSessionName = this.roleSessionName;
    return record;
  }
}
