/**
 * A `Clock` whose time moves only when the test says so. Timers fire in due order on
 * `advance`; `pending` lets a test wait until the code under test has gone to sleep.
 */
import type { Clock } from '../../src/util/clock.js';

interface ManualTimer {
  dueAt: number;
  callback: () => void;
  order: number;
}

export class ManualClock implements Clock {
  #now: number;
  #order = 0;
  readonly #timers = new Set<ManualTimer>();

  constructor(start = 1_700_000_000_000) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  setTimer(callback: () => void, ms: number): () => void {
    const timer: ManualTimer = { dueAt: this.#now + Math.max(0, ms), callback, order: this.#order++ };
    this.#timers.add(timer);
    return () => this.#timers.delete(timer);
  }

  /** Delays (from now) of the timers still waiting, soonest first. */
  get pending(): number[] {
    return [...this.#timers].map((timer) => timer.dueAt - this.#now).sort((a, b) => a - b);
  }

  /** Moves time on by `ms`, firing every timer that falls due, in order. */
  advance(ms: number): void {
    const target = this.#now + ms;
    for (;;) {
      const next = [...this.#timers].filter((timer) => timer.dueAt <= target).sort((a, b) => a.dueAt - b.dueAt || a.order - b.order)[0];
      if (!next) break;
      this.#timers.delete(next);
      this.#now = next.dueAt;
      next.callback();
    }
    this.#now = target;
  }
}
