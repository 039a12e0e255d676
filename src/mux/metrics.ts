/** Prometheus metrics of the mux, in a registry of its own (served at `/metrics`). */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { AdmissionDecision } from '../dispatch/admission.js';
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
  readonly jobStartLatency: Histogram<'pool' | 'start'>;
  readonly jobCodeBuildWait: Histogram<'pool' | 'start'>;
  readonly jobCost: Counter<'pool' | 'currency'>;
  readonly jobBilledSeconds: Counter<'pool'>;
  readonly standbyCost: Counter<'pool' | 'currency'>;
  readonly standbyBilledSeconds: Counter<'pool'>;
  readonly policyDecisions: Counter<'pool' | 'rule' | 'effect'>;
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
    // From a warm start's fraction of a second to a cold start's minutes in the queue.
    const startBuckets = [0.25, 0.5, 1, 2, 5, 10, 20, 30, 45, 60, 120, 300, 600];
    this.jobStartLatency = new Histogram({
      name: 'cbactions_job_start_latency_seconds',
      help: 'Job assigned (NewJobRequest read) to Runner.Worker started in its build, by pool and start (warm: a standby build; cold: a new build)',
      labelNames: ['pool', 'start'] as const,
      buckets: startBuckets,
      registers,
    });
    this.jobCodeBuildWait = new Histogram({
      name: 'cbactions_job_codebuild_wait_seconds',
      help: "CodeBuild's own SUBMITTED + QUEUED + PROVISIONING time of the job's build, by pool and start",
      labelNames: ['pool', 'start'] as const,
      buckets: startBuckets,
      registers,
    });
    this.jobCost = new Counter({ name: 'cbactions_job_cost_total', help: "List-price cost of jobs' builds under CodeBuild's billing rule (config pricing), by pool", labelNames: ['pool', 'currency'] as const, registers });
    this.jobBilledSeconds = new Counter({ name: 'cbactions_job_billed_seconds_total', help: "Billed build time of jobs' builds, by pool", labelNames: ['pool'] as const, registers });
    this.standbyCost = new Counter({ name: 'cbactions_standby_cost_total', help: 'List-price cost of standby builds that ended without a job, by pool', labelNames: ['pool', 'currency'] as const, registers });
    this.standbyBilledSeconds = new Counter({ name: 'cbactions_standby_billed_seconds_total', help: 'Billed build time of standby builds that ended without a job, by pool', labelNames: ['pool'] as const, registers });
    this.policyDecisions = new Counter({
      name: 'cbactions_mux_policy_decisions_total',
      help: 'Admission policy decisions of in-process dispatch, by pool, deciding rule ("(default)" for policy.defaultEffect) and effect (run or refuse)',
      labelNames: ['pool', 'rule', 'effect'] as const,
      registers,
    });
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

  /** One admission decision of in-process dispatch (dispatch-server.ts `onAdmission`). */
  recordAdmission(decision: Pick<AdmissionDecision, 'rule' | 'effect'>, job: { pool: string }): void {
    this.policyDecisions.inc({ pool: job.pool, rule: decision.rule, effect: decision.effect });
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
