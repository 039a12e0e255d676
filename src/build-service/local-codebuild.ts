import { mkdirSync, writeFileSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { Clock } from '../util/clock.js';
import type { Logger } from '../util/logger.js';
import { AwsErrorCode, AwsServiceError, invalidInput } from './aws-error.js';
import { BuildState, type ApiBuild, type ApiEnvironmentVariable, type LocalBuildRecord } from './build-record.js';
import { BuildAbort, runBuild, type BuildPlan, type BuildRunnerDeps, type BuildspecSource } from './build-runner.js';
import type { ProjectConfig } from './config.js';
import { BUILD_ACTIONS, type BuildAction, type FaultState } from './faults.js';
import { liveGroupMembers, readProcStat, signalGroup } from '../util/process-group.js';
import { IDEMPOTENCY_TOKEN_TTL_MS, MAX_BATCH_GET_IDS, QUEUE_FACTOR } from './limits.js';
import { RecordWriter } from './record-writer.js';
import type { RoleAssumer } from './role-assumer.js';
import type { SimulatedDelays, SimulationState } from './simulate.js';
import { lambdaProblems, parseStartBuild, type StartBuildInput } from './start-build-request.js';
import { sleep } from '../util/backoff.js';

/** How long a freeze waits for every process of the build to show it has stopped. */
const FREEZE_TIMEOUT_MS = 30_000;
const FREEZE_POLL_MS = 10;

/**
 * Members of group `pgid` that could still run: not stopped (T), and not a vfork parent
 * (state D) whose child in the group is stopped — that parent waits for the child's exec.
 */
export function runnableMembers(pgid: number): number[] {
  const members = liveGroupMembers(pgid).flatMap((pid) => {
    const stat = readProcStat(pid);
    return stat ? [stat] : [];
  });
  const stoppedParents = new Set(members.filter((member) => member.state === 'T').map((member) => member.ppid));
  return members.filter((member) => member.state !== 'T' && !(member.state === 'D' && stoppedParents.has(member.pid))).map((member) => member.pid);
}

export interface LocalCodeBuildOptions {
  projects: ProjectConfig[];
  region: string;
  accountId: string;
  minuteMs: number;
  stopGraceMs: number;
  concurrentBuildLimit: number | undefined;
  initiator: string;
  /** Where relative buildspecOverride paths are resolved. */
  baseDir: string;
  stateDir: string;
}

export interface LocalCodeBuildDeps {
  logger: Logger;
  faults: FaultState;
  /** Simulated QUEUED/PROVISIONING delays, drawn per build at StartBuild. */
  simulation: SimulationState;
  now: () => number;
  /** Timeouts and simulated delays run on it. */
  clock: Clock;
  randomUUID: () => string;
  /** The image's environment (the build-service's own). */
  baseEnv: Record<string, string>;
  roleAssumer: RoleAssumer | undefined;
}

interface BuildEntry {
  state: BuildState;
  plan: BuildPlan;
  controller: AbortController;
  stage: 'queued' | 'running' | 'done';
  /** Cancels the pending timeout (queued timeout while queued, build timeout while running). */
  timer: (() => void) | undefined;
  /** Cancels the simulated queue delay while it runs. */
  cancelQueueDelay: (() => void) | undefined;
  simulated: SimulatedDelays | undefined;
  done: Promise<void>;
  markDone: () => void;
}

/**
 * CodeBuild's build lifecycle, locally: StartBuild (validation, idempotency tokens, the
 * account limit, queueing under a concurrency limit), BatchGetBuilds, StopBuild,
 * ListBuildsForProject; timeouts measured in `minuteMs` "minutes".
 */
export class LocalCodeBuild {
  private readonly projects: Map<string, ProjectConfig>;
  private readonly entries = new Map<string, BuildEntry>();
  private readonly byArn = new Map<string, BuildEntry>();
  private readonly byUuid = new Map<string, BuildEntry>();
  private readonly buildNumbers = new Map<string, number>();
  private readonly tokens = new Map<string, { fingerprint: string; buildId: string; expiresMs: number }>();
  private readonly queue: BuildEntry[] = [];
  private running = 0;
  private readonly writer: RecordWriter;
  private shuttingDown = false;

  constructor(
    private readonly options: LocalCodeBuildOptions,
    private readonly deps: LocalCodeBuildDeps,
  ) {
    this.projects = new Map(options.projects.map((project) => [project.name, project]));
    this.writer = new RecordWriter(deps.logger);
    mkdirSync(join(options.stateDir, 'builds'), { recursive: true });
  }

  startBuild(body: unknown): { build: ApiBuild } {
    const input = parseStartBuild(body);
    const project = this.projects.get(input.projectName);
    if (!project) throw new AwsServiceError(AwsErrorCode.ResourceNotFound, `Project cannot be found: arn:aws:codebuild:${this.options.region}:${this.options.accountId}:project/${input.projectName}`);
    const computeType = input.computeTypeOverride ?? project.computeType;
    const environmentType = input.environmentTypeOverride ?? project.environmentType;
    const lambda = lambdaProblems(input, computeType, environmentType);
    if (lambda) throw invalidInput(lambda);
    const buildspec = this.buildspecSource(project, input.buildspecOverride);

    const now = this.deps.now();
    const request = body as Record<string, unknown>;
    if (input.idempotencyToken !== undefined) {
      const { idempotencyToken: _token, ...rest } = request;
      const fingerprint = canonicalJson(rest);
      const previous = this.tokens.get(input.idempotencyToken);
      if (previous && previous.expiresMs > now) {
        if (previous.fingerprint !== fingerprint) {
          throw new AwsServiceError(
            AwsErrorCode.IdempotentParameterMismatch,
            'The idempotency token was used in a previous StartBuild request with different parameters; use a new token for a different request',
          );
        }
        const existing = this.entries.get(previous.buildId);
        if (existing) return { build: existing.state.toApi() };
      }
    }

    const limit = this.deps.faults.takeAccountLimit();
    if (limit !== undefined) throw accountLimit(limit);
    const cap = this.options.concurrentBuildLimit;
    if (cap !== undefined && this.queue.length >= cap * QUEUE_FACTOR) throw accountLimit(cap);
    if (this.shuttingDown) throw new AwsServiceError(AwsErrorCode.InternalFailure, 'the local build service is shutting down', 503);

    const entry = this.createBuild(project, input, request, buildspec, now);
    if (input.idempotencyToken !== undefined) {
      const { idempotencyToken: _token, ...rest } = request;
      this.tokens.set(input.idempotencyToken, { fingerprint: canonicalJson(rest), buildId: entry.state.identity.id, expiresMs: now + IDEMPOTENCY_TOKEN_TTL_MS });
    }
    const response = entry.state.toApi();
    this.admit(entry);
    return { build: response };
  }

  batchGetBuilds(body: unknown): { builds: ApiBuild[]; buildsNotFound: string[] } {
    const ids = (body as Record<string, unknown> | null)?.ids;
    if (!Array.isArray(ids) || ids.some((id) => typeof id !== 'string')) throw invalidInput('ids must be a list of build ids');
    if (ids.length === 0) throw invalidInput("1 validation error detected: Value '[]' at 'ids' failed to satisfy constraint: Member must have length greater than or equal to 1");
    if (ids.length > MAX_BATCH_GET_IDS) {
      throw invalidInput(`1 validation error detected: Value at 'ids' failed to satisfy constraint: Member must have length less than or equal to ${MAX_BATCH_GET_IDS} (got ${ids.length} ids)`);
    }
    const builds: ApiBuild[] = [];
    const buildsNotFound: string[] = [];
    for (const id of ids as string[]) {
      const entry = this.find(id);
      if (entry) builds.push(entry.state.toApi());
      else buildsNotFound.push(id);
    }
    return { builds, buildsNotFound };
  }

  stopBuild(body: unknown): { build: ApiBuild } {
    const id = (body as Record<string, unknown> | null)?.id;
    if (typeof id !== 'string' || id.length === 0) throw invalidInput("1 validation error detected: Value null at 'id' failed to satisfy constraint: Member must not be null");
    const entry = this.find(id);
    if (!entry) throw new AwsServiceError(AwsErrorCode.ResourceNotFound, `Build ${id} does not exist`);
    this.stop(entry, new BuildAbort('STOPPED', 'StopBuild'));
    return { build: entry.state.toApi() };
  }

  listBuildsForProject(body: unknown): { ids: string[]; nextToken?: string } {
    const fields = (body ?? {}) as Record<string, unknown>;
    const projectName = fields.projectName;
    if (typeof projectName !== 'string' || projectName.length === 0) throw invalidInput("1 validation error detected: Value null at 'projectName' failed to satisfy constraint: Member must not be null");
    if (!this.projects.has(projectName)) throw new AwsServiceError(AwsErrorCode.ResourceNotFound, `Project cannot be found: ${projectName}`);
    const ascending = fields.sortOrder === 'ASCENDING';
    const ids = [...this.entries.values()]
      .filter((entry) => entry.state.identity.projectName === projectName)
      .sort((a, b) => (ascending ? 1 : -1) * (a.state.identity.buildNumber - b.state.identity.buildNumber))
      .map((entry) => entry.state.identity.id);
    const offset = typeof fields.nextToken === 'string' ? Number.parseInt(fields.nextToken, 10) : 0;
    if (!Number.isInteger(offset) || offset < 0) throw invalidInput('nextToken is not a token this service issued');
    const page = ids.slice(offset, offset + 100);
    return offset + 100 < ids.length ? { ids: page, nextToken: String(offset + 100) } : { ids: page };
  }

  hasProject(name: string): boolean {
    return this.projects.has(name);
  }

  /**
   * A fault done to a running build's process group now (faults.ts BUILD_ACTIONS). Throws
   * ResourceNotFoundException for an unknown build, InvalidInputException for one whose
   * commands are not running (queued, provisioning, or over). A freeze answers only once
   * every process of the build shows it is stopped: a caller acting on "frozen" (a race
   * test) must not find a process still running a moment later.
   */
  async signalBuild(idOrUuid: string, action: BuildAction): Promise<LocalBuildRecord> {
    const entry = this.find(idOrUuid);
    if (!entry) throw new AwsServiceError(AwsErrorCode.ResourceNotFound, `Build ${idOrUuid} does not exist`);
    const pgid = entry.state.processGroup;
    if (entry.stage !== 'running' || pgid === undefined || !signalGroup(pgid, BUILD_ACTIONS[action])) {
      throw invalidInput(`build ${entry.state.identity.id} has no running commands to ${action} (phase ${entry.state.currentPhase})`);
    }
    if (action === 'freeze') await this.#untilStopped(entry.state.identity.id, pgid);
    this.deps.logger.info({ event: 'build.fault-action', buildId: entry.state.identity.id, action, processGroup: pgid }, 'fault done to a running build');
    return entry.state.toRecord();
  }

  /**
   * SIGSTOP reaches each process when the kernel next schedules it (on a loaded machine, a
   * while later): wait until no process of the group can run, sending it again to any that
   * still could. A shell that vforked (dash does, for each command) sits in state D until its
   * child execs; with the child stopped first it never gets to stop itself, yet it can't run
   * either: it counts as frozen. Bounded.
   */
  async #untilStopped(buildId: string, pgid: number): Promise<void> {
    const deadline = Date.now() + FREEZE_TIMEOUT_MS;
    for (;;) {
      const running = runnableMembers(pgid);
      if (running.length === 0) return;
      if (Date.now() >= deadline) throw invalidInput(`build ${buildId}: processes ${running.join(', ')} did not stop within ${FREEZE_TIMEOUT_MS / 1000} s of SIGSTOP`);
      for (const pid of running) {
        try {
          process.kill(pid, 'SIGSTOP');
        } catch {
          // Gone meanwhile: nothing to stop.
        }
      }
      await sleep(FREEZE_POLL_MS);
    }
  }

  /** Every build's local record, oldest first. */
  records(): LocalBuildRecord[] {
    return [...this.entries.values()].map((entry) => entry.state.toRecord());
  }

  /** A build by id, ARN or uuid. */
  record(idOrUuid: string): LocalBuildRecord | undefined {
    return this.find(idOrUuid)?.state.toRecord();
  }

  /** Stops every queued and running build (SIGTERM, grace, SIGKILL) and waits for them all. */
  async shutdown(): Promise<void> {
    this.shuttingDown = true;
    for (const entry of this.entries.values()) this.stop(entry, new BuildAbort('STOPPED', 'shutdown'));
    await Promise.all([...this.entries.values()].map((entry) => entry.done));
    await this.writer.flush();
  }

  /** Resolves when every build so far has completed and its record is written. */
  async settled(): Promise<void> {
    await Promise.all([...this.entries.values()].map((entry) => entry.done));
    await this.writer.flush();
  }

  private find(idOrArn: string): BuildEntry | undefined {
    return this.entries.get(idOrArn) ?? this.byArn.get(idOrArn) ?? this.byUuid.get(idOrArn);
  }

  private buildspecSource(project: ProjectConfig, override: string | undefined): BuildspecSource {
    if (override === undefined || override.trim() === '') return { kind: 'file', path: project.buildspec };
    let parsed: unknown;
    try {
      parsed = parseYaml(override);
    } catch {
      // Not YAML at all: CodeBuild would report it at DOWNLOAD_SOURCE; so do we.
      return { kind: 'inline', text: override };
    }
    if (typeof parsed === 'object' && parsed !== null) return { kind: 'inline', text: override };
    if (/^arn:aws[a-zA-Z-]*:s3:::/.test(override.trim())) {
      throw invalidInput('buildspecOverride: buildspecs in S3 are not supported by the local build service; pass inline YAML or a local path');
    }
    const path = override.trim();
    return { kind: 'file', path: isAbsolute(path) ? path : resolve(this.options.baseDir, path) };
  }

  private createBuild(project: ProjectConfig, input: StartBuildInput, request: Record<string, unknown>, buildspec: BuildspecSource, now: number): BuildEntry {
    const { region, accountId, stateDir } = this.options;
    const uuid = this.deps.randomUUID();
    const id = `${project.name}:${uuid}`;
    const arn = `arn:aws:codebuild:${region}:${accountId}:build/${id}`;
    const buildNumber = (this.buildNumbers.get(project.name) ?? 0) + 1;
    this.buildNumbers.set(project.name, buildNumber);
    const buildDir = join(stateDir, 'builds', uuid);
    const srcDir = join(buildDir, 'src');
    const logFile = join(buildDir, 'build.log');
    mkdirSync(buildDir, { recursive: true });
    writeFileSync(logFile, '', { flag: 'a' });

    const variables: ApiEnvironmentVariable[] = Object.entries(project.environmentVariables).map(([name, value]) => ({ name, value, type: 'PLAINTEXT' }));
    for (const override of input.environmentVariablesOverride ?? []) {
      const existing = variables.findIndex((variable) => variable.name === override.name);
      if (existing >= 0) variables.splice(existing, 1);
      variables.push({ ...override });
    }
    const image = input.imageOverride ?? project.image;
    const timeoutInMinutes = input.timeoutInMinutesOverride ?? project.timeoutInMinutes;
    const queuedTimeoutInMinutes = input.queuedTimeoutInMinutesOverride ?? project.queuedTimeoutInMinutes;
    const serviceRole = input.serviceRoleOverride ?? project.serviceRole;
    const inlineBuildspec = buildspec.kind === 'inline' ? buildspec.text : undefined;
    const simulated = this.deps.simulation.draw(project.name);

    const state = new BuildState({
      identity: { id, uuid, arn, buildNumber, projectName: project.name },
      request,
      settings: {
        environment: {
          type: input.environmentTypeOverride ?? project.environmentType,
          image,
          computeType: input.computeTypeOverride ?? project.computeType,
          privilegedMode: input.privilegedModeOverride ?? project.privilegedMode,
          imagePullCredentialsType: input.imagePullCredentialsTypeOverride ?? 'CODEBUILD',
          environmentVariables: variables,
          ...(input.fleetOverride ? { fleet: { ...input.fleetOverride } } : {}),
        },
        serviceRole,
        timeoutInMinutes,
        queuedTimeoutInMinutes,
        initiator: this.options.initiator,
        sourceVersion: input.sourceVersion,
        inlineBuildspec,
        region,
        accountId,
      },
      startMs: now,
      srcDir,
      logFile,
      plannedFailure: this.deps.faults.takeBuildFailure(project.name),
      simulated,
      onChange: (changed) => this.writer.schedule(join(buildDir, 'record.json'), () => changed.toRecord()),
    });
    const plan: BuildPlan = {
      state,
      buildspec,
      variables: variables.map(({ name, value }) => ({ name, value })),
      codebuildVariables: {
        CODEBUILD_BUILD_ID: id,
        CODEBUILD_BUILD_ARN: arn,
        CODEBUILD_BUILD_NUMBER: String(buildNumber),
        CODEBUILD_INITIATOR: this.options.initiator,
        CODEBUILD_SRC_DIR: srcDir,
        CODEBUILD_BUILD_IMAGE: image,
        CODEBUILD_START_TIME: String(now),
        CODEBUILD_CI: 'true',
        CODEBUILD_LOG_PATH: uuid,
        CODEBUILD_BUILD_URL: `https://${region}.console.aws.amazon.com/codebuild/home?region=${region}#/builds/${encodeURIComponent(id)}/view/new`,
        CODEBUILD_PROJECT_ARN: `arn:aws:codebuild:${region}:${accountId}:project/${project.name}`,
        AWS_REGION: region,
        AWS_DEFAULT_REGION: region,
      },
      sessionDir: join(buildDir, 'session'),
      simulatedProvisioningMs: simulated?.provisioningMs ?? 0,
      ...(project.runnerRoot !== undefined ? { runnerRoot: { installation: project.runnerRoot, root: join(buildDir, 'runner'), keptDiag: join(buildDir, 'runner-diag') } } : {}),
    };
    let markDone = () => {};
    const done = new Promise<void>((resolveDone) => (markDone = resolveDone));
    const entry: BuildEntry = { state, plan, controller: new AbortController(), stage: 'queued', timer: undefined, cancelQueueDelay: undefined, simulated, done, markDone };
    this.entries.set(id, entry);
    this.byArn.set(arn, entry);
    this.byUuid.set(uuid, entry);

    state.startPhase('SUBMITTED', now);
    state.endPhase('SUCCEEDED', now);
    state.startPhase('QUEUED', now);
    this.deps.logger.info(
      {
        event: 'build.submitted',
        buildId: id,
        projectName: project.name,
        buildNumber,
        // Names only: values are the job's business and may be large.
        overrideNames: (input.environmentVariablesOverride ?? []).map((variable) => variable.name),
        plannedFailure: state.plannedFailure?.phase,
        ...(simulated ? { simulatedQueuedMs: simulated.queuedMs, simulatedProvisioningMs: simulated.provisioningMs } : {}),
      },
      'build submitted',
    );
    return entry;
  }

  /**
   * Holds the build in QUEUED for its simulated queue delay, if any, then runs it or queues
   * it behind the concurrency limit. The queued timeout counts from StartBuild, as all of
   * QUEUED is the wait it bounds.
   */
  private admit(entry: BuildEntry): void {
    const queuedMs = entry.simulated?.queuedMs ?? 0;
    if (queuedMs <= 0) {
      this.admitNow(entry);
      return;
    }
    this.armQueuedTimeout(entry);
    entry.cancelQueueDelay = this.deps.clock.setTimer(() => {
      entry.cancelQueueDelay = undefined;
      if (entry.stage === 'queued' && !entry.controller.signal.aborted) this.admitNow(entry);
    }, queuedMs);
  }

  /** Runs the build now, or queues it behind the concurrency limit with its queued timeout. */
  private admitNow(entry: BuildEntry): void {
    const limit = this.options.concurrentBuildLimit;
    if (limit === undefined || this.running < limit) {
      this.run(entry);
      return;
    }
    this.queue.push(entry);
    this.armQueuedTimeout(entry);
    this.deps.logger.info({ event: 'build.queued', buildId: entry.state.identity.id, queued: this.queue.length }, 'build queued');
  }

  private armQueuedTimeout(entry: BuildEntry): void {
    if (entry.timer) return;
    const { queuedTimeoutInMinutes } = entry.state.settings;
    entry.timer = this.deps.clock.setTimer(() => this.stop(entry, new BuildAbort('TIMED_OUT', 'queued-timeout')), queuedTimeoutInMinutes * this.options.minuteMs);
  }

  private run(entry: BuildEntry): void {
    const { state } = entry;
    entry.timer?.();
    entry.timer = undefined;
    entry.stage = 'running';
    this.running += 1;
    state.endPhase('SUCCEEDED', this.deps.now());
    entry.timer = this.deps.clock.setTimer(() => this.stop(entry, new BuildAbort('TIMED_OUT', 'timeout')), state.settings.timeoutInMinutes * this.options.minuteMs);
    const runnerDeps: BuildRunnerDeps = {
      logger: this.deps.logger,
      now: this.deps.now,
      clock: this.deps.clock,
      baseEnv: this.deps.baseEnv,
      roleAssumer: this.deps.roleAssumer,
      stopGraceMs: this.options.stopGraceMs,
    };
    void runBuild(entry.plan, runnerDeps, entry.controller.signal)
      .catch((error: unknown) => {
        this.deps.logger.error({ event: 'build.runner-crashed', buildId: state.identity.id, error: String(error) }, 'build runner crashed');
        if (!state.buildComplete) state.complete('FAULT', this.deps.now());
      })
      .finally(() => {
        entry.timer?.();
        entry.timer = undefined;
        entry.stage = 'done';
        this.running -= 1;
        entry.markDone();
        this.pump();
      });
  }

  private pump(): void {
    const limit = this.options.concurrentBuildLimit;
    while (this.queue.length > 0 && (limit === undefined || this.running < limit) && !this.shuttingDown) {
      const next = this.queue.shift();
      if (next) this.run(next);
    }
  }

  /** StopBuild, a timeout or shutdown: the status is decided now, the processes go next. */
  private stop(entry: BuildEntry, abort: BuildAbort): void {
    const { state } = entry;
    if (entry.stage === 'done' || entry.controller.signal.aborted) return;
    // Past the buildspec's phases the outcome is decided: a late StopBuild (or timeout)
    // gets the final status, as CodeBuild answers when it can no longer stop a build.
    if (['UPLOAD_ARTIFACTS', 'FINALIZING', 'COMPLETED'].includes(state.currentPhase)) return;
    const now = this.deps.now();
    state.stop = { reason: abort.reason, at: now / 1000 };
    state.buildStatus = abort.status;
    this.deps.logger.info({ event: 'build.stopping', buildId: state.identity.id, reason: abort.reason }, 'build stopping');
    if (entry.stage === 'queued') {
      const index = this.queue.indexOf(entry);
      if (index >= 0) this.queue.splice(index, 1);
      entry.cancelQueueDelay?.();
      entry.cancelQueueDelay = undefined;
      entry.timer?.();
      entry.timer = undefined;
      entry.controller.abort(abort);
      state.endPhase(abort.status, now, abort.status === 'TIMED_OUT' ? { statusCode: 'BUILD_TIMED_OUT', message: 'Build has timed out while queued. ' } : { statusCode: 'BUILD_STOPPED', message: 'Build was stopped' });
      state.startPhase('COMPLETED', now);
      state.complete(abort.status, now);
      entry.stage = 'done';
      entry.markDone();
      return;
    }
    state.changed();
    entry.controller.abort(abort);
  }
}

function accountLimit(limit: number): AwsServiceError {
  return new AwsServiceError(AwsErrorCode.AccountLimitExceeded, `Cannot have more than ${limit} active builds for the account`);
}

/** JSON with sorted keys: equal requests give equal text whatever their key order. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, item: unknown) => {
    if (typeof item !== 'object' || item === null || Array.isArray(item)) return item;
    return Object.fromEntries(Object.entries(item as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  });
}
