/**
 * ECS task scale-in protection while any job runs, so a deployment or scale-in never kills
 * a listener mid-job (the job's lease dies with it, RUNNER-PROTOCOL §3). Protection is
 * requested for a bounded time and renewed at half of it; errors are logged and retried
 * with backoff, never fatal. Without ECS_AGENT_URI (not on ECS) it is a logged no-op.
 */
import { describeError } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
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
}

export class TaskProtection {
  readonly available: boolean;
  #desired = false;
  #applied = false;
  #renewAt = 0;
  #failures = 0;
  #closed = false;
  #wake: (() => void) | undefined;
  #loop: Promise<void> | undefined;

  constructor(private readonly options: TaskProtectionOptions) {
    this.available = options.agentUri !== undefined && options.agentUri !== '';
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
    this.#loop ??= this.#run();
    this.#wake?.();
  }

  /** Stops renewing and clears protection (one bounded attempt per retry step, up to `deadlineMs`). */
  async close(deadlineMs = 10_000): Promise<void> {
    this.#desired = false;
    this.#closed = true;
    this.#wake?.();
    await this.#loop;
    if (!this.available || !this.#applied) return;
    const deadline = Date.now() + deadlineMs;
    for (let attempt = 0; Date.now() < deadline; attempt++) {
      if (await this.#put(false)) return;
      await new Promise((resolve) => setTimeout(resolve, Math.min(restartDelay(this.#retryPolicy(), attempt), Math.max(0, deadline - Date.now()))));
    }
  }

  #retryPolicy() {
    return this.options.retry ?? { initialMs: 1_000, maxMs: 30_000 };
  }

  async #run(): Promise<void> {
    while (!this.#closed) {
      const desired = this.#desired;
      const due = desired !== this.#applied || (desired && Date.now() >= this.#renewAt);
      let waitMs: number | undefined;
      if (due) {
        if (await this.#put(desired)) {
          this.#failures = 0;
          waitMs = desired ? Math.max(0, this.#renewAt - Date.now()) : undefined;
        } else {
          waitMs = restartDelay(this.#retryPolicy(), this.#failures++);
        }
      } else if (desired) {
        waitMs = Math.max(0, this.#renewAt - Date.now());
      }
      await new Promise<void>((resolve) => {
        const timer = waitMs === undefined ? undefined : setTimeout(resolve, waitMs);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#wake = undefined;
    }
  }

  async #put(protect: boolean): Promise<boolean> {
    const url = `${(this.options.agentUri ?? '').replace(/\/+$/, '')}/task-protection/v1/state`;
    const body = protect ? { ProtectionEnabled: true, ExpiresInMinutes: this.options.expiresInMinutes } : { ProtectionEnabled: false };
    try {
      const response = await (this.options.fetchImpl ?? fetch)(url, {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(this.options.requestTimeoutMs ?? 5_000),
      });
      const text = await response.text();
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
      if (protect) this.#renewAt = Date.now() + (this.options.renewAfterMs ?? (this.options.expiresInMinutes * 60_000) / 2);
      this.options.onChange?.(protect);
      this.options.logger.info({ event: protect ? 'mux.task-protection-enabled' : 'mux.task-protection-cleared', expiresInMinutes: protect ? this.options.expiresInMinutes : undefined });
      return true;
    } catch (error) {
      this.options.logger.warn({ event: 'mux.task-protection-failed', protect, error: describeError(error) });
      return false;
    }
  }
}
