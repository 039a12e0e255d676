/**
 * One slot: obtain an ephemeral registration, supervise one Runner.Listener with it, and
 * start again when it exits — per the exit-code policy, with backoff, never a hot loop.
 *
 * Registration files are written by the mux, and the listener runs `run` without
 * `--jitconfig`. Why not re-encode the JIT config and pass it on: argv is world-readable
 * in /proc/<pid>/cmdline and the variable ACTIONS_RUNNER_INPUT_JITCONFIG would be inherited by
 * every process the listener starts (worker, hooks), and the config holds the runner's
 * RSA private key. Writing the files (mode 0600, into the slot's own directory) keeps the
 * key out of both, enforces `disableUpdate`/`ephemeral` in exactly the bytes the listener
 * reads, and is the same for preload and hard-link isolation and for the token flow.
 */
import { CbactionsError, describeError } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { sleep } from '../util/backoff.js';
import { decideAfterExit, type ExitAction } from './exit-policy.js';
import { enforceRunnerSettings, prepareJitFiles, type RegistrationFiles } from './jit-config.js';
import { ListenerProcess, type ListenerExitInfo } from './listener-process.js';
import type { MuxMetrics } from './metrics.js';
import { randomSuffix, runnerName } from './naming.js';
import { RestartBackoff, type RestartBackoffPolicy } from './restart-backoff.js';
import { RegistryErrorCode, type RunnerGroup, type RunnerRegistry } from './runner-registry.js';
import { clearRegistrationFiles, readRegistrationFiles, writeRegistrationFiles, type SlotLayout } from './slot-layout.js';
import type { SlotState, SlotStatus } from './status-model.js';

export const SlotErrorCode = {
  ConfigureFailed: 'MUX_CONFIGURE_FAILED',
} as const;

/** The listener's own lines (actions/runner JobDispatcher.cs), after its "<utc>: " prefix. */
const RUNNING_JOB = /Running job: (.*)$/;
/** Printed once the session is open and the listener polls (actions/runner Runner.cs). */
const LISTENING = /Listening for Jobs/;
const JOB_COMPLETED = /Job (.*) completed with result: (\w+)/;
const WORK_FOLDER = '_work';
const CONFIGURE_TIMEOUT_MS = 120_000;
const MAX_LOGGED_LINE = 500;

/** How one listener run ended. */
interface ListenerOutcome {
  exit: ListenerExitInfo;
  jobStarted: boolean;
  durationMs: number;
  /** The mux stopped it (drain, pool stop): not an exit to react to. */
  stoppedByMux: boolean;
}

export interface Registration {
  runnerId: number;
  name: string;
  files: RegistrationFiles;
}

export interface SlotRegistrationSettings {
  mode: 'jit' | 'token';
  namePrefix: string;
  hostname: string;
  runnerGroup: RunnerGroup;
  /** Send `--runnergroup` to configure (organization and enterprise scopes). */
  passRunnerGroup: boolean;
  /** `config.sh --url` (token flow). */
  configUrl: string;
}

/**
 * How a slot's pool decides its capacity (elastic-pool.ts). Without a gate a slot always
 * re-registers and starts its listener at once: the fixed pool.
 */
export interface SlotGate {
  /** Before each new registration: false ends the slot (the pool has enough without it). */
  shouldRegister(slot: Slot): boolean;
  /**
   * A fresh registration, listener not started (`prepared`: offline, so GitHub assigns it no
   * job): resolves when the pool wants it listening, or when `stop` aborts.
   */
  waitForStart(slot: Slot, stop: AbortSignal): Promise<void>;
}

export interface SlotOptions {
  pool: string;
  labels: string[];
  index: number;
  layout: SlotLayout;
  registry: RunnerRegistry;
  registration: SlotRegistrationSettings;
  /** The listener's environment apart from the isolation variables (already merged in). */
  env: NodeJS.ProcessEnv;
  backoff: RestartBackoffPolicy;
  stopGraceMs: number;
  /** Every listener (and `configure`) runs through it, so none outlives the mux (listener-process.ts). */
  launcher?: string;
  logger: Logger;
  metrics: MuxMetrics;
  /** Called on every state change (task protection, metrics). */
  onChange: () => void;
  /** Told when a registration was created / is gone, so the mux can clean up at exit. */
  onRegistered: (runnerId: number, name: string) => void;
  onReleased: (runnerId: number) => void;
  /** The pool must stop: a person has to act. */
  onStopPool: (reason: string) => void;
  gate?: SlotGate;
  random?: () => number;
}

