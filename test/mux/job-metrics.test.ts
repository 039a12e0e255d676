import { describe, expect, it } from 'vitest';
import { BuildSettingsSchema, PricingSchema } from '../../src/config/schema.js';
import type { JobTimelineRecord } from '../../src/dispatch/job-timeline.js';
import { JobMetrics } from '../../src/mux/job-metrics.js';
import { MuxMetrics } from '../../src/mux/metrics.js';
import { captureLogger } from './capture-logger.js';

const T = 1_800_000_000_000;

function record(pool: string, start: 'warm' | 'cold', startLatencyMs: number): JobTimelineRecord {
  return {
    pool,
    jobId: `job-${startLatencyMs}`,
    buildId: 'cbactions:1',
    start,
    times: { assignedAt: T, dispatchedAt: T + 5 },
    durations: { dispatchMs: 5, startLatencyMs, waitedForCodeBuildMs: startLatencyMs - 1000 },
    clock: { offsetMs: 0, uncertaintyMs: 30 },
    cost: { computeType: 'BUILD_GENERAL1_SMALL', rule: 'per-minute', region: 'us-east-1', durationMs: 90_000, billedSeconds: 120, currency: 'USD', asOf: '2026-05', perMinute: 0.005, amount: 0.01 },
  };
}

async function sample(metrics: MuxMetrics, name: string, labels: Record<string, string>): Promise<number | undefined> {
  const metric = (await metrics.registry.getMetricsAsJSON()).find((candidate) => candidate.name === name);
  return metric?.values.find((value) => Object.entries(labels).every(([key, wanted]) => String(value.labels[key]) === wanted))?.value;
}

describe('start latency and cost as metrics', () => {
  it('observes each job in /metrics by pool and start, and publishes the same to CloudWatch as EMF', async () => {
    const metrics = new MuxMetrics(() => []);
    const logs = captureLogger();
    const jobMetrics = new JobMetrics(metrics, logs.logger, PricingSchema.parse({}));
    jobMetrics.recordJob(record('small', 'cold', 21_000));
    jobMetrics.recordJob(record('small', 'warm', 800));
    expect(await sample(metrics, 'cbactions_job_start_latency_seconds', { pool: 'small', start: 'cold', le: '30' })).toBe(1);
    expect(await sample(metrics, 'cbactions_job_start_latency_seconds', { pool: 'small', start: 'cold', le: '20' })).toBe(0);
    expect(await sample(metrics, 'cbactions_job_start_latency_seconds', { pool: 'small', start: 'warm', le: '1' })).toBe(1);
    expect(await sample(metrics, 'cbactions_job_codebuild_wait_seconds', { pool: 'small', start: 'cold', le: '20' })).toBe(1);
    expect(await sample(metrics, 'cbactions_job_cost_total', { pool: 'small', currency: 'USD' })).toBeCloseTo(0.02, 9);
    expect(await sample(metrics, 'cbactions_job_billed_seconds_total', { pool: 'small' })).toBe(240);
    const emf = logs.records.filter((line) => line.event === 'metrics.emf');
    expect(emf).toHaveLength(2);
    expect(emf[0]).toMatchObject({ Pool: 'small', Start: 'cold', JobStartLatency: 21, JobCodeBuildWait: 20, JobCost: 0.01, JobBilledSeconds: 120 });
    expect(emf[0]?._aws).toMatchObject({ CloudWatchMetrics: [{ Namespace: 'cbactions', Dimensions: [['Pool', 'Start']] }] });
  });

  it("counts a standby build's minutes and cost apart (recordStandbyCost), and logs them", async () => {
    const metrics = new MuxMetrics(() => []);
    const logs = captureLogger();
    const jobMetrics = new JobMetrics(metrics, logs.logger, PricingSchema.parse({}));
    const cost = jobMetrics.recordStandbyCost({ pool: 'small', build: BuildSettingsSchema.parse({ computeType: 'BUILD_GENERAL1_MEDIUM' }), region: 'us-east-1', startedAt: new Date(T), endedAt: T + 300_500 });
    expect(cost).toMatchObject({ billedSeconds: 360, amount: 0.06 });
    expect(await sample(metrics, 'cbactions_standby_billed_seconds_total', { pool: 'small' })).toBe(360);
    expect(await sample(metrics, 'cbactions_standby_cost_total', { pool: 'small', currency: 'USD' })).toBeCloseTo(0.06, 9);
    expect(logs.records.find((line) => line.event === 'metrics.emf')).toMatchObject({ Pool: 'small', StandbyBilledSeconds: 360, StandbyCost: 0.06 });
    expect(logs.events()).toContain('standby.cost');
  });

  it('a pool name CloudWatch cannot take as a dimension costs the metric, not the job', () => {
    const metrics = new MuxMetrics(() => []);
    const logs = captureLogger();
    new JobMetrics(metrics, logs.logger, PricingSchema.parse({})).recordJob(record('ünïcode', 'cold', 1000));
    expect(logs.events()).toContain('metrics.emf-failed');
  });
});
