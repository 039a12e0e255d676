/**
 * ECS task scale-in protection while any job runs, so a deployment or scale-in never kills
 * a listener mid-job (the job's lease dies with it, RUNNER-PROTOCOL §3). Protection is
 * requested for a bounded time and renewed at half of it; errors are logged and retried
 * with backoff, never fatal. Without ECS_AGENT_URI (not on ECS) it is a logged no-op.
 *
 * One request at a time, in order: a clear sent while an enable is still in flight could
 * reach ECS first and leave the task protected until expiry. A change that arrives while a
 * request is in flight is never lost (`Wakeup`): the loop decides again as soon as the
 * request ends.
 */
import { systemClock, delay, type Clock } from '../util/clock.js';
import { describeError } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { Wakeup } from '../util/wakeup.js';
import { restartDelay } from './restart-backoff.js';

export interface TaskProtectionOptions {
  /** `ECS_AGENT_URI`; undefined = not running on ECS. */
  agentUri: string | undefined;
  expiresInMinutes: number;
  logger: Logger;
  fetchImpl?: typeof fetch;
  retry?: { initialMs: number; maxMs: number };
  requestTimeoutMs?: number;
  /** Renew this long after a successful request; default half of `expiresInMinutes`. */
  renewAfterMs?: number;
  onChange?: (enabled: boolean) => void;
  /** Renewals and retry delays run on this clock; the system clock by default. */
  clock?: Clock;
}

export class TaskProtection {
  readonly available: boolean;
  #desired = false;
  /** What the agent last confirmed. */
  #applied = false;
  /**
   * The task may be protected: an enable was sent and no clear has succeeded since. An
   * enable without an answer (timeout, reset) may have reached ECS, so it counts.
   */
  #mayBeProtected = false;
  #renewAt = 0;
  #failures = 0;
  #closed = false;
  readonly #changes: Wakeup;
  readonly #clock: Clock;
  #loop: Promise<void> | undefined;
  #closing: Promise<void> | undefined;

  constructor(private readonly options: TaskProtectionOptions) {
    this.available = options.agentUri !== undefined && options.agentUri !== '';
    this.#clock = options.clock ?? systemClock;
    this.#changes = new Wakeup(this.#clock);
    if (!this.available) {
      options.logger.info({ event: 'mux.task-protection-unavailable', reason: 'ECS_AGENT_URI is not set: not running on ECS, scale-in protection is skipped' });
    }
  }

  get enabled(): boolean {
    return this.#applied;
  }

  /** true while any slot is busy. Cheap to call on every state change. */
  setDesired(protect: boolean): void {
    if (this.#closed || protect === this.#desired) return;
    this.#desired = protect;
    if (!this.available) {
      this.options.logger.info({ event: 'mux.task-protection-skipped', protect, reason: 'ECS_AGENT_URI is not set' });
      return;
    }
    this.#changes.wake();
    this.#loop ??= this.#run();
  }

  /**
   * Stops renewing and clears protection: waits for a request in flight (bounded by
   * `requestTimeoutMs`), then one bounded attempt per retry step, up to `deadlineMs`.
   * Always settles; a second call returns the first one's promise.
   */
  close(deadlineMs = 10_000): Promise<void> {
    this.#closing ??= this.#close(deadlineMs);
    return this.#closing;
  }

  async #close(deadlineMs: number): Promise<void> {
    this.#desired = false;
    this.#closed = true;
    this.#changes.wake();
    await this.#loop;
    if (!this.available || !this.#mayBeProtected) return;
    const deadline = this.#clock.now() + deadlineMs;
    for (let attempt = 0; this.#clock.now() < deadline; attempt++) {
      if (await this.#put(false)) return;
      await delay(this.#clock, Math.min(restartDelay(this.#retryPolicy(), attempt), Math.max(0, deadline - this.#clock.now())));
    }
    this.options.logger.warn({ event: 'mux.task-protection-clear-abandoned', deadlineMs, reason: 'the ECS agent did not confirm the clear in time; protection ends when it expires' });
  }

  #retryPolicy() {
    return this.options.retry ?? { initialMs: 1_000, maxMs: 30_000 };
  }

  async #run(): Promise<void> {
    while (!this.#closed) {
      // Read before deciding: a change made while the request below is in flight makes
      // the wait return at once, and the next round sees the new wish.
      const seen = this.#changes.generation;
      const desired = this.#desired;
      const now = this.#clock.now();
      const due = desired ? !this.#applied || now >= this.#renewAt : this.#mayBeProtected;
      let waitMs: number | undefined;
      if (due) {
        if (await this.#put(desired)) {
          this.#failures = 0;
          continue;
        }
        waitMs = restartDelay(this.#retryPolicy(), this.#failures++);
      } else if (desired) {
        waitMs = Math.max(0, this.#renewAt - now);
      }
      await this.#changes.wait(seen, { timeoutMs: waitMs });
    }
  }

  /** true once the agent confirmed the new state. */
  async #put(protect: boolean): Promise<boolean> {
    const url = `${(this.options.agentUri ?? '').replace(/\/+$/, '')}/task-protection/v1/state`;
    const body = protect ? { ProtectionEnabled: true, ExpiresInMinutes: this.options.expiresInMinutes } : { ProtectionEnabled: false };
    const mayBeProtectedBefore = this.#mayBeProtected;
    if (protect) this.#mayBeProtected = true;
    let answered = false;
    try {
      const response = await (this.options.fetchImpl ?? fetch)(url, {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(this.options.requestTimeoutMs ?? 5_000),
      });
      const text = await response.text();
      answered = true;
      let parsed: { failure?: unknown; error?: unknown } = {};
      try {
        parsed = JSON.parse(text) as typeof parsed;
      } catch {
        /* the agent answers JSON; anything else is judged by the status alone */
      }
      // The agent reports some failures with HTTP 200 and a `failure` or `error` object.
      if (!response.ok || parsed.failure !== undefined || parsed.error !== undefined) {
        throw new Error(`HTTP ${response.status}: ${text.slice(0, 300)}`);
      }
      this.#applied = protect;
      if (protect) this.#renewAt = this.#clock.now() + (this.options.renewAfterMs ?? (this.options.expiresInMinutes * 60_000) / 2);
      else this.#mayBeProtected = false;
      this.options.onChange?.(protect);
      this.options.logger.info({ event: protect ? 'mux.task-protection-enabled' : 'mux.task-protection-cleared', expiresInMinutes: protect ? this.options.expiresInMinutes : undefined });
      return true;
    } catch (error) {
      // An answered failure, or a refused connection, changed nothing at the agent.
      if (protect && (answered || connectionRefused(error))) this.#mayBeProtected = mayBeProtectedBefore;
      this.options.logger.warn({ event: 'mux.task-protection-failed', protect, error: describeError(error) });
      return false;
    }
  }
}

/** fetch's "fetch failed" wraps the socket error as `cause`. */
function connectionRefused(error: unknown): boolean {
  const cause = (error as { cause?: { code?: unknown } } | undefined)?.cause;
  return cause?.code === 'ECONNREFUSED';
}
