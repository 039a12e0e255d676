import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { JobMetricNames } from '../mux/job-metrics.js';
import { METRICS_NAMESPACE } from '../util/emf.js';

/**
 * Log events the alarms count. The mux logs JSON (pino) to stdout, which the task sends to
 * its log group; these `event` values and fields are the contract with src/mux and
 * src/watcher:
 * - `mux.listener-exited` with `expected: boolean` — false unless the listener exited 0
 *   after running its one job; every unexpected exit is a restart the alarm counts.
 * - `worker.failed` — a job that could not run (the mux's watcher logs one per job).
 * - `mux.pool-stopped` — a pool gave up (deprecated runner, self-update): a person must act.
 */
export const LogEvents = {
  ListenerExited: 'mux.listener-exited',
  WorkerFailed: 'worker.failed',
  PoolStopped: 'mux.pool-stopped',
} as const;

export const Metrics = {
  ListenerRestarts: 'ListenerRestarts',
  FailedDispatches: 'FailedDispatches',
  PoolsStopped: 'PoolsStopped',
} as const;

export const FilterPatterns = {
  listenerRestarts: logs.FilterPattern.all(logs.FilterPattern.stringValue('$.event', '=', LogEvents.ListenerExited), logs.FilterPattern.booleanValue('$.expected', false)),
  failedDispatches: logs.FilterPattern.stringValue('$.event', '=', LogEvents.WorkerFailed),
  poolsStopped: logs.FilterPattern.stringValue('$.event', '=', LogEvents.PoolStopped),
};

export interface MonitoringProps {
  /** The mux's log group (the task's stdout/stderr). */
  readonly muxLogGroup: logs.ILogGroup;
  /** Namespace of the metrics the filters publish; one per stack. */
  readonly namespace: string;
  /** Unexpected listener exits within `period` that raise the alarm. */
  readonly listenerRestartThreshold: number;
  /** Failed dispatches within `period` that raise the alarm. */
  readonly failedDispatchThreshold: number;
  readonly period: Duration;
  /** The config's pool names: the start-latency and cost widgets graph each (EMF metrics the mux publishes). */
  readonly pools?: readonly string[];
  /** More widgets for the dashboard (ECS, CodeBuild, queue metrics). */
  readonly extraWidgets?: cloudwatch.IWidget[][];
  readonly dashboardName?: string;
}

/** Metric filters on the mux's JSON logs, their alarms, and a dashboard. */
export class Monitoring extends Construct {
  readonly alarms: cloudwatch.Alarm[] = [];
  readonly dashboard: cloudwatch.Dashboard;
  readonly metrics: Record<keyof typeof Metrics, cloudwatch.Metric>;

