/**
 * "Sleep unless woken" without lost wake-ups. A loop reads `generation` BEFORE it decides
 * what to do (and before any await, such as a request in flight); `wait(seen)` then
 * returns at once if `wake()` was called since, even when no one was waiting at the time.
 * A plain stored resolve callback loses every wake that arrives while the loop is busy
 * elsewhere, and the loop then sleeps on a stale decision.
 */
import { systemClock, type Clock } from './clock.js';

export type WakeReason = 'woken' | 'timeout' | 'aborted';

export interface WakeWaitOptions {
  /** Give up waiting after this long; undefined = only a wake or the signal ends the wait. */
  timeoutMs?: number | undefined;
  signal?: AbortSignal | undefined;
}

export class Wakeup {
  #generation = 0;
  readonly #waiters = new Set<() => void>();

  constructor(private readonly clock: Clock = systemClock) {}

  /** Counts wakes; read it before deciding, hand it to `wait`. */
  get generation(): number {
    return this.#generation;
  }

  /** Wakes every current waiter, and any later `wait` given an older generation. */
  wake(): void {
    this.#generation += 1;
    const waiters = [...this.#waiters];
    this.#waiters.clear();
    for (const waiter of waiters) waiter();
  }

  /** Resolves (never rejects) on a wake newer than `seen`, after `timeoutMs`, or when `signal` aborts. */
  wait(seen: number, options: WakeWaitOptions = {}): Promise<WakeReason> {
    if (this.#generation !== seen) return Promise.resolve('woken');
    const { signal, timeoutMs } = options;
    if (signal?.aborted) return Promise.resolve('aborted');
    return new Promise<WakeReason>((resolve) => {
      let cancelTimer: (() => void) | undefined;
      const finish = (reason: WakeReason) => {
        this.#waiters.delete(onWake);
        cancelTimer?.();
        signal?.removeEventListener('abort', onAbort);
        resolve(reason);
      };
      const onWake = () => finish('woken');
      const onAbort = () => finish('aborted');
      this.#waiters.add(onWake);
      signal?.addEventListener('abort', onAbort, { once: true });
      if (timeoutMs !== undefined) cancelTimer = this.clock.setTimer(() => finish('timeout'), Math.max(0, timeoutMs));
    });
  }
}