export class Slot {
  readonly id: string;
  #state: SlotState = 'registering';
  #since = new Date();
  #registration: Registration | undefined;
  #listener: ListenerProcess | undefined;
  #job: string | null = null;
  #jobStarted = false;
  #jobResult: string | undefined;
  #buildId: string | null = null;
  #restarts = 0;
  #lastExit: SlotStatus['lastExit'] = null;
  #backoffMs: number | null = null;
  #stopping = false;
  /** Retired by its pool: the registration is already deleted; the slot ends. */
  readonly #retire = new AbortController();
  #retiring = false;
  #registrationGone = false;
  readonly #backoff: RestartBackoff;
  readonly #log: Logger;

  constructor(private readonly options: SlotOptions) {
    this.id = options.layout.slotId;
    this.#backoff = new RestartBackoff(options.backoff, options.random);
    this.#log = options.logger.child({ pool: options.pool, slot: this.id });
  }

  get state(): SlotState {
    return this.#state;
  }

  get pool(): string {
    return this.options.pool;
  }

  /** Where the slot's runner settings (`.runner`, `.credentials`) are written. */
  get configDir(): string {
    return this.options.layout.configDir;
  }

  get index(): number {
    return this.options.index;
  }

  /** The runner id of the registration the slot holds (prepared or listening), if any. */
  get runnerId(): number | undefined {
    return this.#registration?.runnerId;
  }

  /** Its pool retired it (or is retiring it): it takes no new start. */
  get retiring(): boolean {
    return this.#retiring;
  }

  /** A job runs (or is finishing while the mux stops): such a slot holds task protection. */
  get busy(): boolean {
    return this.#state === 'busy' || this.#state === 'draining';
  }

  status(): SlotStatus {
    return {
      id: this.id,
      pool: this.options.pool,
      index: this.options.index,
      state: this.#state,
      since: this.#since.toISOString(),
      runnerName: this.#registration?.name ?? null,
      runnerId: this.#registration?.runnerId ?? null,
      job: this.#job,
      buildId: this.#buildId,
      restarts: this.#restarts,
      lastExit: this.#lastExit,
      listenerPid: this.#listener?.pid ?? null,
      backoffMs: this.#state === 'backing-off' ? this.#backoffMs : null,
    };
  }

  /** The hook for the build watcher: which CodeBuild build runs this slot's job. */
  setBuild(buildId: string | null): boolean {
    if (buildId !== null && !this.busy) return false;
    this.#buildId = buildId;
    this.options.onChange();
    return true;
  }

  #setState(state: SlotState): void {
    if (state === this.#state) return;
    this.#state = state;
    this.#since = new Date();
    this.#log.debug({ event: 'mux.slot-state', state });
    this.options.onChange();
  }

