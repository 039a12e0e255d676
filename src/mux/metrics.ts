/** Prometheus metrics of the mux, in a registry of its own (served at `/metrics`). */
import { Counter, Gauge, Registry } from 'prom-client';
import { SLOT_STATES, type SlotState } from './status-model.js';

export class MuxMetrics {
  readonly registry = new Registry();
  readonly jobsStarted: Counter<'pool'>;
  readonly jobsFinished: Counter<'pool' | 'result'>;
  readonly registrationErrors: Counter<'pool'>;
  readonly listenerRestarts: Counter<'pool' | 'exit_code'>;
  readonly poolStopped: Gauge<'pool'>;
  readonly taskProtection: Gauge;

  /** `slotStates` is read at every scrape, so the gauge is never stale. */
  constructor(slotStates: () => { pool: string; state: SlotState }[]) {
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
  }

  /** `cbactions_mux_standby_builds{pool,state}`: the warm pools' standby builds, read at every scrape. */
  trackStandbys(standbys: () => { pool: string; state: string }[]): void {
    new Gauge({
      name: 'cbactions_mux_standby_builds',
      help: 'Standby builds of warm pools, by state (live: waiting for a job; claimed: handed a job; stopping)',
      labelNames: ['pool', 'state'] as const,
      registers: [this.registry],
      collect() {
        this.reset();
        const counts = new Map<string, number>();
        for (const { pool, state } of standbys()) counts.set(JSON.stringify([pool, state]), (counts.get(JSON.stringify([pool, state])) ?? 0) + 1);
        for (const [key, count] of counts) {
          const [pool, state] = JSON.parse(key) as [string, string];
          this.set({ pool, state }, count);
        }
      },
    });
  }
}
