/**
 * Standby builds (issue 11): per warm pool, the mux keeps `warm.standby` builds started
 * ahead of any job. Each one's entrypoint gets ready and polls for a payload addressed to
 * its own build; a job for the pool claims one (standby-claim.ts) instead of starting a
 * new build. This file keeps the count, replaces used, expired and failed standbys (with
 * backoff), stops them at drain, when a window closes and when one outlives its wait limit,
 * journals them for a next life, and gives one up when a job meets a full build quota.
 */
import { randomBytes } from 'node:crypto';
import type { Config, Pool, WarmWindow, Weekday } from '../config/schema.js';
import type { BuildWaiter } from '../dispatch/build-waiter.js';
import type { BuildSnapshot, CodeBuildApi, StartBuildRequest } from '../dispatch/codebuild-api.js';
import { jobSettings } from '../dispatch/job-settings.js';
import { BuildEnv, buildEnvironment } from '../dispatch/run-job.js';
import { endedUntaken, StandbyFailureCode, startOverridesKey, type ClaimedStandby, type StandbyClaims } from '../dispatch/standby-claim.js';
import { buildOverrides } from '../dispatch/start-build.js';
import { awsErrorName, isRetryableAwsError } from '../util/aws-errors.js';
import { backoffDelay } from '../util/backoff.js';
import { systemClock, type Clock } from '../util/clock.js';
import { describeError } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { withRetries } from '../util/retry.js';
import { Wakeup } from '../util/wakeup.js';

/** What the manager reports when a standby build ends: its minutes cost money whether or not it ran a job. */
export interface StandbyEnded {
  pool: string;
  buildId: string;
  computeType?: string;
  startedAt: number;
  endedAt: number;
  /** `used`: it ran a job (its minutes from the claim on are the job's); the others waited for nothing. */
  reason: 'used' | 'expired' | 'stopped' | 'failed';
}

export interface StandbyPoolOptions {
  config: Config;
  configPath: string;
  builds: CodeBuildApi;
  /** The mux's build watcher: it tells when a standby has ended. */
  waiter: BuildWaiter;
  logger: Logger;
  /** The listeners' environment (`CBACTIONS_MUX_INSTANCE`, …): a standby starts as their jobs' builds do. */
  env: NodeJS.ProcessEnv;
  /** This life's journal (previous-life.ts), so a next life stops standbys left by a hard death. */
  journal?: { add(buildId: string): void; remove(buildId: string): void };
  onEnded?: (ended: StandbyEnded) => void;
  clock?: Clock;
  random?: () => number;
  /** No claim this close to a standby's deadline (default: a quarter of the wait, at most 30 s). */
  claimMarginMs?: number;
  /** An unclaimed standby still running this long past its wait limit is stopped (default 60 s). */
  stopMarginMs?: number;
  /** Restart delay after a failed start or a standby that failed (doubling, jittered). */
  backoff?: { initialMs: number; maxMs: number };
  /** After a quota refusal (the standby's own, or a job's that a standby gave way to), no new standby for this long. */
  quotaHoldMs?: number;
  /** How long close() and yieldForQuota wait for a stopped standby to end. */
  endWaitMs?: number;
}

const DEFAULT_BACKOFF = { initialMs: 5_000, maxMs: 300_000 };
const DEFAULT_QUOTA_HOLD_MS = 60_000;
const DEFAULT_STOP_MARGIN_MS = 60_000;
const DEFAULT_END_WAIT_MS = 30_000;
/** With windows, the loop looks again at every minute boundary (windows are whole minutes). */
const MINUTE_MS = 60_000;
const DAY_INDEX: Record<Weekday, number> = { sun: 0, mon: 1, tue: 2, wed: 3, thu: 4, fri: 5, sat: 6 };

interface Standby {
  pool: string;
  buildId: string;
  snapshot: BuildSnapshot;
  computeType?: string;
  startedAt: number;
  /** No claim from this time on. */
  claimUntil: number;
  /** Unclaimed and still running at this time: stopped. */
  stopAt: number;
  state: 'live' | 'claimed' | 'stopping';
  /** Our StopBuild failed: the loop tries again. */
  stopFailed: boolean;
  ended: Promise<void>;
}

interface PoolState {
  pool: Pool;
  /** The standby's StartBuild without its token. */
  request: Omit<StartBuildRequest, 'idempotencyToken'>;
  key: string;
  roleId?: string;
  waitMs: number;
  starting: number;
  failures: number;
  notBefore: number;
}

