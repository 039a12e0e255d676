/**
 * The mux: pools of slots, each slot one Runner.Listener with its own ephemeral
 * registration, all sharing one runner installation. Start-up (shim, isolation, stale
 * registrations), supervision, drain on the stop signal, and the status endpoint.
 */
import { mkdir, realpath } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Config } from '../config/schema.js';
import type { ProbePreloadOptions, ProbePreloadResult } from '../preload/probe.js';
import { ExitCode } from '../protocol/exit-codes.js';
import { CbactionsError, describeError } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import type { CodeBuildApi } from '../dispatch/codebuild-api.js';
import type { Clock } from '../util/clock.js';
import { ElasticPool, type PoolCapacity } from './elastic-pool.js';
import { chooseIsolation, IsolationErrorCode, type IsolationChoice } from './isolation.js';
import { MuxMetrics } from './metrics.js';
import { JobMetrics } from './job-metrics.js';
import { isOwnRunnerName } from './naming.js';
import { cleanPreviousLife, type MuxJournal, type PreviousJournal } from './previous-life.js';
import type { RegisteredRunner, RunnerGroup, RunnerRegistry } from './runner-registry.js';
import { scopeWebUrl } from './scope.js';
import { ISOLATION_ENV_NAMES, prepareSlotLayout, type SlotLayout } from './slot-layout.js';
import { Slot, type SlotGate } from './slot.js';
import type { MuxStatus, PoolStatus } from './status-model.js';
import { startStatusServer, type StatusServer } from './status-server.js';
import { TaskProtection } from './task-protection.js';

/** Environment variables the mux sets for every listener (and so for the worker it starts). */
export const ListenerEnv = {
  Config: 'CBACTIONS_CONFIG',
  /** The runner root as this slot's listener sees it (the slot's own root under hard-link isolation). */
  RunnerRoot: 'CBACTIONS_RUNNER_ROOT',
  Pool: 'CBACTIONS_POOL',
  Slot: 'CBACTIONS_SLOT',
  WorkerLog: 'CBACTIONS_WORKER_LOG',
  /** Names this mux (ECS task ARN, else host + state dir); the worker puts it on every build it starts. */
  MuxInstance: 'CBACTIONS_MUX_INSTANCE',
  AllowRoot: 'RUNNER_ALLOW_RUNASROOT',
  VersionDeprecatedExitCode: 'ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_EXIT_CODE',
} as const;

/**
 * `ACTIONS_RUNNER_INPUT_<ARG>` stands in for any listener argument (`--jitconfig`, `--token`,
 * `--url`, …): only the mux decides those. Stray isolation variables are dropped too.
 */
const STRIPPED_ENV_PREFIX = 'ACTIONS_RUNNER_INPUT_';
const STRIPPED_ENV: readonly string[] = ISOLATION_ENV_NAMES;

export interface MuxDependencies {
  config: Config;
  /** Absolute path of the config file (given to listeners as CBACTIONS_CONFIG). */
  configPath: string;
  registry: RunnerRegistry;
  logger: Logger;
  /** The mux's environment, inherited by listeners (minus secrets and runner inputs). */
  env: NodeJS.ProcessEnv;
  /** Names of variables holding secrets the config reads; never passed to listeners. */
  secretEnvNames: string[];
  hostname: string;
  isRoot: boolean;
  /** `ECS_AGENT_URI`, when on ECS. */
  ecsAgentUri: string | undefined;
  /** The default preload.so when `mux.preloadPath` is not set; asked only when a probe is due. */
  defaultPreloadPath: () => string;
  probePreload: (options: ProbePreloadOptions) => Promise<ProbePreloadResult>;
  /**
   * `listener-launcher` (dist/preload/): every listener runs through it and dies with the mux.
   * Only in-process tests leave it out (their listeners are the test's own children).
   */
  listenerLauncher?: string;
  /** Installs the Runner.Worker shim (src/worker/install.ts) into the runner root. */
  installWorkerShim: (runnerRoot: string) => Promise<{ shimPath: string; keptOriginal?: string }>;
  /**
   * What survives a hard death (previous-life.ts): the journal the previous mux on this state
   * directory left (read while holding the state lock), how to open this life's, and the
   * CodeBuild client to stop the previous life's builds with. Absent: no journal is kept.
   */
  lifecycle?: {
    previous: PreviousJournal;
    open: () => MuxJournal;
    builds?: Pick<CodeBuildApi, 'getBuilds' | 'stopBuild'>;
  };
  /** `CBACTIONS_MUX_INSTANCE` for listeners and workers. */
  instance?: string;
  /**
   * The standby builds of warm pools (standby-pool.ts): started once the previous life is
   * cleaned up (so they are journaled), closed when the drain begins and at exit.
   */
  standbys?: { start(): void; close(): Promise<void>; list(): { pool: string; state: string }[] };
  fetchImpl?: typeof fetch;
  random?: () => number;
  /** Time for the pools' cool-downs (default: the system clock). */
  clock?: Clock;
}

