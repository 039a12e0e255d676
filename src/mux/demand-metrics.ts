/**
 * The mux's demand signal: every `intervalMs` the busy, idle and starting listeners of each
 * pool, the shortfall against the pool's idle target and the utilization of its maximum go
 * to CloudWatch as EMF log lines (src/util/emf.ts). `deploy.scaling` scales the ECS service
 * on the service-wide `ListenerUtilization` (src/infra/cbactions.ts).
 *
 * Why four dimension sets. CloudWatch keeps one metric per namespace, name and exact set of
 * dimensions, and a plain metric query can't sum or average over one dimension's values (only
 * metric math SEARCH or Metrics Insights can, and target tracking takes neither: it needs a
 * direct metric). So every task also publishes its figures WITHOUT its `Task` dimension:
 * the datapoints of all tasks land in one metric, `{Project}` (or `{Project, Pool}`), whose
 * Average over a minute is the service-wide average per task and whose Sum, with one datum
 * per task per minute, the service-wide total. `Project` (the CodeBuild project's name,
 * unique in an account and region) keeps two deployments apart in the shared namespace.
 */
import { systemClock, type Clock } from '../util/clock.js';
import { publishMetrics, type EmfMetric } from '../util/emf.js';
import { describeError } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import type { PoolCapacity } from './elastic-pool.js';

/** Live counts of one pool of one mux: `Mux.capacity()` (elastic-pool.ts). */
export type { PoolCapacity };

export const DemandMetric = {
  BusyListeners: 'BusyListeners',
  IdleListeners: 'IdleListeners',
  StartingListeners: 'StartingListeners',
  /** Idle listeners missing from the idle target and not already starting: what this task can't supply (at its maximum, or a stopped pool). */
  IdleShortfall: 'IdleShortfall',
  /** 100 × busy / max; a task's (and the service's) value is its busiest pool's. */
  ListenerUtilization: 'ListenerUtilization',
} as const;

export const DemandDimension = {
  /** `codebuild.projectName`: one deployment. */
  Project: 'Project',
  /** The mux instance (the ECS task ARN on ECS). */
  Task: 'Task',
  Pool: 'Pool',
} as const;

interface Figures {
  busy: number;
  idle: number;
  starting: number;
  shortfall: number;
  utilization: number;
}

function poolFigures(pool: PoolCapacity): Figures {
  return {
    busy: pool.busy,
    idle: pool.idle,
    // A registration on its way is a listener starting, as far as demand goes.
    starting: pool.starting + pool.registering,
    shortfall: Math.max(0, pool.idleTarget - pool.idle - pool.starting - pool.registering),
    utilization: pool.max > 0 ? Math.min(100, (100 * pool.busy) / pool.max) : 0,
  };
}

/** The task's figures: counts add up; utilization is the busiest pool's (pools can't lend each other listeners). */
function taskFigures(pools: readonly Figures[]): Figures {
  return {
    busy: pools.reduce((sum, pool) => sum + pool.busy, 0),
    idle: pools.reduce((sum, pool) => sum + pool.idle, 0),
    starting: pools.reduce((sum, pool) => sum + pool.starting, 0),
    shortfall: pools.reduce((sum, pool) => sum + pool.shortfall, 0),
    utilization: pools.reduce((highest, pool) => Math.max(highest, pool.utilization), 0),
  };
}

function metricsOf(figures: Figures): EmfMetric[] {
  return [
    { name: DemandMetric.BusyListeners, unit: 'Count', value: figures.busy },
    { name: DemandMetric.IdleListeners, unit: 'Count', value: figures.idle },
    { name: DemandMetric.StartingListeners, unit: 'Count', value: figures.starting },
    { name: DemandMetric.IdleShortfall, unit: 'Count', value: figures.shortfall },
    { name: DemandMetric.ListenerUtilization, unit: 'Percent', value: Math.round(figures.utilization * 100) / 100 },
  ];
}

/** EMF dimension values are 1–1024 printable ASCII characters; a host name or path may not be. */
export function dimensionValue(text: string): string {
  const printable = text.replace(/[^\x20-\x7e]/g, '?').slice(0, 1024);
  return printable === '' ? '?' : printable;
}

/** One publication: per task and pool, per task, and the service-wide sets without `Task`. */
export function demandRecords(capacity: readonly PoolCapacity[], identity: { project: string; task: string }): { dimensions: Record<string, string>; metrics: EmfMetric[] }[] {
  if (capacity.length === 0) return [];
  const project = dimensionValue(identity.project);
  const task = dimensionValue(identity.task);
  const pools = capacity.map((pool) => ({ name: dimensionValue(pool.pool), figures: poolFigures(pool) }));
  const total = metricsOf(taskFigures(pools.map((pool) => pool.figures)));
  const { Project, Task, Pool } = DemandDimension;
  return [
    ...pools.map((pool) => ({ dimensions: { [Project]: project, [Task]: task, [Pool]: pool.name }, metrics: metricsOf(pool.figures) })),
    { dimensions: { [Project]: project, [Task]: task }, metrics: total },
    ...pools.map((pool) => ({ dimensions: { [Project]: project, [Pool]: pool.name }, metrics: metricsOf(pool.figures) })),
    { dimensions: { [Project]: project }, metrics: total },
  ];
}

export interface DemandMetricsOptions {
  /** The pools' live counts, read at each publication. */
  capacity: () => readonly PoolCapacity[];
  project: string;
  task: string;
  intervalMs: number;
  logger: Logger;
  clock?: Clock;
}

/**
 * Publishes `demandRecords` every `intervalMs`, on a fixed schedule (a slow publication
 * does not push the next ones later). A failure is logged and the next tick tries again.
 */
export class DemandMetrics {
  readonly #clock: Clock;
  #cancel: (() => void) | undefined;
  #nextAt = 0;
  #published = 0;

  constructor(private readonly options: DemandMetricsOptions) {
    this.#clock = options.clock ?? systemClock;
  }

  /** Publications so far (each one EMF line per record). */
  get published(): number {
    return this.#published;
  }

  start(): void {
    if (this.#cancel !== undefined) return;
    this.#nextAt = this.#clock.now() + this.options.intervalMs;
    this.#schedule();
    this.options.logger.info({ event: 'mux.demand-metrics-started', intervalSeconds: this.options.intervalMs / 1000, project: this.options.project, task: this.options.task });
  }

  stop(): void {
    this.#cancel?.();
    this.#cancel = undefined;
  }

  /** One publication now (also what each tick does). */
  publish(): void {
    try {
      const now = this.#clock.now();
      for (const record of demandRecords(this.options.capacity(), this.options)) publishMetrics(this.options.logger, record.metrics, record.dimensions, now);
      this.#published++;
    } catch (error) {
      this.options.logger.warn({ event: 'mux.demand-metrics-failed', error: describeError(error) });
    }
  }

  #schedule(): void {
    this.#cancel = this.#clock.setTimer(() => {
      this.publish();
      // Skip ticks missed while the event loop was blocked rather than firing them in a burst.
      const now = this.#clock.now();
      do this.#nextAt += this.options.intervalMs;
      while (this.#nextAt <= now);
      if (this.#cancel !== undefined) this.#schedule();
    }, Math.max(0, this.#nextAt - this.#clock.now()));
  }
}