/** Whether `at` (epoch ms) falls in one of the UTC windows; no windows: always. */
export function inWarmWindow(windows: WarmWindow[] | undefined, at: number): boolean {
  if (windows === undefined) return true;
  const date = new Date(at);
  const day = date.getUTCDay();
  const minute = date.getUTCHours() * 60 + date.getUTCMinutes();
  const minutesOf = (time: string) => Number(time.slice(0, 2)) * 60 + Number(time.slice(3, 5));
  return windows.some((window) => window.days.some((name) => DAY_INDEX[name] === day) && minutesOf(window.from) <= minute && minute < minutesOf(window.to));
}

export class StandbyPool implements StandbyClaims {
  readonly #standbys = new Map<string, Standby>();
  readonly #pools: PoolState[];
  readonly #wakeup: Wakeup;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #random: () => number;
  readonly #stop = new AbortController();
  #loop: Promise<void> | undefined;
  #closed = false;

  constructor(private readonly options: StandbyPoolOptions) {
    this.#clock = options.clock ?? systemClock;
    this.#wakeup = new Wakeup(this.#clock);
    this.#log = options.logger;
    this.#random = options.random ?? Math.random;
    this.#pools = options.config.pools
      .filter((pool) => pool.warm.standby > 0)
      .map((pool) => {
        const settings = jobSettings(options.config, options.configPath, pool, options.env);
        const roleId = settings.build.serviceRole?.roleId ?? settings.defaultRoleId;
        const waitMs = Math.round(pool.warm.maxWaitMinutes * 60_000);
        const request = {
          projectName: settings.projectName,
          environmentVariables: { ...buildEnvironment(settings, settings.build, roleId), [BuildEnv.StandbyWait]: String(Math.round(waitMs / 1000)) },
          ...buildOverrides(settings.build),
        };
        return { pool, request, key: startOverridesKey({ ...request, idempotencyToken: '' }), ...(roleId !== undefined ? { roleId } : {}), waitMs, starting: 0, failures: 0, notBefore: 0 };
      });
  }

  /** Whether any pool keeps standbys. */
  get enabled(): boolean {
    return this.#pools.length > 0;
  }

  /** The StartBuild overrides key (startOverridesKey) of the pool's standbys, or undefined for a pool without. */
  overridesKey(poolName: string): string | undefined {
    return this.#poolState(poolName)?.key;
  }

