import { awsErrorName, isRetryableAwsError, isThrottlingError } from '../util/aws-errors.js';
import { CbactionsError, describeError } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { Wakeup } from '../util/wakeup.js';
import { BATCH_GET_BUILDS_LIMIT, type CodeBuildApi, type BuildSnapshot } from '../dispatch/codebuild-api.js';
import type { BuildWaiter, WaitOptions } from '../dispatch/build-waiter.js';
import { FailureCode } from '../dispatch/failure.js';

/** Shortest gap between a targeted call (after a poke naming builds) and the call before it. */
const TARGETED_SPACING_MS = 250;

export interface WatcherOptions {
  /** Shortest time between sweeps: how quickly a finished build is noticed (about 1 s). */
  minIntervalMs?: number;
  /**
   * BatchGetBuilds calls per second the watcher allows itself. With more builds than one
   * call covers (100), sweeps stretch so the rate stays under this budget.
   */
  maxCallsPerSecond?: number;
  /** Ceiling of the backoff while CodeBuild throttles. */
  throttleMaxMs?: number;
  /** Consecutive "not found" answers before a build counts as gone. */
  notFoundLimit?: number;
  /**
   * Consecutive sweeps failing with an error that is not worth retrying (no credentials,
   * access denied) before the waiters are told, so workers fall back to polling themselves.
   */
  hardFailureLimit?: number;
  random?: () => number;
}

interface Watched {
  buildId: string;
  last?: BuildSnapshot;
  notFound: number;
  listeners: Set<(snapshot: BuildSnapshot) => void>;
  waiters: Set<{ resolve: (snapshot: BuildSnapshot) => void; reject: (error: unknown) => void }>;
}

export interface WatcherStats {
  calls: number;
  throttled: number;
  errors: number;
  sweeps: number;
  watching: number;
}

/**
 * One watcher for every build of a host: BatchGetBuilds with up to 100 ids per call, on
 * an interval that adapts to the number of builds and to throttling (jittered backoff),
 * plus `poke` for faster signals (EventBridge events, a StopBuild) that never replace
 * this reconciliation poll.
 */
export class BuildWatcher implements BuildWaiter {
  private readonly watched = new Map<string, Watched>();
  private readonly options: Required<Omit<WatcherOptions, 'random'>> & { random: () => number };
  private readonly stats: WatcherStats = { calls: 0, throttled: 0, errors: 0, sweeps: 0, watching: 0 };
  /** A poke, a new build or close(): the loop works out what is due again. */
  private readonly changed = new Wakeup();
  /** A poke without a build: sweep everything soon. */
  private pokeAll = false;
  /** Builds a poke named (a build event, a StopBuild): asked about on their own, soon. */
  private readonly pokedIds = new Set<string>();
  private backoffMs = 0;
  private consecutiveHardFailures = 0;
  private running = false;
  private loop: Promise<void> | undefined;
  private readonly closed = new AbortController();

  constructor(
    private readonly builds: CodeBuildApi,
    private readonly logger: Logger,
    options: WatcherOptions = {},
  ) {
    this.options = {
      minIntervalMs: options.minIntervalMs ?? 1000,
      maxCallsPerSecond: options.maxCallsPerSecond ?? 1,
      throttleMaxMs: options.throttleMaxMs ?? 30_000,
      notFoundLimit: options.notFoundLimit ?? 5,
      hardFailureLimit: options.hardFailureLimit ?? 3,
      random: options.random ?? Math.random,
    };
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.run();
  }

  async close(): Promise<void> {
    this.running = false;
    this.closed.abort();
    this.changed.wake();
    await this.loop;
    for (const entry of this.watched.values()) {
      for (const waiter of entry.waiters) waiter.reject(new CbactionsError('WATCHER_CLOSED', 'the build watcher stopped'));
    }
    this.watched.clear();
  }

  getStats(): WatcherStats {
    return { ...this.stats, watching: this.watched.size };
  }

  /** Latest known state of a watched build. */
  latest(buildId: string): BuildSnapshot | undefined {
    return this.watched.get(buildId)?.last;
  }

