/**
 * Delays between listener restarts and registration retries. Exponential with "equal
 * jitter" (half the ceiling fixed, half random): unlike full jitter it has a floor, so a
 * listener that dies instantly forever provably restarts at most about once per
 * `maxMs / 2` once capped, and slots that fail together still spread out.
 */
export interface RestartBackoffPolicy {
  initialMs: number;
  maxMs: number;
  /** A run this long (or one that ran a job) is healthy: the next delay starts from the beginning. */
  healthyAfterMs: number;
}

export function restartDelay(policy: Pick<RestartBackoffPolicy, 'initialMs' | 'maxMs'>, attempt: number, random: () => number = Math.random): number {
  const ceiling = Math.min(policy.maxMs, policy.initialMs * 2 ** Math.max(0, Math.min(attempt, 40)));
  const half = ceiling / 2;
  return Math.floor(half + random() * half);
}

/** One per slot. `next()` after every failure; `observeRun()` after every listener run. */
export class RestartBackoff {
  #attempt = 0;

  constructor(
    private readonly policy: RestartBackoffPolicy,
    private readonly random: () => number = Math.random,
  ) {}

  get attempt(): number {
    return this.#attempt;
  }

  /** The delay to wait now; the one after will be (about) twice as long, up to the cap. */
  next(): number {
    const delay = restartDelay(this.policy, this.#attempt, this.random);
    this.#attempt += 1;
    return delay;
  }

  /** A run that lasted long enough or did real work resets the exponent. */
  observeRun(durationMs: number, didWork: boolean): void {
    if (didWork || durationMs >= this.policy.healthyAfterMs) this.#attempt = 0;
  }

  reset(): void {
    this.#attempt = 0;
  }
}
