/**
 * The worker holds its job's lease (`PayloadStore.renewLease`) for as long as it lives: the
 * first lease is written before the payload, so a build never sees its job without one, and
 * renewed every `renewMs` to expire `ttlMs` later. When the worker dies with its host (an
 * ECS task killed, a mux container gone), renewals stop and the entrypoint ends the build
 * once the lease has expired (JOB_LEASE_EXPIRED) instead of running to its timeout.
 */
import type { JobLogFacts, PayloadBinding, PayloadStore } from '../seal/types.js';
import { isRetryableAwsError } from '../util/aws-errors.js';
import { describeError, isCbactionsError } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { withRetries } from '../util/retry.js';

export interface JobLeaseSettings {
  /** How often the lease is renewed. */
  renewMs: number;
  /** How far past each renewal the lease reaches: several renewals may fail before it lapses. */
  ttlMs: number;
}

/** Renew each minute, valid for five: a build notices a dead holder within about six minutes. */
export const DEFAULT_JOB_LEASE: JobLeaseSettings = { renewMs: 60_000, ttlMs: 300_000 };

export interface JobLeaseHandle {
  /**
   * Adds facts for the job's own log (CodeBuild's waits, the price) and renews at once, so
   * the build reads them with its next look at the lease. Never throws: a fact that does not
   * reach the build only leaves a line less precise.
   */
  addFacts(facts: JobLogFacts): Promise<void>;
  /** Stops renewing and removes the lease (the job is over). Never throws. */
  release(): Promise<void>;
}

export interface HoldJobLeaseOptions {
  store: PayloadStore;
  binding: PayloadBinding;
  settings: JobLeaseSettings;
  logger: Logger;
  now?: () => number;
  /** Facts the first lease already carries (the price). */
  facts?: JobLogFacts;
}

/** Writes the first lease (retried; throws when it cannot be written) and keeps renewing it. */
export async function holdJobLease(options: HoldJobLeaseOptions): Promise<JobLeaseHandle> {
  const { store, binding, settings, logger } = options;
  const now = options.now ?? Date.now;
  const stop = new AbortController();
  let facts: JobLogFacts | undefined = options.facts;
  const renew = () => store.renewLease(binding, { expiresAt: new Date(now() + settings.ttlMs), ...(facts ? { facts } : {}) }, stop.signal);
  await withRetries(renew, { maxAttempts: 5, initialMs: 300, maxMs: 5000, isRetryable: (error) => !isCbactionsError(error) || isRetryableAwsError(error) });
  let renewing: Promise<void> = Promise.resolve();
  const timer = setInterval(() => {
    renewing = renew().catch((error: unknown) => {
      if (stop.signal.aborted) return;
      // The next renewal may succeed: the lease reaches ttlMs, several intervals.
      logger.warn({ event: 'worker.lease-renew-failed', buildId: binding.buildId, error: describeError(error) }, 'could not renew the job lease');
    });
  }, settings.renewMs);
  timer.unref();
  return {
    addFacts: async (more) => {
      if (stop.signal.aborted) return;
      facts = { ...facts, ...more };
      const renewal = withRetries(renew, { maxAttempts: 3, initialMs: 200, maxMs: 1000, isRetryable: (error) => !isCbactionsError(error) || isRetryableAwsError(error), signal: stop.signal });
      renewing = renewal.catch((error: unknown) => {
        if (stop.signal.aborted) return;
        logger.warn({ event: 'worker.lease-facts-failed', buildId: binding.buildId, error: describeError(error) }, 'could not add facts to the job lease');
      });
      await renewing;
    },
    release: async () => {
      clearInterval(timer);
      stop.abort();
      await renewing;
      await store.releaseLease(binding).catch((error: unknown) => logger.warn({ event: 'worker.lease-release-failed', buildId: binding.buildId, error: describeError(error) }, 'could not remove the job lease'));
    },
  };
}
