import { backoffDelay, sleep, type BackoffPolicy } from './backoff.js';

export interface RetryOptions extends BackoffPolicy {
  maxAttempts: number;
  isRetryable: (error: unknown) => boolean;
  signal?: AbortSignal;
  onRetry?: (error: unknown, attempt: number, delayMs: number) => void;
  random?: () => number;
}

/** Calls `fn` until it succeeds, a non-retryable error occurs, or attempts run out (full-jitter backoff). */
export async function withRetries<T>(fn: (attempt: number) => Promise<T>, options: RetryOptions): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (error) {
      if (options.signal?.aborted) throw error;
      if (attempt + 1 >= options.maxAttempts || !options.isRetryable(error)) throw error;
      const delayMs = backoffDelay(options, attempt, options.random);
      options.onRetry?.(error, attempt + 1, delayMs);
      await sleep(delayMs, options.signal);
    }
  }
}