  watchedIds(): string[] {
    return [...this.watched.keys()];
  }

  /** Follows a build until it completes; the listener sees every changed snapshot. Returns an unsubscribe function. */
  subscribe(buildId: string, listener: (snapshot: BuildSnapshot) => void): () => void {
    const entry = this.entry(buildId);
    entry.listeners.add(listener);
    if (entry.last) listener(entry.last);
    return () => {
      entry.listeners.delete(listener);
      this.forgetIfUnused(entry);
    };
  }

  waitForCompletion(buildId: string, options: WaitOptions = {}): Promise<BuildSnapshot> {
    return new Promise<BuildSnapshot>((resolve, reject) => {
      // An abort event that fired before this call never comes again.
      if (options.signal?.aborted) {
        reject(options.signal.reason);
        return;
      }
      const entry = this.entry(buildId);
      const unsubscribe = options.onUpdate ? this.subscribe(buildId, options.onUpdate) : () => {};
      const waiter = {
        resolve: (snapshot: BuildSnapshot) => {
          unsubscribe();
          resolve(snapshot);
        },
        reject: (error: unknown) => {
          unsubscribe();
          reject(error);
        },
      };
      entry.waiters.add(waiter);
      options.signal?.addEventListener(
        'abort',
        () => {
          entry.waiters.delete(waiter);
          this.forgetIfUnused(entry);
          waiter.reject(options.signal?.reason);
        },
        { once: true },
      );
    });
  }

  /**
   * Asks for an early look: at the named build alone (one small call, spaced at least
   * 250 ms from the previous one), or at every build (an early sweep, no sooner than the
   * minimum interval). Faster signals use this; the budgeted sweep goes on regardless.
   */
  poke(buildId?: string): void {
    if (buildId === undefined) this.pokeAll = true;
    else if (this.watched.has(buildId)) this.pokedIds.add(buildId);
    else return;
    this.changed.wake();
  }

  private entry(buildId: string): Watched {
    let entry = this.watched.get(buildId);
    if (!entry) {
      entry = { buildId, notFound: 0, listeners: new Set(), waiters: new Set() };
      this.watched.set(buildId, entry);
      // Joins the next budgeted sweep: a build that just started is not about to end, and
      // sweeping early for every new build would break the call budget under load.
      this.changed.wake();
    }
    return entry;
  }

  private forgetIfUnused(entry: Watched): void {
    if (entry.listeners.size === 0 && entry.waiters.size === 0) this.watched.delete(entry.buildId);
  }

  private settle(entry: Watched, snapshot: BuildSnapshot): void {
    const changed = !entry.last || entry.last.status !== snapshot.status || entry.last.currentPhase !== snapshot.currentPhase || entry.last.complete !== snapshot.complete;
    entry.last = snapshot;
    entry.notFound = 0;
    if (changed) for (const listener of [...entry.listeners]) listener(snapshot);
    if (snapshot.complete) {
      for (const waiter of [...entry.waiters]) waiter.resolve(snapshot);
      this.watched.delete(entry.buildId);
    }
  }

  private vanish(entry: Watched): void {
    const error = new CbactionsError(FailureCode.BuildVanished, `CodeBuild no longer knows build ${entry.buildId}`);
    for (const waiter of [...entry.waiters]) waiter.reject(error);
    this.watched.delete(entry.buildId);
  }

  /** The watcher cannot do its job: hand every build back to its waiter. */
  private failAll(cause: unknown): void {
    const error = new CbactionsError('WATCHER_FAILING', `the host's build watcher cannot reach CodeBuild (${describeError(cause)})`, { cause });
    for (const entry of [...this.watched.values()]) {
      for (const waiter of [...entry.waiters]) waiter.reject(error);
      this.watched.delete(entry.buildId);
    }
    this.consecutiveHardFailures = 0;
  }

  private sweepIntervalMs(calls: number): number {
    const budget = (calls / this.options.maxCallsPerSecond) * 1000;
    return Math.max(this.options.minIntervalMs, budget) + this.backoffMs;
  }

