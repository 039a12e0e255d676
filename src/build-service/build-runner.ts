import { mkdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { buildHardLinkRoot } from '../preload/hardlink-root.js';
import type { Clock } from '../util/clock.js';
import type { Logger } from '../util/logger.js';
import { describeError, isCbactionsError } from '../util/errors.js';
import { BuildLog } from './build-log.js';
import type { BuildState, BuildStatus, PhaseContext, PhaseType, StopReason } from './build-record.js';
import { BUILDSPEC_PHASES, parseBuildspec, type Buildspec, type BuildspecPhase, type BuildspecPhaseName } from './buildspec.js';
import { killGroup, terminateGroup } from '../util/process-group.js';
import type { RoleAssumer, TemporaryCredentials } from './role-assumer.js';
import { ShellSession } from './shell-session.js';

/** Why a running build was ended from outside; the AbortSignal's reason. */
export class BuildAbort {
  constructor(
    readonly status: 'STOPPED' | 'TIMED_OUT',
    readonly reason: StopReason,
  ) {}
}

export type BuildspecSource = { kind: 'file'; path: string } | { kind: 'inline'; text: string };

/** Everything StartBuild decided for one build. */
export interface BuildPlan {
  state: BuildState;
  buildspec: BuildspecSource;
  /** The project's variables, then the overrides (later wins). Values never logged. */
  variables: { name: string; value: string }[];
  /** CODEBUILD_* and AWS_REGION variables (CODEBUILD_BUILD_SUCCEEDING is managed here). */
  codebuildVariables: Record<string, string>;
  /** Session work directory (scripts and dumps hold variable values; removed at the end). */
  sessionDir: string;
  /**
   * The build's own runner root, made of hard links to the project's runner installation at
   * PROVISIONING and removed at FINALIZING; the runner's `_diag` is kept as `keptDiag`.
   */
  runnerRoot?: { installation: string; root: string; keptDiag: string };
  /** How long PROVISIONING waits before its work, as CodeBuild takes to provision (simulate.ts); 0 = no wait. */
  simulatedProvisioningMs: number;
}

/** Where `cbactions entrypoint` looks for the runner (an image-level variable: the project and overrides may change it). */
export const RUNNER_ROOT_VARIABLE = 'CBACTIONS_RUNNER_ROOT';

export interface BuildRunnerDeps {
  logger: Logger;
  now: () => number;
  /** The simulated provisioning delay runs on it. */
  clock: Clock;
  /** The image's environment: the build-service's own. */
  baseEnv: Record<string, string>;
  /** Present when the config enables assumeServiceRole. */
  roleAssumer: RoleAssumer | undefined;
  stopGraceMs: number;
}

type PhaseOutcome = { status: 'SUCCEEDED' } | { status: 'FAILED' | 'FAULT'; context: PhaseContext };

const COMMAND_PHASES: Record<BuildspecPhaseName, PhaseType> = {
  install: 'INSTALL',
  pre_build: 'PRE_BUILD',
  build: 'BUILD',
  post_build: 'POST_BUILD',
};

const ABORT_CONTEXT: Record<BuildAbort['status'], PhaseContext> = {
  STOPPED: { statusCode: 'BUILD_STOPPED', message: 'Build was stopped' },
  TIMED_OUT: { statusCode: 'BUILD_TIMED_OUT', message: 'Build has timed out. ' },
};

/**
 * Runs one build through CodeBuild's phases (user guide, "Build phase transitions"):
 * PROVISIONING and DOWNLOAD_SOURCE, then INSTALL, PRE_BUILD, BUILD, POST_BUILD from the
 * buildspec, UPLOAD_ARTIFACTS, FINALIZING, COMPLETED. A failure in INSTALL or PRE_BUILD
 * skips to FINALIZING; a BUILD failure still runs POST_BUILD; `on-failure` changes that
 * (ABORT: to FINALIZING; CONTINUE: on to the next phase). An abort (StopBuild, timeout)
 * signals the build's process group and ends the open phase with its status.
 */
export async function runBuild(plan: BuildPlan, deps: BuildRunnerDeps, signal: AbortSignal): Promise<void> {
  const run = new BuildRun(plan, deps, signal);
  await run.run();
}

class BuildRun {
  private readonly state: BuildState;
  private readonly log: BuildLog;
  private session: ShellSession | undefined;
  private termination: Promise<void> | undefined;
  private failed = false;
  private faulted = false;
  private credentials: TemporaryCredentials | undefined;

  constructor(
    private readonly plan: BuildPlan,
    private readonly deps: BuildRunnerDeps,
    private readonly signal: AbortSignal,
  ) {
    this.state = plan.state;
    this.log = new BuildLog(this.state.logFile, deps.now);
  }

  private get aborted(): BuildAbort | undefined {
    if (!this.signal.aborted) return undefined;
    const reason: unknown = this.signal.reason;
    return reason instanceof BuildAbort ? reason : new BuildAbort('STOPPED', 'StopBuild');
  }

  async run(): Promise<void> {
    const onAbort = () => {
      // SIGTERM now, SIGKILL after the grace period: the commands see the stop at once.
      if (this.session && !this.termination) this.termination = terminateGroup(this.session.pgid, this.deps.stopGraceMs);
    };
    this.signal.addEventListener('abort', onAbort, { once: true });
    try {
      await this.phases();
    } catch (error) {
      // A bug or an environment problem (disk full): the build faults, the service lives on.
      this.deps.logger.error({ event: 'build.fault', buildId: this.state.identity.id, error: describeError(error) }, 'build faulted');
      this.faulted = true;
      if (this.state.openPhase) this.state.endPhase('FAULT', this.deps.now(), { statusCode: 'CLIENT_ERROR', message: `Local build service error: ${describeError(error)}` });
    } finally {
      this.signal.removeEventListener('abort', onAbort);
      await this.finish();
    }
  }

  private async phases(): Promise<void> {
    // PROVISIONING: the build's "container": its source directory and its role.
    if (!(await this.phase('PROVISIONING', () => this.provision()))) return;
    let buildspec: Buildspec | undefined;
    const downloaded = await this.phase('DOWNLOAD_SOURCE', async () => {
      const loaded = await this.loadBuildspec();
      if ('status' in loaded) return loaded;
      buildspec = loaded;
      return { status: 'SUCCEEDED' };
    });
    if (!downloaded || !buildspec) return;
    const spec = buildspec;

    this.session = ShellSession.start({
      shell: spec.shell,
      env: this.buildEnvironment(spec),
      cwd: this.state.srcDir,
      logPath: this.state.logFile,
      workDir: this.plan.sessionDir,
    });
    this.state.processGroup = this.session.pgid;
    this.state.changed();
    this.deps.logger.info({ event: 'build.shell-started', buildId: this.state.identity.id, processGroup: this.session.pgid, shell: spec.shell }, 'build shell started');
    if (this.signal.aborted && !this.termination) this.termination = terminateGroup(this.session.pgid, this.deps.stopGraceMs);

    let skipToFinalizing = false;
    for (const name of BUILDSPEC_PHASES) {
      if (skipToFinalizing) break;
      const type = COMMAND_PHASES[name];
      const phaseSpec = spec.phases[name] ?? { commands: [], finally: [], onFailure: undefined };
      const ok = await this.phase(type, () => this.runCommandPhase(type, phaseSpec), () => this.captureExported(spec));
      if (this.aborted) return;
      if (ok) continue;
      if (this.faulted || !this.session.isRunning) {
        skipToFinalizing = true;
      } else if (phaseSpec.onFailure === 'ABORT') {
        skipToFinalizing = true;
      } else if (phaseSpec.onFailure === undefined && (name === 'install' || name === 'pre_build')) {
        skipToFinalizing = true;
      }
      // BUILD failure: POST_BUILD still runs; POST_BUILD failure: on to UPLOAD_ARTIFACTS.
    }
    if (skipToFinalizing) return;
    await this.phase('UPLOAD_ARTIFACTS', async () => ({ status: 'SUCCEEDED' }));
  }

  /**
   * Runs one phase: start, body, end. False when the phase did not succeed (or the build
   * was aborted, which ends the phase with the abort's status).
   */
  private async phase(type: PhaseType, body: () => Promise<PhaseOutcome>, after?: () => void): Promise<boolean> {
    if (this.aborted) return false;
    this.state.startPhase(type, this.deps.now());
    this.log.container(`Entering phase ${type}`);
    const fault = this.state.plannedFailure;
    let outcome: PhaseOutcome;
    if (fault && fault.phase === type) {
      // An injected failure: the phase fails as told, its commands never run.
      outcome = { status: fault.status, context: { statusCode: fault.statusCode, message: fault.message } };
    } else {
      outcome = await body();
    }
    after?.();
    const abort = this.aborted;
    if (abort) return false;
    if (outcome.status === 'SUCCEEDED') {
      this.state.endPhase('SUCCEEDED', this.deps.now());
      this.log.container(`Phase complete: ${type} State: SUCCEEDED`);
      this.log.container('Phase context status code:  Message: ');
      return true;
    }
    if (outcome.status === 'FAULT') this.faulted = true;
    this.failed = true;
    this.state.endPhase(outcome.status, this.deps.now(), outcome.context);
    this.log.container(`Phase complete: ${type} State: ${outcome.status}`);
    this.log.container(`Phase context status code: ${outcome.context.statusCode} Message: ${outcome.context.message}`);
    this.deps.logger.info({ event: 'build.phase-failed', buildId: this.state.identity.id, phase: type, status: outcome.status, statusCode: outcome.context.statusCode }, 'build phase failed');
    return false;
  }

  private async provision(): Promise<PhaseOutcome> {
    if (this.plan.simulatedProvisioningMs > 0) {
      await this.simulatedDelay(this.plan.simulatedProvisioningMs);
      // Stopped or timed out while "provisioning": phase() ends the phase with that status.
      if (this.aborted) return { status: 'SUCCEEDED' };
    }
    await mkdir(this.state.srcDir, { recursive: true });
    await mkdir(this.plan.sessionDir, { recursive: true, mode: 0o700 });
    const roleArn = this.state.settings.serviceRole;
    if (this.deps.roleAssumer && roleArn !== undefined) {
      const sessionName = `AWSCodeBuild-${this.state.identity.uuid}`;
      try {
        const durationSeconds = Math.min(43_200, Math.max(900, this.state.settings.timeoutInMinutes * 60));
        this.credentials = await this.deps.roleAssumer.assumeRole(roleArn, sessionName, durationSeconds);
      } catch (error) {
        return { status: 'FAILED', context: { statusCode: 'CLIENT_ERROR', message: `CodeBuild is not authorized to perform: sts:AssumeRole on ${roleArn} (${describeError(error)})` } };
      }
      this.state.roleSessionName = sessionName;
      this.state.changed();
      this.deps.logger.info({ event: 'build.role-assumed', buildId: this.state.identity.id, roleArn, sessionName }, 'service role assumed');
    }
    const runner = this.plan.runnerRoot;
    if (runner) {
      try {
        const made = await buildHardLinkRoot({ sharedRoot: runner.installation, slotRoot: runner.root });
        this.deps.logger.info({ event: 'build.runner-root', buildId: this.state.identity.id, root: runner.root, files: made.files }, 'build runner root ready');
      } catch (error) {
        return { status: 'FAILED', context: { statusCode: 'CLIENT_ERROR', message: `cannot give the build its own runner root from ${runner.installation}: ${describeError(error)}` } };
      }
    }
    return { status: 'SUCCEEDED' };
  }

  /** Resolves after `ms` on the clock, or at once when the build is stopped or times out. */
  private simulatedDelay(ms: number): Promise<void> {
    return new Promise((resolve) => {
      if (this.signal.aborted) {
        resolve();
        return;
      }
      const onAbort = () => {
        cancel();
        resolve();
      };
      const cancel = this.deps.clock.setTimer(() => {
        this.signal.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      this.signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  private async loadBuildspec(): Promise<Buildspec | PhaseOutcome> {
    const source = this.plan.buildspec;
    let text: string;
    let name: string;
    if (source.kind === 'inline') {
      text = source.text;
      name = 'buildspecOverride';
    } else {
      name = source.path;
      try {
        text = await readFile(source.path, 'utf8');
      } catch (error) {
        return { status: 'FAILED', context: { statusCode: 'YAML_FILE_ERROR', message: `cannot read buildspec ${source.path}: ${(error as Error).message}` } };
      }
    }
    try {
      return parseBuildspec(text, name);
    } catch (error) {
      if (!isCbactionsError(error)) throw error;
      return { status: 'FAILED', context: { statusCode: 'YAML_FILE_ERROR', message: error.message.replace(/^YAML_FILE_ERROR: /, '') } };
    }
  }

  /** The image's environment, then the buildspec's, the project's, the overrides, CodeBuild's own. */
  private buildEnvironment(spec: Buildspec): Record<string, string> {
    const env: Record<string, string> = { ...this.deps.baseEnv, ...(this.plan.runnerRoot ? { [RUNNER_ROOT_VARIABLE]: this.plan.runnerRoot.root } : {}), ...spec.variables };
    for (const { name, value } of this.plan.variables) env[name] = value;
    Object.assign(env, this.plan.codebuildVariables, { CODEBUILD_BUILD_SUCCEEDING: '1' });
    if (this.credentials) {
      env.AWS_ACCESS_KEY_ID = this.credentials.accessKeyId;
      env.AWS_SECRET_ACCESS_KEY = this.credentials.secretAccessKey;
      env.AWS_SESSION_TOKEN = this.credentials.sessionToken;
      // The role's credentials are the build's identity: no profile may shadow them.
      delete env.AWS_PROFILE;
    }
    return env;
  }

  private async runCommandPhase(type: PhaseType, spec: BuildspecPhase): Promise<PhaseOutcome> {
    const session = this.session;
    if (!session) return { status: 'FAULT', context: { statusCode: 'CLIENT_ERROR', message: 'the build shell is not running' } };
    session.setVariable('CODEBUILD_BUILD_SUCCEEDING', this.failed ? '0' : '1');
    let failure: PhaseContext | undefined;
    // `commands` stop at the first failure; `finally` runs either way.
    for (const block of [spec.commands, spec.finally]) {
      for (const command of block) {
        if (this.aborted) return { status: 'SUCCEEDED' };
        this.log.container(`Running command ${command}`);
        const { exitCode } = await session.run(command);
        if (this.aborted) return { status: 'SUCCEEDED' };
        if (exitCode === 0) continue;
        const reason = exitCode === null ? 'the build shell was killed' : `exit status ${exitCode}`;
        this.log.container(`Command did not exit successfully ${command} ${reason}`);
        failure ??= { statusCode: 'COMMAND_EXECUTION_ERROR', message: `Error while executing command: ${command}. Reason: ${reason}` };
        if (exitCode === null) return { status: 'FAILED', context: failure };
        break;
      }
    }
    this.deps.logger.debug({ event: 'build.phase-commands-done', buildId: this.state.identity.id, phase: type }, 'phase commands done');
    return failure ? { status: 'FAILED', context: failure } : { status: 'SUCCEEDED' };
  }

  /**
   * Exported variables as they are at the end of the phase (settable from INSTALL through
   * POST_BUILD). Only variables that are set are reported: whether CodeBuild reports unset
   * ones (and how) is unverified, and a missing value is louder than an invented one.
   */
  private captureExported(spec: Buildspec): void {
    const session = this.session;
    if (!session || spec.exportedVariables.length === 0) return;
    const exported: { name: string; value: string }[] = [];
    for (const name of spec.exportedVariables) {
      const value = session.variable(name);
      if (value !== undefined) exported.push({ name, value });
    }
    this.state.exportedVariables = exported;
    this.state.changed();
  }

  /** The container is gone with the build: so is its runner root, but for the runner's logs. */
  private async removeRunnerRoot(): Promise<void> {
    const runner = this.plan.runnerRoot;
    if (!runner) return;
    try {
      await rename(join(runner.root, '_diag'), runner.keptDiag).catch((error: unknown) => {
        if ((error as { code?: unknown }).code !== 'ENOENT') throw error;
      });
      await rm(runner.root, { recursive: true, force: true });
    } catch (error) {
      this.deps.logger.warn({ event: 'build.runner-root-cleanup-failed', buildId: this.state.identity.id, root: runner.root, error: describeError(error) }, 'could not remove the build runner root');
    }
  }

  /** FINALIZING and COMPLETED, whatever happened: nothing of the build's process group survives it. */
  private async finish(): Promise<void> {
    const abort = this.aborted;
    const now = this.deps.now;
    if (abort && this.state.openPhase) {
      const type = this.state.openPhase.phaseType;
      this.state.endPhase(abort.status, now(), ABORT_CONTEXT[abort.status]);
      this.log.container(`Phase complete: ${type} State: ${abort.status}`);
      this.log.container(`Phase context status code: ${ABORT_CONTEXT[abort.status].statusCode} Message: ${ABORT_CONTEXT[abort.status].message}`);
    }
    this.state.startPhase('FINALIZING', now());
    this.log.container('Entering phase FINALIZING');
    const session = this.session;
    if (session) {
      session.endInput();
      if (this.termination) await this.termination;
      await killGroup(session.pgid);
      await Promise.race([session.exited, new Promise((resolve) => setTimeout(resolve, 5_000).unref())]);
    }
    await rm(this.plan.sessionDir, { recursive: true, force: true }).catch(() => undefined);
    await this.removeRunnerRoot();
    this.state.endPhase('SUCCEEDED', now());
    this.log.container('Phase complete: FINALIZING State: SUCCEEDED');
    this.state.startPhase('COMPLETED', now());
    const status: BuildStatus = abort ? abort.status : this.faulted ? 'FAULT' : this.failed ? 'FAILED' : 'SUCCEEDED';
    this.state.complete(status, now());
    this.deps.logger.info({ event: 'build.completed', buildId: this.state.identity.id, buildStatus: status }, 'build completed');
  }
}