  constructor(scope: Construct, id: string, props: MonitoringProps) {
    super(scope, id);
    const metric = (name: string, pattern: logs.IFilterPattern): cloudwatch.Metric => {
      const filter = new logs.MetricFilter(this, `${name}Filter`, {
        logGroup: props.muxLogGroup,
        filterPattern: pattern,
        metricNamespace: props.namespace,
        metricName: name,
        metricValue: '1',
        // Zero when nothing matched, so the alarm sees "no restarts" rather than missing data.
        defaultValue: 0,
      });
      return filter.metric({ statistic: cloudwatch.Stats.SUM, period: props.period });
    };
    this.metrics = {
      ListenerRestarts: metric(Metrics.ListenerRestarts, FilterPatterns.listenerRestarts),
      FailedDispatches: metric(Metrics.FailedDispatches, FilterPatterns.failedDispatches),
      PoolsStopped: metric(Metrics.PoolsStopped, FilterPatterns.poolsStopped),
    };
    const alarm = (id: string, metricOf: cloudwatch.Metric, threshold: number, description: string) => {
      const created = new cloudwatch.Alarm(this, id, {
        metric: metricOf,
        threshold,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        alarmDescription: description,
      });
      this.alarms.push(created);
      return created;
    };
    const minutes = props.period.toMinutes();
    alarm(
      'ListenerRestartsAlarm',
      this.metrics.ListenerRestarts,
      props.listenerRestartThreshold,
      `Runner.Listener processes exited unexpectedly ${props.listenerRestartThreshold}+ times in ${minutes} min (log event ${LogEvents.ListenerExited} with expected=false): registration, GitHub credentials or the runner version may be broken.`,
    );
    alarm(
      'FailedDispatchesAlarm',
      this.metrics.FailedDispatches,
      props.failedDispatchThreshold,
      `${props.failedDispatchThreshold}+ GitHub jobs could not run in CodeBuild in ${minutes} min (log event ${LogEvents.WorkerFailed}); the reason is on each failed job in GitHub and in the mux log.`,
    );
    alarm('PoolsStoppedAlarm', this.metrics.PoolsStopped, 1, `A runner pool stopped (log event ${LogEvents.PoolStopped}): a person must act (see the mux log).`);

    this.dashboard = new cloudwatch.Dashboard(this, 'Dashboard', {
      ...(props.dashboardName === undefined ? {} : { dashboardName: props.dashboardName }),
      defaultInterval: Duration.hours(6),
    });
    this.dashboard.addWidgets(
      new cloudwatch.GraphWidget({ title: 'Listener restarts', left: [this.metrics.ListenerRestarts], width: 8 }),
      new cloudwatch.GraphWidget({ title: 'Failed dispatches (jobs that did not run)', left: [this.metrics.FailedDispatches], width: 8 }),
      new cloudwatch.AlarmStatusWidget({ title: 'Alarms', alarms: this.alarms, width: 8 }),
    );
    const pools = props.pools ?? [];
    if (pools.length > 0) this.dashboard.addWidgets(...jobWidgets(pools, props.period));
    for (const row of props.extraWidgets ?? []) this.dashboard.addWidgets(...row);
    this.dashboard.addWidgets(
      new cloudwatch.LogQueryWidget({
        title: 'Recent failed dispatches',
        logGroupNames: [props.muxLogGroup.logGroupName],
        width: 24,
        queryLines: [
          'fields @timestamp, code, failureCode, pool, slot, jobId, buildId',
          `filter event = "${LogEvents.WorkerFailed}"`,
          'sort @timestamp desc',
          'limit 50',
        ],
      }),
    );
  }
}

/** The mux's EMF metrics of one pool (namespace `cbactions`, src/mux/job-metrics.ts). */
function jobMetric(name: string, dimensions: Record<string, string>, statistic: string, period: Duration, label: string): cloudwatch.Metric {
  return new cloudwatch.Metric({ namespace: METRICS_NAMESPACE, metricName: name, dimensionsMap: dimensions, statistic, period, label });
}

/**
 * Start latency (job assigned → Runner.Worker started) p50 and p95 per pool, cold and warm
 * starts apart, and what the pools' builds and standby builds cost at list price.
 */
export function jobWidgets(pools: readonly string[], period: Duration): cloudwatch.IWidget[] {
  const latency = pools.flatMap((pool) =>
    (['cold', 'warm'] as const).flatMap((start) =>
      (['p50', 'p95'] as const).map((statistic) => jobMetric(JobMetricNames.StartLatency, { Pool: pool, Start: start }, statistic, period, `${pool} ${start} ${statistic}`)),
    ),
  );
  const cost = pools.flatMap((pool) => [
    jobMetric(JobMetricNames.JobCost, { Pool: pool }, cloudwatch.Stats.SUM, period, `${pool} jobs`),
    jobMetric(JobMetricNames.StandbyCost, { Pool: pool }, cloudwatch.Stats.SUM, period, `${pool} standby`),
  ]);
  return [
    new cloudwatch.GraphWidget({ title: 'Job start latency p50/p95 (s): assigned to Runner.Worker started', left: latency, width: 12, leftYAxis: { min: 0, label: 'seconds', showUnits: false } }),
    new cloudwatch.GraphWidget({ title: 'Build cost at list price (config pricing)', left: cost, width: 12, stacked: true, leftYAxis: { min: 0, showUnits: false } }),
  ];
}