  private async run(): Promise<void> {
    let lastSweep = 0;
    let lastCall = 0;
    while (this.running) {
      // Read before deciding: what changes from here on ends the wait below at once.
      const seen = this.changed.generation;
      if (this.watched.size === 0) {
        await this.changed.wait(seen, { signal: this.closed.signal });
        continue;
      }
      const ids = [...this.watched.keys()];
      const chunks: string[][] = [];
      for (let i = 0; i < ids.length; i += BATCH_GET_BUILDS_LIMIT) chunks.push(ids.slice(i, i + BATCH_GET_BUILDS_LIMIT));
      const fullDue = lastSweep + (this.pokeAll ? this.options.minIntervalMs + this.backoffMs : this.sweepIntervalMs(chunks.length));
      const targetedDue = this.pokedIds.size > 0 ? lastCall + Math.min(TARGETED_SPACING_MS, this.options.minIntervalMs) + this.backoffMs : Number.POSITIVE_INFINITY;
      const wait = Math.min(fullDue, targetedDue) - Date.now();
      if (wait > 0) {
        // Woken early by a poke or a new build: work out what is due again.
        await this.changed.wait(seen, { timeoutMs: wait, signal: this.closed.signal });
        continue;
      }
      if (!this.running) break;
      if (targetedDue < fullDue) {
        const targeted = [...this.pokedIds].filter((id) => this.watched.has(id)).slice(0, BATCH_GET_BUILDS_LIMIT);
        for (const id of targeted) this.pokedIds.delete(id);
        for (const id of [...this.pokedIds]) if (!this.watched.has(id)) this.pokedIds.delete(id);
        lastCall = Date.now();
        if (targeted.length > 0) await this.sweep([targeted]);
        continue;
      }
      this.pokeAll = false;
      this.pokedIds.clear();
      lastSweep = Date.now();
      lastCall = lastSweep;
      this.stats.sweeps++;
      await this.sweep(chunks);
    }
  }

  private async sweep(chunks: string[][]): Promise<void> {
    let failed = false;
    for (const chunk of chunks) {
      this.stats.calls++;
      try {
        const { builds, notFound } = await this.builds.getBuilds(chunk, this.closed.signal);
        for (const snapshot of builds) {
          const entry = this.watched.get(snapshot.id);
          if (entry) this.settle(entry, snapshot);
        }
        for (const id of notFound) {
          const entry = this.watched.get(id);
          if (entry && ++entry.notFound >= this.options.notFoundLimit) this.vanish(entry);
        }
      } catch (error) {
        if (!this.running) return;
        failed = true;
        const throttled = isThrottlingError(error);
        if (throttled) this.stats.throttled++;
        else this.stats.errors++;
        if (throttled || isRetryableAwsError(error)) {
          this.consecutiveHardFailures = 0;
          this.logger.warn({ event: 'watcher.poll-failed', error: awsErrorName(error), throttled }, 'BatchGetBuilds failed; backing off');
        } else {
          this.consecutiveHardFailures++;
          this.logger.error({ event: 'watcher.poll-error', error: describeError(error), consecutive: this.consecutiveHardFailures }, 'BatchGetBuilds failed; backing off');
          if (this.consecutiveHardFailures >= this.options.hardFailureLimit) this.failAll(error);
        }
        // The rest of this sweep would meet the same fate: back off first.
        break;
      }
    }
    if (!failed) this.consecutiveHardFailures = 0;
    if (failed) {
      // Full jitter on a doubling ceiling; each successful sweep halves the backoff again.
      const ceiling = Math.min(this.options.throttleMaxMs, Math.max(this.options.minIntervalMs, this.backoffMs * 2));
      this.backoffMs = Math.max(this.options.minIntervalMs / 2, Math.floor(this.options.random() * ceiling));
    } else if (this.backoffMs > 0) {
      this.backoffMs = this.backoffMs < 100 ? 0 : Math.floor(this.backoffMs / 2);
    }
  }
}