  /**
   * Busy means a job may be running, and the listener must not be signalled: on SIGTERM it
   * would cancel the job. Two independent signs, either suffices: the listener printed
   * "Running job:" (it does so before it starts the worker, so there is no gap), or a
   * process in its group has the worker's argv `spawnclient R W` (covers a listener whose
   * output we failed to parse).
   */
  #isBusy(listener: ListenerProcess): boolean {
    return this.#jobStarted || listener.hasWorker();
  }

  /** Runs until `stop` aborts (drain or pool stop) and the slot is idle, or the pool is stopped. */
  async run(outerStop: AbortSignal): Promise<void> {
    const stop = AbortSignal.any([outerStop, this.#retire.signal]);
    try {
      while (!stop.aborted && !this.#stopping) {
        let fresh = false;
        if (!this.#registration) {
          if (this.options.gate && !this.options.gate.shouldRegister(this)) break;
          fresh = true;
          this.#setState('registering');
          try {
            this.#registration = await this.#register(stop);
          } catch (error) {
            if (stop.aborted) break;
            this.options.metrics.registrationErrors.inc({ pool: this.options.pool });
            this.#log.warn({ event: 'mux.registration-failed', error: describeError(error), code: (error as { code?: unknown }).code });
            await this.#pause(stop);
            continue;
          }
        }
        if (fresh && this.options.gate) {
          this.#setState('prepared');
          await this.options.gate.waitForStart(this, stop);
          if (stop.aborted || this.#stopping) break;
        }
        let outcome: ListenerOutcome;
        try {
          outcome = await this.#runListener(this.#registration, stop);
        } catch (error) {
          // The registration files could not be written (disk full, permissions): keep the
          // registration, back off, try again; never let one slot take the mux down.
          if (stop.aborted) break;
          this.#log.error({ event: 'mux.listener-start-failed', runner: this.#registration.name, error: describeError(error) });
          await this.#pause(stop);
          continue;
        }
        if (outcome.stoppedByMux) break;
        const action = this.#handleExit(outcome.exit, outcome.jobStarted, outcome.durationMs);
        if (action.kind === 'stop-pool') {
          await this.#release();
          this.options.onStopPool(action.reason);
          break;
        }
        if (action.kind === 'reregister') await this.#release({ consumed: action.consumed });
        if (stop.aborted) break;
        if (action.backoff) await this.#pause(stop);
      }
    } finally {
      await this.#release();
      this.#setState('stopped');
    }
  }

  /**
   * The pool has more than it needs: end this slot if it is idle or prepared. The registration
   * is deleted FIRST: from then on GitHub assigns it no job, and a job it was assigned in the
   * meantime makes GitHub refuse the delete (a busy runner), so the slot stays. Only then is
   * the listener stopped — by the same path as a drain, which never signals a busy listener.
   * False when the slot was not idle, is already retiring, or the delete failed.
   */
  async retire(reason: string): Promise<boolean> {
    const registration = this.#registration;
    if (this.#retiring || !registration || (this.#state !== 'idle' && this.#state !== 'prepared')) return false;
    this.#retiring = true;
    try {
      await this.options.registry.deleteRunner(registration.runnerId);
    } catch (error) {
      this.#retiring = false;
      this.#log.info({ event: 'mux.retire-refused', runner: registration.name, runnerId: registration.runnerId, reason, code: (error as { code?: unknown }).code, error: describeError(error) });
      return false;
    }
    this.#registrationGone = true;
    this.options.onReleased(registration.runnerId);
    this.options.metrics.listenersRetired.inc({ pool: this.options.pool, reason });
    this.#log.info({ event: 'mux.slot-retired', runner: registration.name, runnerId: registration.runnerId, reason, state: this.#state });
    this.#retire.abort();
    return true;
  }

  /** Drain deadline passed: stop the listener even though a job runs. */
  async forceStop(): Promise<void> {
    this.#stopping = true;
    const listener = this.#listener;
    if (listener) {
      this.#log.warn({ event: 'mux.listener-force-stop', runner: this.#registration?.name, job: this.#job });
      await listener.stop(this.options.stopGraceMs);
    }
  }

  #handleExit(exit: ListenerExitInfo, jobStarted: boolean, durationMs: number): ExitAction {
    this.#restarts += 1;
    const exitCode = exit.code !== null ? String(exit.code) : (exit.signal ?? 'unknown');
    this.#lastExit = { code: exit.code, signal: exit.signal, at: new Date().toISOString() };
    this.options.metrics.listenerRestarts.inc({ pool: this.options.pool, exit_code: exitCode });
    this.#backoff.observeRun(durationMs, jobStarted);
    const action = decideAfterExit({ code: exit.code, signal: exit.signal, jobStarted });
    // `expected`: the normal end of an ephemeral runner (exit 0 after its job). Alarms count the rest.
    const expected = action.kind === 'reregister' && !action.backoff;
    const record = { event: 'mux.listener-exited', runner: this.#registration?.name, code: exit.code, signal: exit.signal, spawnError: exit.spawnError, jobStarted, durationMs, action: action.kind, reason: action.reason, expected };
    if (action.kind === 'stop-pool') this.#log.error(record);
    else if (action.kind === 'reregister' && !action.backoff) this.#log.info(record);
    else this.#log.warn(record);
    return action;
  }

  async #pause(stop: AbortSignal): Promise<void> {
    const delay = this.#backoff.next();
    this.#backoffMs = delay;
    this.#setState('backing-off');
    this.#log.info({ event: 'mux.backing-off', delayMs: delay, attempt: this.#backoff.attempt });
    await sleep(delay, stop).catch(() => undefined);
    this.#backoffMs = null;
  }

  #listenerEnv(): NodeJS.ProcessEnv {
    return { ...this.options.env, ...this.options.layout.env };
  }

  async #register(stop: AbortSignal): Promise<Registration> {
    const { registration: settings, registry, layout } = this.options;
    const name = runnerName({ prefix: settings.namePrefix, hostname: settings.hostname, pool: this.options.pool, slot: this.options.index, suffix: randomSuffix() });
    await clearRegistrationFiles(layout.configDir);
    if (settings.mode === 'jit') {
      const jit = await registry.generateJitConfig({ name, labels: this.options.labels, runnerGroupId: settings.runnerGroup.id, workFolder: WORK_FOLDER }, { signal: stop });
      this.options.onRegistered(jit.runner.id, jit.runner.name);
      let prepared: ReturnType<typeof prepareJitFiles>;
      try {
        prepared = prepareJitFiles(jit.encodedJitConfig);
      } catch (error) {
        await this.#deleteRunner(jit.runner.id, jit.runner.name);
        throw error;
      }
      this.#log.info({ event: 'mux.registered', flow: 'jit', runner: jit.runner.name, runnerId: jit.runner.id, enforced: prepared.changed });
      return { runnerId: jit.runner.id, name: jit.runner.name, files: prepared.files };
    }
    const { token } = await registry.createRegistrationToken({ signal: stop });
    const args = ['configure', '--unattended', '--url', settings.configUrl, '--token', token, '--name', name, '--labels', this.options.labels.join(',')];
    if (settings.passRunnerGroup) args.push('--runnergroup', settings.runnerGroup.name);
    args.push('--work', WORK_FOLDER, '--ephemeral', '--disableupdate', '--replace');
    // The token is on argv as config.sh takes it; it is short-lived and can only register runners.
    const configure = ListenerProcess.start({
      file: layout.listenerPath,
      ...(this.options.launcher ? { launcher: this.options.launcher } : {}),
      args,
      cwd: layout.root,
      env: this.#listenerEnv(),
      onLine: (stream, line) => this.#log.info({ event: 'mux.configure-output', stream, line: line.split(token).join('[redacted]').slice(0, MAX_LOGGED_LINE) }),
    });
    const onAbort = () => void configure.stop(this.options.stopGraceMs);
    // The stop may have come while the token was on its way: its abort event is gone by now.
    if (stop.aborted) onAbort();
    else stop.addEventListener('abort', onAbort, { once: true });
    const timer = setTimeout(onAbort, CONFIGURE_TIMEOUT_MS);
    const exit = await configure.done;
    clearTimeout(timer);
    stop.removeEventListener('abort', onAbort);
    const files = await readRegistrationFiles(layout.configDir);
    const runnerFile = files.get('.runner');
    if (exit.code !== 0 || runnerFile === undefined) {
      throw new CbactionsError(
        SlotErrorCode.ConfigureFailed,
        `Runner.Listener configure for ${name} ${exit.spawnError ? `could not start: ${exit.spawnError}` : `exited ${exit.code ?? exit.signal}`}${runnerFile === undefined ? ' and wrote no .runner' : ''}`,
      );
    }
    const enforced = enforceRunnerSettings(runnerFile);
    files.set('.runner', enforced.bytes);
    this.options.onRegistered(enforced.settings.agentId, enforced.settings.agentName);
    this.#log.info({ event: 'mux.registered', flow: 'token', runner: enforced.settings.agentName, runnerId: enforced.settings.agentId, enforced: enforced.changed });
    return { runnerId: enforced.settings.agentId, name: enforced.settings.agentName, files };
  }

  async #runListener(registration: Registration, stop: AbortSignal): Promise<ListenerOutcome> {
    const { layout } = this.options;
    await writeRegistrationFiles(layout.configDir, registration.files);
    this.#jobStarted = false;
    this.#jobResult = undefined;
    this.#job = null;
    const started = Date.now();
    let stoppedByMux = false;
    const listener = ListenerProcess.start({
      file: layout.listenerPath,
      ...(this.options.launcher ? { launcher: this.options.launcher } : {}),
      args: ['run'],
      cwd: layout.root,
      env: this.#listenerEnv(),
      onLine: (stream, line) => this.#onListenerLine(stream, line, stop),
    });
    this.#listener = listener;
    this.#log.info({ event: 'mux.listener-started', runner: registration.name, pid: listener.pid });
    this.options.metrics.listenersStarted.inc({ pool: this.options.pool });
    if (!this.#jobStarted) this.#setState(stop.aborted ? 'draining' : 'starting');
    const drain = () => {
      this.#setState('draining');
      this.#log.info({ event: 'mux.slot-draining', runner: registration.name, job: this.#job });
    };
    // An idle listener may be handed a job at any moment, even while a SIGTERM is on its way
    // (its poll in flight): delete the registration first, so GitHub hands it nothing more —
    // and refuses the delete if it already has (a busy runner) — and signal it only then.
    const onStop = async () => {
      if (this.#isBusy(listener)) return drain();
      if (!this.#registrationGone) {
        try {
          const existed = await this.options.registry.deleteRunner(registration.runnerId);
          this.#registrationGone = true;
          this.options.onReleased(registration.runnerId);
          this.#log.info({ event: 'mux.registration-removed', runner: registration.name, runnerId: registration.runnerId, existed });
        } catch (error) {
          if ((error as { code?: unknown }).code === RegistryErrorCode.Invalid) {
            this.#log.info({ event: 'mux.stop-refused-busy', runner: registration.name, error: describeError(error) });
            return drain();
          }
          // GitHub unreachable: stop it anyway (the exit sweep and the next life retry the delete).
          this.#log.warn({ event: 'mux.registration-remove-failed', runner: registration.name, runnerId: registration.runnerId, error: describeError(error) });
        }
      }
      if (this.#isBusy(listener)) return drain();
      stoppedByMux = true;
      this.#log.info({ event: 'mux.listener-stopping', runner: registration.name, reason: 'idle slot while stopping' });
      void listener.stop(this.options.stopGraceMs);
    };
    const onAbort = () => void onStop();
    if (stop.aborted) onAbort();
    else stop.addEventListener('abort', onAbort, { once: true });
    const exit = await listener.done;
    stop.removeEventListener('abort', onAbort);
    if (this.#stopping) stoppedByMux = true;
    if (this.#jobStarted) {
      const result = this.#jobResult ?? 'unknown';
      this.options.metrics.jobsFinished.inc({ pool: this.options.pool, result });
      this.#log.info({ event: 'mux.job-finished', runner: registration.name, job: this.#job, result, buildId: this.#buildId });
    }
    this.#listener = undefined;
    this.#job = null;
    this.#buildId = null;
    const jobStarted = this.#jobStarted;
    this.#jobStarted = false;
    this.options.onChange();
    return { exit, jobStarted, durationMs: Date.now() - started, stoppedByMux };
  }

  #onListenerLine(stream: 'stdout' | 'stderr', line: string, stop: AbortSignal): void {
    if (line.trim() === '') return;
    this.#log.info({ event: 'mux.listener-output', stream, line: line.slice(0, MAX_LOGGED_LINE) });
    if (stream !== 'stdout') return;
    const running = RUNNING_JOB.exec(line);
    if (running) {
      this.#jobStarted = true;
      this.#job = (running[1] ?? '').trim();
      this.options.metrics.jobsStarted.inc({ pool: this.options.pool });
      this.#log.info({ event: 'mux.job-started', runner: this.#registration?.name, job: this.#job });
      this.#setState(stop.aborted ? 'draining' : 'busy');
      return;
    }
    if (LISTENING.test(line) && this.#state === 'starting') {
      this.#setState('idle');
      return;
    }
    const completed = JOB_COMPLETED.exec(line);
    if (completed) this.#jobResult = completed[2];
  }

  async #deleteRunner(runnerId: number, name: string): Promise<boolean> {
    try {
      const existed = await this.options.registry.deleteRunner(runnerId);
      this.options.onReleased(runnerId);
      this.#log.info({ event: 'mux.registration-removed', runner: name, runnerId, existed });
      return true;
    } catch (error) {
      // The mux retries whatever is left at shutdown; start-up cleanup catches the rest.
      this.#log.warn({ event: 'mux.registration-remove-failed', runner: name, runnerId, error: describeError(error) });
      return false;
    }
  }

  /**
   * Forget the current registration: remove it from GitHub — unless its job ran, then
   * GitHub removes the ephemeral runner itself and a DELETE would only spend a rate-limited
   * write — and its files (the private key) from disk.
   */
  async #release(options: { consumed?: boolean } = {}): Promise<void> {
    const registration = this.#registration;
    if (!registration) return;
    this.#registration = undefined;
    if (this.#registrationGone) this.#registrationGone = false;
    else if (options.consumed) this.options.onReleased(registration.runnerId);
    else await this.#deleteRunner(registration.runnerId, registration.name);
    await clearRegistrationFiles(this.options.layout.configDir).catch((error: unknown) => this.#log.warn({ event: 'mux.registration-files-remove-failed', error: describeError(error) }));
  }
}