export const MuxErrorCode = {
  RunnerRoot: 'MUX_RUNNER_ROOT',
  /** dist/preload/listener-launcher is not built. */
  LauncherMissing: 'MUX_LAUNCHER_MISSING',
} as const;

interface PoolRuntime {
  name: string;
  labels: string[];
  elastic: ElasticPool;
  stop: AbortController;
  stopped: PoolStatus['stopped'];
}

export class Mux {
  readonly metrics: MuxMetrics;
  /** Start latency and cost per job and per standby build (`/metrics` and CloudWatch). */
  readonly jobMetrics: JobMetrics;
  #pools: PoolRuntime[] = [];
  /** Slot directories by slot id, made once: a slot index comes and goes with the pool's size. */
  #layouts = new Map<string, Promise<SlotLayout>>();
  #isolation: IsolationChoice | undefined;
  #draining = false;
  #startedAt = new Date();
  #protection: TaskProtection;
  #statusServer: StatusServer | undefined;
  #registrations = new Map<number, string>();
  #journal: MuxJournal | undefined;
  readonly #log: Logger;

  constructor(private readonly deps: MuxDependencies) {
    this.#log = deps.logger;
    this.metrics = new MuxMetrics(
      () => this.#slots.map((slot) => ({ pool: slot.pool, state: slot.state })),
      () => this.capacity(),
    );
    this.jobMetrics = new JobMetrics(this.metrics, deps.logger, deps.config.pricing);
    const standbys = deps.standbys;
    if (standbys) this.metrics.trackStandbys(() => standbys.list());
    this.#protection = new TaskProtection({
      agentUri: deps.ecsAgentUri,
      expiresInMinutes: deps.config.mux.taskProtectionMinutes,
      logger: deps.logger,
      fetchImpl: deps.fetchImpl,
      onChange: (enabled) => this.metrics.taskProtection.set(enabled ? 1 : 0),
    });
  }

  /** Every slot of every pool, now (pools grow and shrink). */
  get #slots(): Slot[] {
    return this.#pools.flatMap((pool) => pool.elastic.slots());
  }

  /** Live counts and targets per pool (contracts.md: the demand signal elastic-infra publishes). */
  capacity(): PoolCapacity[] {
    return this.#pools.map((pool) => pool.elastic.capacity());
  }

  /** URL of the status endpoint once started. */
  get statusUrl(): string | undefined {
    return this.#statusServer?.url;
  }

  /**
   * The hook the build watcher feeds: `slotId` is the listener's CBACTIONS_SLOT, `buildId`
   * the CodeBuild build running that slot's job (null to clear). Cleared automatically
   * when the job ends. False when no such slot is running a job.
   */
  setSlotBuild(slotId: string, buildId: string | null): boolean {
    const slot = this.#slots.find((candidate) => candidate.id === slotId);
    return slot ? slot.setBuild(buildId) : false;
  }

  /** The slot a dispatch connection names (its listener's CBACTIONS_SLOT), while the mux runs it. */
  dispatchSlot(slotId: string): { pool: string; configDir: string } | undefined {
    const slot = this.#slots.find((candidate) => candidate.id === slotId);
    return slot && slot.state !== 'stopped' ? { pool: slot.pool, configDir: slot.configDir } : undefined;
  }

  /** The watcher saw a worker start `buildId`: journaled, so a next life can stop it if this one dies. */
  recordBuild(buildId: string, slotId: string | undefined): void {
    this.#journal?.addBuild({ buildId, ...(slotId ? { slot: slotId } : {}) });
  }

  /** The build ended (or was stopped as an orphan). */
  forgetBuild(buildId: string): void {
    this.#journal?.removeBuild(buildId);
  }

  status(): MuxStatus {
    return {
      host: this.deps.hostname,
      startedAt: this.#startedAt.toISOString(),
      draining: this.#draining,
      isolation: this.#isolation ? { kind: this.#isolation.kind, reason: this.#isolation.reason } : { kind: 'pending', reason: 'starting' },
      registration: this.deps.config.github.registration,
      taskProtection: { available: this.#protection.available, enabled: this.#protection.enabled },
      pools: this.#pools.map((pool) => {
        const { pool: _name, ...capacity } = pool.elastic.capacity();
        return { name: pool.name, labels: pool.labels, slots: pool.elastic.slots().length, stopped: pool.stopped, capacity, coolDownSeconds: pool.elastic.settings.coolDownMs / 1000 };
      }),
      slots: this.#slots.map((slot) => slot.status()),
    };
  }

  /**
   * Runs until `signal` aborts (then drains) or every pool has stopped. Returns the exit
   * code: 0 after a clean drain, 1 when the drain timed out or all pools were stopped.
   */
  async run(signal: AbortSignal): Promise<number> {
    const { config } = this.deps;
    const runnerRoot = await this.#runnerRoot();
    if (config.mux.installWorkerShim) {
      const installed = await this.deps.installWorkerShim(runnerRoot);
      this.#log.info({ event: 'mux.worker-shim-installed', shimPath: installed.shimPath, keptOriginal: installed.keptOriginal });
    }
    const stateDir = resolve(config.mux.stateDir);
    await mkdir(join(stateDir, 'logs'), { recursive: true });
    await this.#cleanPreviousLife(stateDir, signal);
    this.#isolation = await this.#chooseIsolation(runnerRoot, stateDir);
    const runnerGroup = await this.#runnerGroup(signal);
    await this.#removeStaleRegistrations(signal);
    await this.#createSlots(runnerRoot, stateDir, runnerGroup);
    this.#statusServer = await startStatusServer({ host: config.mux.statusHost, port: config.mux.statusPort, status: () => this.status(), metrics: this.metrics.registry, logger: this.#log });
    this.deps.standbys?.start();
    this.#log.info({
      event: 'mux.started',
      statusUrl: this.#statusServer.url,
      pools: this.#pools.map((pool) => ({ name: pool.name, idle: pool.elastic.settings.idle, max: pool.elastic.settings.max, prepared: pool.elastic.settings.prepared, labels: pool.labels })),
      isolation: this.#isolation.kind,
    });

    let exitCode: number = ExitCode.Ok;
    try {
      const running = this.#pools.map((pool) => pool.elastic.run(AbortSignal.any([signal, pool.stop.signal])));
      const allDone = Promise.all(running);
      const aborted = new Promise<'abort'>((resolveAbort) => {
        if (signal.aborted) resolveAbort('abort');
        else signal.addEventListener('abort', () => resolveAbort('abort'), { once: true });
      });
      const first = await Promise.race([allDone.then(() => 'done' as const), aborted]);
      if (first === 'abort') {
        exitCode = await this.#drain(allDone);
      } else {
        this.#log.error({ event: 'mux.all-pools-stopped', pools: this.#pools.map((pool) => ({ name: pool.name, reason: pool.stopped?.reason })) });
        exitCode = ExitCode.InfrastructureFailure;
      }
    } catch (error) {
      // A bug, not a listener's fault: stop every listener (own process groups would
      // outlive us) before main reports the error.
      this.#log.fatal({ event: 'mux.crashed', error: describeError(error) });
      await Promise.all(this.#slots.map((slot) => slot.forceStop()));
      throw error;
    } finally {
      await this.deps.standbys?.close().catch((error: unknown) => this.#log.error({ event: 'mux.standby-close-failed', error: describeError(error) }));
      await this.#removeRemainingRegistrations();
      await this.#protection.close();
      await this.#statusServer.close();
    }
    this.#log.info({ event: 'mux.stopped', exitCode });
    return exitCode;
  }

  async #drain(allDone: Promise<unknown>): Promise<number> {
    this.#draining = true;
    const timeoutMs = this.deps.config.mux.drainTimeoutSeconds * 1000;
    const busy = this.#slots.filter((slot) => slot.busy).map((slot) => slot.id);
    this.#log.info({ event: 'mux.drain-started', busySlots: busy, timeoutSeconds: this.deps.config.mux.drainTimeoutSeconds });
    // Waiting standbys have no job to finish: they go first (bounded), while busy slots drain.
    const standbysClosed = this.deps.standbys?.close().catch((error: unknown) => this.#log.error({ event: 'mux.standby-close-failed', error: describeError(error) }));
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolveTimeout) => {
      timer = setTimeout(() => resolveTimeout('timeout'), timeoutMs);
    });
    const outcome = await Promise.race([allDone.then(() => 'done' as const), timedOut]);
    clearTimeout(timer);
    await standbysClosed;
    if (outcome === 'done') {
      this.#log.info({ event: 'mux.drain-finished' });
      return ExitCode.Ok;
    }
    const stillBusy = this.#slots.filter((slot) => slot.state !== 'stopped').map((slot) => slot.id);
    this.#log.error({ event: 'mux.drain-timeout', slots: stillBusy, timeoutSeconds: this.deps.config.mux.drainTimeoutSeconds });
    await Promise.all(this.#slots.map((slot) => slot.forceStop()));
    await allDone;
    return ExitCode.InfrastructureFailure;
  }

  /**
   * Before any slot starts: what a previous mux on this state directory left when it died
   * hard (its builds, registrations, slot files) goes, then this life's journal begins. The
   * old journal is replaced only after the cleanup, so dying during it loses nothing.
   */
  async #cleanPreviousLife(stateDir: string, signal: AbortSignal): Promise<void> {
    const lifecycle = this.deps.lifecycle;
    if (!lifecycle) return;
    const { previous } = lifecycle;
    if (previous.kind === 'corrupt') {
      this.#log.warn({ event: 'mux.previous-life-unreadable', reason: previous.reason }, 'ignoring the journal a previous mux left; its builds end through their job lease');
    } else if (previous.kind === 'found') {
      const { journal } = previous;
      const { counts, leftovers } = await cleanPreviousLife({ stateDir, journal, registry: this.deps.registry, ...(lifecycle.builds ? { builds: lifecycle.builds } : {}), logger: this.#log, signal });
      this.#log.info({ event: 'mux.previous-life-cleaned', instance: journal.instance, pid: journal.pid, registrations: journal.registrations.length, builds: journal.builds.length, ...counts });
      this.#journal = lifecycle.open();
      // Not undone yet: this life's exit sweep retries the registrations, and its journal keeps both for the next.
      for (const registration of leftovers.registrations) {
        this.#registrations.set(registration.runnerId, registration.name);
        this.#journal.addRegistration(registration);
      }
      for (const build of leftovers.builds) this.#journal.addBuild(build);
      return;
    }
    this.#journal = lifecycle.open();
  }

  async #runnerRoot(): Promise<string> {
    const configured = resolve(this.deps.config.mux.runnerRoot);
    try {
      // preload.so compares canonical paths: give it the root without symlinks.
      return await realpath(configured);
    } catch (error) {
      throw new CbactionsError(MuxErrorCode.RunnerRoot, `mux.runnerRoot: ${configured} is not usable: ${describeError(error)}`, { cause: error });
    }
  }

  async #chooseIsolation(runnerRoot: string, stateDir: string): Promise<IsolationChoice> {
    const { mux } = this.deps.config;
    let preloadPath: string | undefined;
    let missing: string | undefined;
    if (mux.isolation !== 'hardlink') {
      try {
        preloadPath = resolve(mux.preloadPath ?? this.deps.defaultPreloadPath());
      } catch (error) {
        missing = `no preload.so: ${describeError(error)}`;
      }
    }
    const choice =
      missing === undefined
        ? await chooseIsolation({ mode: mux.isolation, preloadPath: preloadPath ?? '', runnerRoot, workDir: join(stateDir, 'probe'), probe: this.deps.probePreload })
        : mux.isolation === 'preload'
          ? { kind: 'fail' as const, reason: `mux.isolation is "preload" but there is ${missing}` }
          : { kind: 'hardlink' as const, reason: `falling back to per-slot hard-link roots: ${missing}` };
    if (choice.kind === 'fail') throw new CbactionsError(IsolationErrorCode.PreloadUnusable, choice.reason);
    if (choice.kind === 'preload') this.#log.info({ event: 'mux.isolation-chosen', isolation: 'preload', preloadPath: choice.preloadPath, reason: choice.reason });
    else this.#log.warn({ event: 'mux.isolation-chosen', isolation: 'hardlink', reason: choice.reason });
    return choice;
  }

  async #runnerGroup(signal: AbortSignal): Promise<RunnerGroup> {
    const group = await this.deps.registry.findRunnerGroup(this.deps.config.github.runnerGroup, { signal });
    this.#log.info({ event: 'mux.runner-group-resolved', runnerGroup: group.name, runnerGroupId: group.id });
    return group;
  }

  /** Runners named as this host names them for its pools. */
  async #ownRunners(signal?: AbortSignal): Promise<RegisteredRunner[] | undefined> {
    const { config } = this.deps;
    const pools = config.pools.map((pool) => pool.name);
    try {
      const runners = await this.deps.registry.listRunners({ signal });
      return runners.filter((runner) => isOwnRunnerName(runner.name, config.github.namePrefix, this.deps.hostname, pools));
    } catch (error) {
      this.#log.warn({ event: 'mux.registrations-list-failed', error: describeError(error) });
      return undefined;
    }
  }

  async #deleteAll(runners: RegisteredRunner[], event: string, signal?: AbortSignal): Promise<void> {
    for (const runner of runners) {
      try {
        await this.deps.registry.deleteRunner(runner.id, { signal });
        this.#registrations.delete(runner.id);
        this.#journal?.removeRegistration(runner.id);
        this.#log.info({ event, runner: runner.name, runnerId: runner.id, status: runner.status });
      } catch (error) {
        this.#log.warn({ event: `${event}-failed`, runner: runner.name, runnerId: runner.id, error: describeError(error) });
      }
    }
  }

  /**
   * Offline registrations named like this host's, left by an earlier life of this
   * container (online ones might belong to a listener still running elsewhere under the
   * same host name, so they are left alone).
   */
  async #removeStaleRegistrations(signal: AbortSignal): Promise<void> {
    const own = await this.#ownRunners(signal);
    if (own) await this.#deleteAll(own.filter((runner) => runner.status === 'offline'), 'mux.stale-registration-removed', signal);
  }

  #listenerEnv(pool: string, slotId: string, stateDir: string, root: string): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = { ...this.deps.env };
    for (const name of Object.keys(env)) if (name.startsWith(STRIPPED_ENV_PREFIX)) delete env[name];
    for (const name of [...STRIPPED_ENV, ...this.deps.secretEnvNames]) delete env[name];
    if (this.#isolation?.kind === 'preload') delete env.LD_PRELOAD; // merged into the preload variables instead
    env[ListenerEnv.Config] = this.deps.configPath;
    env[ListenerEnv.RunnerRoot] = root;
    env[ListenerEnv.Pool] = pool;
    env[ListenerEnv.Slot] = slotId;
    env[ListenerEnv.WorkerLog] = join(stateDir, 'logs', `${slotId}.worker.log`);
    env[ListenerEnv.VersionDeprecatedExitCode] = '1';
    if (this.deps.instance) env[ListenerEnv.MuxInstance] = this.deps.instance;
    else delete env[ListenerEnv.MuxInstance];
    if (this.deps.isRoot) env[ListenerEnv.AllowRoot] = '1';
    return env;
  }

  async #createSlots(runnerRoot: string, stateDir: string, runnerGroup: RunnerGroup): Promise<void> {
    const { config } = this.deps;
    const isolation = this.#isolation as IsolationChoice;
    const scope = config.github.scope;
    for (const poolConfig of config.pools) {
      const stop = new AbortController();
      const runtime: Partial<PoolRuntime> = { name: poolConfig.name, labels: poolConfig.labels, stop, stopped: null };
      const createSlot = async (index: number, gate: SlotGate): Promise<Slot> => {
        const slotId = `${poolConfig.name}-${index}`;
        let layout = this.#layouts.get(slotId);
        if (!layout) {
          layout = prepareSlotLayout({ slotId, runnerRoot, stateDir, isolation, inheritedLdPreload: this.deps.env.LD_PRELOAD });
          this.#layouts.set(slotId, layout);
          layout.catch(() => this.#layouts.delete(slotId));
        }
        const slotLayout = await layout;
        const slot: Slot = new Slot({
          pool: poolConfig.name,
          labels: poolConfig.labels,
          index,
          layout: slotLayout,
          registry: this.deps.registry,
          registration: {
            mode: config.github.registration,
            namePrefix: config.github.namePrefix,
            hostname: this.deps.hostname,
            runnerGroup,
            passRunnerGroup: !('repository' in scope),
            configUrl: scopeWebUrl(config.github.url, scope),
          },
          env: this.#listenerEnv(poolConfig.name, slotId, stateDir, slotLayout.root),
          backoff: {
            initialMs: config.mux.listenerBackoff.initialMs,
            maxMs: config.mux.listenerBackoff.maxMs,
            healthyAfterMs: config.mux.listenerBackoff.healthyAfterSeconds * 1000,
          },
          stopGraceMs: config.mux.listenerStopTimeoutSeconds * 1000,
          ...(this.deps.listenerLauncher ? { launcher: this.deps.listenerLauncher } : {}),
          logger: this.#log,
          metrics: this.metrics,
          onChange: () => {
            this.#protection.setDesired(this.#slots.some((candidate) => candidate.busy));
            elastic.slotChanged(slot);
          },
          onRegistered: (runnerId, name) => {
            this.#registrations.set(runnerId, name);
            this.#journal?.addRegistration({ runnerId, name, slot: slotId });
          },
          onReleased: (runnerId) => {
            this.#registrations.delete(runnerId);
            this.#journal?.removeRegistration(runnerId);
          },
          onStopPool: (reason) => this.#stopPool(runtime as PoolRuntime, reason),
          gate,
          random: this.deps.random,
        });
        return slot;
      };
      const elastic = new ElasticPool({
        name: poolConfig.name,
        settings: { idle: poolConfig.idle, max: poolConfig.max, prepared: poolConfig.prepared, coolDownMs: poolConfig.coolDownSeconds * 1000 },
        createSlot,
        logger: this.#log,
        metrics: this.metrics,
        ...(this.deps.clock ? { clock: this.deps.clock } : {}),
      });
      runtime.elastic = elastic;
      this.#pools.push(runtime as PoolRuntime);
    }
  }

  /** An alert: the pool's slots stop (busy ones after their job) and stay stopped until a person acts. */
  #stopPool(pool: PoolRuntime, reason: string): void {
    if (pool.stopped) return;
    pool.stopped = { reason, at: new Date().toISOString() };
    this.metrics.poolStopped.set({ pool: pool.name }, 1);
    this.#log.fatal({ event: 'mux.pool-stopped', pool: pool.name, reason, alert: true });
    pool.stop.abort();
  }

  /**
   * At exit every slot has stopped: remove the registrations the slots failed to delete,
   * and offline ones named like this host's — an interrupted generate-jitconfig may have
   * created a runner whose id never reached us. As at start-up, online ones that are not
   * ours are left alone.
   */
  async #removeRemainingRegistrations(): Promise<void> {
    const tracked = [...this.#registrations].map(([id, name]) => ({ id, name, status: 'unknown', busy: false, labels: [] }));
    await this.#deleteAll(tracked, 'mux.registration-removed');
    const own = await this.#ownRunners();
    const leftovers = (own ?? []).filter((runner) => runner.status === 'offline' && !tracked.some((entry) => entry.id === runner.id));
    if (leftovers.length > 0) await this.#deleteAll(leftovers, 'mux.leftover-registration-removed');
  }
}
