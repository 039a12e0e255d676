/**
 * Start latency and cost as metrics, twice: in `/metrics` (Prometheus, MuxMetrics) and in
 * CloudWatch (EMF records through util/emf.ts; the dashboard's start-latency widget reads
 * them). Fed with each job's `job.timeline` record, and by the standby manager with each
 * standby build that ended without a job.
 */
import type { BuildSettings, PricingConfig } from '../config/schema.js';
import { buildCost, priceFacts, type BuildCost } from '../dispatch/job-cost.js';
import type { JobTimelineRecord } from '../dispatch/job-timeline.js';
import { publishMetrics, type EmfMetric } from '../util/emf.js';
import type { Logger } from '../util/logger.js';
import type { MuxMetrics } from './metrics.js';

/** CloudWatch metric names (namespace `cbactions`); src/infra/monitoring.ts graphs them. */
export const JobMetricNames = {
  StartLatency: 'JobStartLatency',
  CodeBuildWait: 'JobCodeBuildWait',
  JobCost: 'JobCost',
  JobBilledSeconds: 'JobBilledSeconds',
  StandbyCost: 'StandbyCost',
  StandbyBilledSeconds: 'StandbyBilledSeconds',
} as const;

export interface StandbyCostInput {
  pool: string;
  build: Pick<BuildSettings, 'computeType' | 'environmentType' | 'fleetArn'>;
  /** The build's region (its ARN names it). */
  region: string;
  /** The standby build's own start and end (CodeBuild's startTime and endTime). */
  startedAt: Date | number;
  endedAt: Date | number;
}

export class JobMetrics {
  constructor(
    private readonly metrics: MuxMetrics,
    private readonly logger: Logger,
    private readonly pricing: PricingConfig,
  ) {}

  /** One job's timeline, from the `done` dispatch event. */
  recordJob(record: JobTimelineRecord): void {
    const labels = { pool: record.pool, start: record.start };
    const emf: EmfMetric[] = [];
    const { startLatencyMs, waitedForCodeBuildMs } = record.durations;
    if (startLatencyMs !== undefined) {
      this.metrics.jobStartLatency.observe(labels, startLatencyMs / 1000);
      emf.push({ name: JobMetricNames.StartLatency, unit: 'Seconds', value: startLatencyMs / 1000 });
    }
    if (waitedForCodeBuildMs !== undefined) {
      this.metrics.jobCodeBuildWait.observe(labels, waitedForCodeBuildMs / 1000);
      emf.push({ name: JobMetricNames.CodeBuildWait, unit: 'Seconds', value: waitedForCodeBuildMs / 1000 });
    }
    const cost = record.cost;
    if (cost) {
      this.metrics.jobBilledSeconds.inc({ pool: record.pool }, cost.billedSeconds);
      emf.push({ name: JobMetricNames.JobBilledSeconds, unit: 'Seconds', value: cost.billedSeconds });
      if (cost.amount !== undefined) {
        this.metrics.jobCost.inc({ pool: record.pool, currency: cost.currency }, cost.amount);
        emf.push({ name: JobMetricNames.JobCost, unit: 'None', value: cost.amount });
      }
    }
    this.#publish(emf, { Pool: record.pool, Start: record.start });
  }

  /**
   * A standby build that ended without a job (expired, stopped, failed): its minutes are the
   * price of being warm. A standby that took a job is that job's build and is counted there.
   */
  recordStandbyCost(input: StandbyCostInput): BuildCost {
    const ms = (time: Date | number) => (typeof time === 'number' ? time : time.getTime());
    const cost = buildCost(priceFacts(this.pricing, input.region, input.build), ms(input.endedAt) - ms(input.startedAt));
    this.metrics.standbyBilledSeconds.inc({ pool: input.pool }, cost.billedSeconds);
    const emf: EmfMetric[] = [{ name: JobMetricNames.StandbyBilledSeconds, unit: 'Seconds', value: cost.billedSeconds }];
    if (cost.amount !== undefined) {
      this.metrics.standbyCost.inc({ pool: input.pool, currency: cost.currency }, cost.amount);
      emf.push({ name: JobMetricNames.StandbyCost, unit: 'None', value: cost.amount });
    }
    this.logger.info({ event: 'standby.cost', pool: input.pool, cost }, 'standby build cost');
    this.#publish(emf, { Pool: input.pool });
    return cost;
  }

  #publish(metrics: EmfMetric[], dimensions: Record<string, string>): void {
    try {
      publishMetrics(this.logger, metrics, dimensions);
    } catch (error) {
      // A pool name CloudWatch cannot take as a dimension must not end the job's bookkeeping.
      this.logger.warn({ event: 'metrics.emf-failed', error: error instanceof Error ? error.message : String(error) }, 'could not publish metrics');
    }
  }
}
