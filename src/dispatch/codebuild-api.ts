import {
  BatchGetBuildsCommand,
  StartBuildCommand,
  StopBuildCommand,
  type Build,
  type CodeBuildClient,
  type StartBuildCommandInput,
} from '@aws-sdk/client-codebuild';
import { CbactionsError } from '../util/errors.js';

/** What cbactions needs to know about one CodeBuild build. */
export interface BuildSnapshot {
  id: string;
  arn?: string;
  status: string;
  complete: boolean;
  currentPhase?: string;
  phases: BuildPhase[];
  exported: Record<string, string>;
  projectName?: string;
  computeType?: string;
  environmentType?: string;
  image?: string;
  startTime?: Date;
  endTime?: Date;
}

export interface BuildPhase {
  type: string;
  status?: string;
  /** CodeBuild's clock. */
  startTime?: Date;
  endTime?: Date;
  contexts: { statusCode?: string; message?: string }[];
}

/** The StartBuild overrides cbactions uses; everything else stays the project's. */
export interface StartBuildRequest {
  projectName: string;
  idempotencyToken: string;
  /** PLAINTEXT overrides: visible to anyone who can read builds, so references only. */
  environmentVariables: Record<string, string>;
  computeType?: string;
  environmentType?: string;
  image?: string;
  imagePullCredentials?: string;
  privileged?: boolean;
  fleetArn?: string;
  timeoutMinutes?: number;
  queuedTimeoutMinutes?: number;
  serviceRoleArn?: string;
}

/** The narrow edge between cbactions and CodeBuild (StartBuild, BatchGetBuilds, StopBuild). */
export interface CodeBuildApi {
  startBuild(request: StartBuildRequest, signal?: AbortSignal): Promise<BuildSnapshot>;
  /** At most 100 ids (CodeBuild's limit); unknown ids come back in `notFound`. */
  getBuilds(ids: string[], signal?: AbortSignal): Promise<{ builds: BuildSnapshot[]; notFound: string[] }>;
  stopBuild(id: string, signal?: AbortSignal): Promise<BuildSnapshot>;
}

export const BATCH_GET_BUILDS_LIMIT = 100;

export function toStartBuildInput(request: StartBuildRequest): StartBuildCommandInput {
  const input: StartBuildCommandInput = {
    projectName: request.projectName,
    idempotencyToken: request.idempotencyToken,
    environmentVariablesOverride: Object.entries(request.environmentVariables).map(([name, value]) => ({
      name,
      value,
      type: 'PLAINTEXT',
    })),
  };
  if (request.computeType !== undefined) input.computeTypeOverride = request.computeType as StartBuildCommandInput['computeTypeOverride'];
  if (request.environmentType !== undefined) input.environmentTypeOverride = request.environmentType as StartBuildCommandInput['environmentTypeOverride'];
  if (request.image !== undefined) input.imageOverride = request.image;
  if (request.imagePullCredentials !== undefined) input.imagePullCredentialsTypeOverride = request.imagePullCredentials as StartBuildCommandInput['imagePullCredentialsTypeOverride'];
  if (request.privileged !== undefined) input.privilegedModeOverride = request.privileged;
  if (request.fleetArn !== undefined) input.fleetOverride = { fleetArn: request.fleetArn };
  if (request.timeoutMinutes !== undefined) input.timeoutInMinutesOverride = request.timeoutMinutes;
  if (request.queuedTimeoutMinutes !== undefined) input.queuedTimeoutInMinutesOverride = request.queuedTimeoutMinutes;
  if (request.serviceRoleArn !== undefined) input.serviceRoleOverride = request.serviceRoleArn;
  return input;
}

/** Maps the SDK's Build, which is untrusted input like any API response. */
export function toSnapshot(build: Build | undefined): BuildSnapshot {
  if (!build || typeof build.id !== 'string' || build.id === '') {
    throw new CbactionsError('CODEBUILD_BAD_RESPONSE', 'CodeBuild returned a build without an id');
  }
  const exported: Record<string, string> = {};
  for (const variable of build.exportedEnvironmentVariables ?? []) {
    if (typeof variable.name === 'string' && typeof variable.value === 'string') exported[variable.name] = variable.value;
  }
  const snapshot: BuildSnapshot = {
    id: build.id,
    status: typeof build.buildStatus === 'string' ? build.buildStatus : 'IN_PROGRESS',
    complete: build.buildComplete === true,
    phases: (build.phases ?? []).map((phase) => ({
      type: String(phase.phaseType ?? 'UNKNOWN'),
      ...(phase.phaseStatus !== undefined ? { status: String(phase.phaseStatus) } : {}),
      ...(phase.startTime instanceof Date && !Number.isNaN(phase.startTime.getTime()) ? { startTime: phase.startTime } : {}),
      ...(phase.endTime instanceof Date && !Number.isNaN(phase.endTime.getTime()) ? { endTime: phase.endTime } : {}),
      contexts: (phase.contexts ?? []).map((context) => ({
        ...(context.statusCode !== undefined ? { statusCode: String(context.statusCode) } : {}),
        ...(context.message !== undefined ? { message: String(context.message) } : {}),
      })),
    })),
    exported,
  };
  if (build.arn) snapshot.arn = build.arn;
  if (build.currentPhase) snapshot.currentPhase = build.currentPhase;
  if (build.projectName) snapshot.projectName = build.projectName;
  if (build.environment?.computeType) snapshot.computeType = build.environment.computeType;
  if (build.environment?.type) snapshot.environmentType = build.environment.type;
  if (build.environment?.image) snapshot.image = build.environment.image;
  if (build.startTime instanceof Date) snapshot.startTime = build.startTime;
  if (build.endTime instanceof Date) snapshot.endTime = build.endTime;
  return snapshot;
}

/** The AWS SDK adapter. Retries are the caller's (see start-build.ts), so the client should have maxAttempts 1. */
export class AwsCodeBuildApi implements CodeBuildApi {
  constructor(private readonly client: CodeBuildClient) {}

  async startBuild(request: StartBuildRequest, signal?: AbortSignal): Promise<BuildSnapshot> {
    const output = await this.client.send(new StartBuildCommand(toStartBuildInput(request)), { abortSignal: signal });
    return toSnapshot(output.build);
  }

  async getBuilds(ids: string[], signal?: AbortSignal): Promise<{ builds: BuildSnapshot[]; notFound: string[] }> {
    if (ids.length === 0) return { builds: [], notFound: [] };
    if (ids.length > BATCH_GET_BUILDS_LIMIT) {
      throw new CbactionsError('CODEBUILD_TOO_MANY_IDS', `BatchGetBuilds takes at most ${BATCH_GET_BUILDS_LIMIT} ids, got ${ids.length}`);
    }
    const output = await this.client.send(new BatchGetBuildsCommand({ ids }), { abortSignal: signal });
    return {
      builds: (output.builds ?? []).map((build) => toSnapshot(build)),
      notFound: (output.buildsNotFound ?? []).filter((id): id is string => typeof id === 'string'),
    };
  }

  async stopBuild(id: string, signal?: AbortSignal): Promise<BuildSnapshot> {
    const output = await this.client.send(new StopBuildCommand({ id }), { abortSignal: signal });
    return toSnapshot(output.build);
  }
}