  /** Standby builds by pool and state, for status and tests. */
  list(): { pool: string; buildId: string; state: Standby['state'] }[] {
    return [...this.#standbys.values()].map((standby) => ({ pool: standby.pool, buildId: standby.buildId, state: standby.state }));
  }

  /** Starts keeping the standbys (after the previous life's cleanup, so they are journaled). */
  start(): void {
    if (this.#loop || this.#closed || !this.enabled) return;
    this.#log.info({ event: 'standby.pool-started', pools: this.#pools.map((state) => ({ pool: state.pool.name, standby: state.pool.warm.standby, maxWaitMinutes: state.pool.warm.maxWaitMinutes })) }, 'keeping standby builds');
    this.#loop = this.#run();
  }

  claim(poolName: string, overridesKey: string): ClaimedStandby | undefined {
    if (this.#closed) return undefined;
    const now = this.#clock.now();
    const candidates = [...this.#standbys.values()]
      .filter((standby) => standby.pool === poolName && standby.state === 'live' && now < standby.claimUntil && this.#poolState(poolName)?.key === overridesKey)
      // Ready ones first (their entrypoint polls already), then the one that would expire first.
      .sort((a, b) => Number(b.snapshot.currentPhase === 'BUILD') - Number(a.snapshot.currentPhase === 'BUILD') || a.claimUntil - b.claimUntil);
    const standby = candidates[0];
    if (!standby) return undefined;
    standby.state = 'claimed';
    this.#log.info({ event: 'standby.claimed', pool: poolName, buildId: standby.buildId, phase: standby.snapshot.currentPhase, waitedMs: now - standby.startedAt }, 'standby claimed for a job');
    // A used standby is replaced at once.
    this.#wakeup.wake();
    const roleId = this.#poolState(poolName)?.roleId;
    return {
      build: { ...standby.snapshot },
      ...(roleId !== undefined ? { roleId } : {}),
      claimedAt: now,
      release: (how) => this.#log.info({ event: 'standby.released', pool: poolName, buildId: standby.buildId, how }, how === 'ran' ? 'the standby ran its job' : 'the job went to a new build'),
    };
  }

  async yieldForQuota(computeType: string | undefined): Promise<boolean> {
    const live = [...this.#standbys.values()].filter((standby) => standby.state === 'live');
    const standby = live.find((candidate) => computeType !== undefined && candidate.computeType === computeType) ?? live[0];
    if (!standby) return false;
    // Its replacement would take the room back: the pool waits before starting another.
    const pool = this.#poolState(standby.pool);
    if (pool) pool.notBefore = Math.max(pool.notBefore, this.#clock.now() + (this.options.quotaHoldMs ?? DEFAULT_QUOTA_HOLD_MS));
    this.#log.warn({ event: 'standby.yield-for-quota', pool: standby.pool, buildId: standby.buildId, computeType: standby.computeType }, 'stopping a standby: a job met a full build quota');
    await this.#stopStandby(standby, 'a job needs its place in the build quota');
    await this.#endedWithin(standby, this.options.endWaitMs ?? DEFAULT_END_WAIT_MS);
    return true;
  }

  /** Stops every unclaimed standby and waits (bounded) for them to end; claimed ones are jobs and end with them. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#stop.abort();
    this.#wakeup.wake();
    await this.#loop;
    // A StartBuild still on its way answers with a build nobody else would stop: wait for it
    // (its start stops it, the pool being closed) so the build is among those waited for below.
    await Promise.allSettled([...this.#starting]);
    const unclaimed = [...this.#standbys.values()].filter((standby) => standby.state !== 'claimed');
    await Promise.all(unclaimed.map((standby) => this.#stopStandby(standby, 'the mux is stopping')));
    await Promise.all(unclaimed.map((standby) => this.#endedWithin(standby, this.options.endWaitMs ?? DEFAULT_END_WAIT_MS)));
    this.#log.info({ event: 'standby.pool-stopped', stopped: unclaimed.length, left: [...this.#standbys.keys()] }, 'standby builds stopped');
  }

  #poolState(name: string): PoolState | undefined {
    return this.#pools.find((state) => state.pool.name === name);
  }

  async #run(): Promise<void> {
    while (!this.#closed) {
      const seen = this.#wakeup.generation;
      const now = this.#clock.now();
      let next = Number.POSITIVE_INFINITY;
      for (const state of this.#pools) {
        const warm = inWarmWindow(state.pool.warm.windows, now);
        if (state.pool.warm.windows !== undefined) next = Math.min(next, MINUTE_MS - (now % MINUTE_MS));
        const live = [...this.#standbys.values()].filter((standby) => standby.pool === state.pool.name && standby.state === 'live');
        if (!warm) {
          for (const standby of live) void this.#stopStandby(standby, 'the warm window closed');
          continue;
        }
        const missing = state.pool.warm.standby - live.length - state.starting;
        if (missing <= 0) continue;
        if (now < state.notBefore) {
          next = Math.min(next, state.notBefore - now);
          continue;
        }
        for (let index = 0; index < missing; index++) this.#track(this.#startOne(state));
      }
      // The backstop: no unclaimed standby outlives its wait limit (its entrypoint should have ended it).
      for (const standby of this.#standbys.values()) {
        if (standby.state === 'claimed') continue;
        if (standby.state === 'stopping' && !standby.stopFailed) continue;
        if (now >= standby.stopAt) void this.#stopStandby(standby, 'it outlived its wait limit');
        else next = Math.min(next, standby.stopAt - now);
      }
      await this.#wakeup.wait(seen, { timeoutMs: Number.isFinite(next) ? Math.max(1, next) : undefined, signal: this.#stop.signal });
    }
  }

  /** Standby starts on their way (close() waits for them). */
  readonly #starting = new Set<Promise<void>>();

  #track(start: Promise<void>): void {
    this.#starting.add(start);
    void start.finally(() => this.#starting.delete(start));
  }

  async #startOne(state: PoolState): Promise<void> {
    state.starting += 1;
    const requestedAt = this.#clock.now();
    // Random per standby: retries of this start reuse it, no two standbys share it.
    const request: StartBuildRequest = { ...state.request, idempotencyToken: `standby-${randomBytes(20).toString('hex')}` };
    let snapshot: BuildSnapshot;
    try {
      snapshot = await withRetries(() => this.options.builds.startBuild(request), { maxAttempts: 3, initialMs: 500, maxMs: 5_000, isRetryable: isRetryableAwsError, signal: this.#stop.signal });
    } catch (error) {
      state.starting -= 1;
      if (this.#closed) return;
      const quota = awsErrorName(error) === 'AccountLimitExceededException';
      state.failures += 1;
      const wait = Math.max(quota ? (this.options.quotaHoldMs ?? DEFAULT_QUOTA_HOLD_MS) : 0, this.#backoff(state.failures));
      state.notBefore = this.#clock.now() + wait;
      this.#log.warn({ event: 'standby.start-failed', pool: state.pool.name, error: awsErrorName(error), quota, retryInMs: wait }, 'could not start a standby build');
      this.#wakeup.wake();
      return;
    }
    state.starting -= 1;
    const startedAt = this.#clock.now();
    const margin = this.options.claimMarginMs ?? Math.min(30_000, Math.round(state.waitMs / 4));
    const standby: Standby = {
      pool: state.pool.name,
      buildId: snapshot.id,
      snapshot,
      ...(state.pool.build.fleetArn === undefined ? { computeType: state.pool.build.computeType } : {}),
      startedAt,
      // Its entrypoint counts the wait from when it is ready, which is after the request was sent.
      claimUntil: requestedAt + state.waitMs - margin,
      stopAt: startedAt + state.waitMs + (this.options.stopMarginMs ?? DEFAULT_STOP_MARGIN_MS),
      state: 'live',
      stopFailed: false,
      ended: Promise.resolve(),
    };
    this.#standbys.set(standby.buildId, standby);
    this.options.journal?.add(standby.buildId);
    this.#log.info({ event: 'standby.started', pool: standby.pool, buildId: standby.buildId, waitSeconds: Math.round(state.waitMs / 1000) }, 'standby build started');
    standby.ended = this.#watch(standby, state);
    // Started while the mux was closing: it is not wanted.
    if (this.#closed) await this.#stopStandby(standby, 'the mux is stopping');
    this.#wakeup.wake();
  }

  async #watch(standby: Standby, state: PoolState): Promise<void> {
    let final: BuildSnapshot | undefined;
    try {
      final = await this.options.waiter.waitForCompletion(standby.buildId, {
        onUpdate: (snapshot) => {
          standby.snapshot = snapshot;
        },
      });
    } catch (error) {
      // The build vanished, or the watcher closed: nothing more to learn about it.
      this.#log.warn({ event: 'standby.watch-failed', pool: standby.pool, buildId: standby.buildId, error: describeError(error) }, 'lost track of a standby build');
    }
    const endedAt = this.#clock.now();
    const failure = final?.exported[BuildEnv.Failure];
    const reason: StandbyEnded['reason'] =
      standby.state === 'claimed' ? 'used' : standby.state === 'stopping' ? 'stopped' : endedUntaken(failure) && failure?.startsWith(StandbyFailureCode.Expired) ? 'expired' : 'failed';
    if (reason === 'failed') {
      state.failures += 1;
      state.notBefore = Math.max(state.notBefore, endedAt + this.#backoff(state.failures));
    } else if (reason !== 'stopped') {
      state.failures = 0;
    }
    this.#standbys.delete(standby.buildId);
    this.options.journal?.remove(standby.buildId);
    this.#log.info({ event: 'standby.ended', pool: standby.pool, buildId: standby.buildId, reason, status: final?.status, failure: failure?.slice(0, 200), minutes: Math.round((endedAt - standby.startedAt) / 600) / 100 }, 'standby build ended');
    try {
      this.options.onEnded?.({ pool: standby.pool, buildId: standby.buildId, ...(standby.computeType ? { computeType: standby.computeType } : {}), startedAt: standby.startedAt, endedAt, reason });
    } catch (error) {
      this.#log.error({ event: 'standby.report-failed', error: describeError(error) }, 'recording a standby end failed');
    }
    this.#wakeup.wake();
  }

  async #stopStandby(standby: Standby, why: string): Promise<void> {
    if (standby.state === 'claimed' || (standby.state === 'stopping' && !standby.stopFailed)) return;
    standby.state = 'stopping';
    standby.stopFailed = false;
    this.#log.info({ event: 'standby.stop', pool: standby.pool, buildId: standby.buildId, why }, 'stopping a standby build');
    try {
      await withRetries(() => this.options.builds.stopBuild(standby.buildId), { maxAttempts: 4, initialMs: 500, maxMs: 5_000, isRetryable: isRetryableAwsError });
    } catch (error) {
      // An ended build cannot be stopped (the watcher tells); otherwise the loop tries again.
      standby.stopFailed = true;
      this.#log.warn({ event: 'standby.stop-failed', pool: standby.pool, buildId: standby.buildId, error: awsErrorName(error) }, 'StopBuild of a standby failed');
    }
    this.options.waiter.poke?.(standby.buildId);
  }

  async #endedWithin(standby: Standby, ms: number): Promise<void> {
    let cancel: (() => void) | undefined;
    const timeout = new Promise<void>((resolve) => (cancel = this.#clock.setTimer(resolve, ms)));
    await Promise.race([standby.ended, timeout]);
    cancel?.();
  }

  #backoff(failures: number): number {
    const policy = this.options.backoff ?? DEFAULT_BACKOFF;
    // Half fixed, half jitter: never zero, so a standby that fails at once is never a hot loop.
    const ceiling = Math.min(policy.maxMs, policy.initialMs * 2 ** Math.max(0, failures - 1));
    return Math.round(ceiling / 2) + backoffDelay({ initialMs: ceiling / 2, maxMs: ceiling / 2, factor: 1 }, 0, this.#random);
  }
}
