/** Prometheus metrics of the mux, in a registry of its own (served at `/metrics`). */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { PoolCapacity } from './elastic-pool.js';
import { SLOT_STATES, type SlotState } from './status-model.js';

export class MuxMetrics {
  readonly registry = new Registry();
  readonly jobsStarted: Counter<'pool'>;
  readonly jobsFinished: Counter<'pool' | 'result'>;
  readonly registrationErrors: Counter<'pool'>;
  readonly listenerRestarts: Counter<'pool' | 'exit_code'>;
  readonly poolStopped: Gauge<'pool'>;
  readonly taskProtection: Gauge;
  readonly listenersStarted: Counter<'pool'>;
  readonly listenersRetired: Counter<'pool' | 'reason'>;
  readonly jobWaitAtMax: Histogram<'pool'>;
  readonly poolAtMaxSeconds: Counter<'pool'>;

  /** `slotStates` and `capacity` are read at every scrape, so the gauges are never stale. */
  constructor(slotStates: () => { pool: string; state: SlotState }[], capacity: () => PoolCapacity[] = () => []) {
    const registers = [this.registry];
    new Gauge({
      name: 'cbactions_mux_slots',
      help: 'Runner slots by pool and state',
      labelNames: ['pool', 'state'] as const,
      registers,
      collect() {
        this.reset();
        const counts = new Map<string, Map<SlotState, number>>();
        for (const { pool, state } of slotStates()) {
          const byState = counts.get(pool) ?? new Map(SLOT_STATES.map((s) => [s, 0] as const));
          byState.set(state, (byState.get(state) ?? 0) + 1);
          counts.set(pool, byState);
        }
        for (const [pool, byState] of counts) for (const [state, count] of byState) this.set({ pool, state }, count);
      },
    });
    this.jobsStarted = new Counter({ name: 'cbactions_mux_jobs_started_total', help: 'Jobs a listener started ("Running job:")', labelNames: ['pool'] as const, registers });
    this.jobsFinished = new Counter({
      name: 'cbactions_mux_jobs_finished_total',
      help: 'Jobs finished, by the result the listener reported (unknown when it exited without one)',
      labelNames: ['pool', 'result'] as const,
      registers,
    });
    this.registrationErrors = new Counter({ name: 'cbactions_mux_registration_errors_total', help: 'Failed attempts to register a runner', labelNames: ['pool'] as const, registers });
    this.listenerRestarts = new Counter({
      name: 'cbactions_mux_listener_restarts_total',
      help: 'Listener exits handled by restarting, re-registering or stopping, by exit code (or signal)',
      labelNames: ['pool', 'exit_code'] as const,
      registers,
    });
    this.poolStopped = new Gauge({ name: 'cbactions_mux_pool_stopped', help: '1 when a pool was stopped because a person must act (self-update attempt, deprecated runner version)', labelNames: ['pool'] as const, registers });
    this.taskProtection = new Gauge({ name: 'cbactions_mux_task_protection_enabled', help: '1 while ECS task scale-in protection is held', registers });
    new Gauge({
      name: 'cbactions_mux_pool_capacity',
      help: 'Per pool: listeners by kind (busy, idle, starting), registrations held ahead (prepared), and the targets (idle_target, prepared_target, max)',
      labelNames: ['pool', 'kind'] as const,
      registers,
      collect() {
        this.reset();
        for (const pool of capacity()) {
          for (const kind of ['busy', 'idle', 'starting', 'prepared', 'registering', 'idleTarget', 'preparedTarget', 'max'] as const) {
            this.set({ pool: pool.pool, kind: kind.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`) }, pool[kind]);
          }
        }
      },
    });
    this.listenersStarted = new Counter({ name: 'cbactions_mux_listeners_started_total', help: 'Listener processes started (a new registration, or a restart)', labelNames: ['pool'] as const, registers });
    this.listenersRetired = new Counter({
      name: 'cbactions_mux_listeners_retired_total',
      help: 'Idle listeners and prepared registrations the pool retired (registration deleted), by reason',
      labelNames: ['pool', 'reason'] as const,
      registers,
    });
    this.jobWaitAtMax = new Histogram({
      name: 'cbactions_mux_job_wait_at_max_seconds',
      help: 'Jobs picked up at once by a listener that started after the pool had been at its maximum: time since the pool reached it (an upper bound of the time the job waited in GitHub\'s queue)',
      labelNames: ['pool'] as const,
      buckets: [1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600],
      registers,
    });
    this.poolAtMaxSeconds = new Counter({ name: 'cbactions_mux_pool_at_max_seconds_total', help: 'Time the pool spent with max listeners, all busy (jobs beyond that wait in GitHub\'s queue)', labelNames: ['pool'] as const, registers });
  }
}
