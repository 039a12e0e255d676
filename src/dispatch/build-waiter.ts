import { awsErrorName, isRetryableAwsError, isThrottlingError } from '../util/aws-errors.js';
import { backoffDelay } from '../util/backoff.js';
import { systemClock, type Clock } from '../util/clock.js';
import { CbactionsError } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { Wakeup } from '../util/wakeup.js';
import type { CodeBuildApi, BuildSnapshot } from './codebuild-api.js';
import { FailureCode } from './failure.js';

export interface WaitOptions {
  signal?: AbortSignal;
  /** Called with every snapshot whose status or phase changed. */
  onUpdate?: (snapshot: BuildSnapshot) => void;
}

/** Waits for one build to finish. The shared watcher and the per-job poller both implement it. */
export interface BuildWaiter {
  waitForCompletion(buildId: string, options?: WaitOptions): Promise<BuildSnapshot>;
  /** Asks for a prompt re-check (after StopBuild, say). */
  poke?(buildId: string): void;
}

export interface PollingOptions {
  /** First interval; it grows toward `maxIntervalMs` while the build runs. */
  initialIntervalMs?: number;
  maxIntervalMs?: number;
  growth?: number;
  /** Backoff ceiling while CodeBuild throttles. */
  throttleMaxMs?: number;
  /** How many consecutive "not found" answers mean the build is gone. */
  notFoundLimit?: number;
  /** The intervals run on this clock; the system clock by default. */
  clock?: Clock;
}

/**
 * Polls BatchGetBuilds for a single build: the fallback when no shared watcher is
 * reachable. Interval grows from 1 s to 5 s; throttling backs off with full jitter.
 */
export class PollingBuildWaiter implements BuildWaiter {
  /** Per waited-for build: its pokes, and how many waits share them. */
  private readonly pokes = new Map<string, { wakeup: Wakeup; waits: number }>();

  constructor(
    private readonly builds: CodeBuildApi,
    private readonly logger: Logger,
    private readonly options: PollingOptions = {},
  ) {}

  poke(buildId: string): void {
    this.pokes.get(buildId)?.wakeup.wake();
  }

  async waitForCompletion(buildId: string, options: WaitOptions = {}): Promise<BuildSnapshot> {
    const initial = this.options.initialIntervalMs ?? 1000;
    const max = this.options.maxIntervalMs ?? 5000;
    const growth = this.options.growth ?? 1.25;
    const notFoundLimit = this.options.notFoundLimit ?? 3;
    let interval = initial;
    let failures = 0;
    let notFound = 0;
    let last: BuildSnapshot | undefined;
    const pokes = this.pokes.get(buildId) ?? { wakeup: new Wakeup(this.options.clock ?? systemClock), waits: 0 };
    pokes.waits += 1;
    this.pokes.set(buildId, pokes);
    try {
      for (;;) {
        // Read before the call: a poke (a StopBuild) while it is in flight may postdate its
        // answer, so the pause after it ends at once instead of sleeping a full interval.
        const seen = pokes.wakeup.generation;
        let delay = interval;
        try {
          const { builds, notFound: missing } = await this.builds.getBuilds([buildId], options.signal);
          failures = 0;
          const snapshot = builds.find((build) => build.id === buildId);
          if (!snapshot) {
            if (missing.includes(buildId) && ++notFound >= notFoundLimit) {
              throw new CbactionsError(FailureCode.BuildVanished, `CodeBuild no longer knows build ${buildId}`);
            }
          } else {
            notFound = 0;
            if (!last || last.status !== snapshot.status || last.currentPhase !== snapshot.currentPhase) options.onUpdate?.(snapshot);
            last = snapshot;
            if (snapshot.complete) return snapshot;
          }
          interval = Math.min(max, Math.round(interval * growth));
        } catch (error) {
          if (options.signal?.aborted || !isRetryableAwsError(error)) throw error;
          failures++;
          delay = Math.max(initial, backoffDelay({ initialMs: initial, maxMs: this.options.throttleMaxMs ?? 30_000 }, failures));
          this.logger.warn(
            { event: 'worker.poll.failed', buildId, throttled: isThrottlingError(error), error: awsErrorName(error), delayMs: delay },
            'BatchGetBuilds failed; backing off',
          );
        }
        const woke = await pokes.wakeup.wait(seen, { timeoutMs: delay, signal: options.signal });
        if (woke === 'aborted') throw options.signal?.reason;
      }
    } finally {
      if (--pokes.waits === 0) this.pokes.delete(buildId);
    }
  }
}
