/**
 * CloudWatch metrics without an API call: an Embedded Metric Format record is a JSON log
 * line with an `_aws` member, and CloudWatch Logs turns it into metrics when the line
 * reaches a log group (the mux's awslogs driver sends every log line there). No
 * `cloudwatch:PutMetricData` permission, no request per datum, no agent.
 *
 * Why not the aws-embedded-metrics package: it writes with console.log beside our pino
 * stream and, on ECS, defaults to a CloudWatch agent sink on TCP 25888 that the listener
 * task does not run. The format itself is small and specified:
 * https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html
 */
import type { Logger } from './logger.js';

/** The metrics namespace every cbactions metric is published in (the CDK dashboard and alarms read it). */
export const METRICS_NAMESPACE = 'cbactions';

export type EmfUnit = 'Seconds' | 'Milliseconds' | 'Count' | 'None' | 'Percent';

export interface EmfMetric {
  name: string;
  unit: EmfUnit;
  /** One value, or several (CloudWatch aggregates them as one datum set: percentiles work). */
  value: number | number[];
}

/** At most 30 dimensions per set and 100 values per metric (the format's limits). */
const MAX_DIMENSIONS = 30;
const MAX_VALUES = 100;
const DIMENSION_VALUE = /^[\x20-\x7e]{1,1024}$/;

export interface EmfRecord {
  _aws: {
    Timestamp: number;
    CloudWatchMetrics: { Namespace: string; Dimensions: string[][]; Metrics: { Name: string; Unit: EmfUnit }[] }[];
  };
  [member: string]: unknown;
}

/**
 * One EMF record: `dimensions` (e.g. `{ Pool: 'small' }`) apply to every metric in it.
 * Throws on what CloudWatch would silently drop (a non-finite value, a bad dimension).
 */
export function emfRecord(metrics: readonly EmfMetric[], dimensions: Readonly<Record<string, string>>, now: number = Date.now()): EmfRecord {
  const names = Object.keys(dimensions);
  if (names.length > MAX_DIMENSIONS) throw new RangeError(`an EMF record takes at most ${MAX_DIMENSIONS} dimensions, got ${names.length}`);
  const record: EmfRecord = {
    _aws: { Timestamp: now, CloudWatchMetrics: [{ Namespace: METRICS_NAMESPACE, Dimensions: [names], Metrics: [] }] },
  };
  for (const [name, value] of Object.entries(dimensions)) {
    if (!DIMENSION_VALUE.test(value)) throw new RangeError(`EMF dimension ${name} must be 1 to 1024 printable ASCII characters`);
    record[name] = value;
  }
  for (const metric of metrics) {
    const values = Array.isArray(metric.value) ? metric.value : [metric.value];
    if (values.length === 0 || values.length > MAX_VALUES) throw new RangeError(`EMF metric ${metric.name} takes 1 to ${MAX_VALUES} values, got ${values.length}`);
    if (!values.every(Number.isFinite)) throw new RangeError(`EMF metric ${metric.name} has a value that is not a finite number`);
    if (metric.name in record || metric.name === '_aws') throw new RangeError(`EMF metric name ${metric.name} collides with a dimension`);
    record._aws.CloudWatchMetrics[0]?.Metrics.push({ Name: metric.name, Unit: metric.unit });
    record[metric.name] = Array.isArray(metric.value) ? values : values[0];
  }
  return record;
}

/**
 * Writes one EMF record as its own log line (event `metrics.emf`); nothing when there are no
 * metrics. `now` is the datum's time (a caller on an injectable clock passes its own).
 */
export function publishMetrics(logger: Logger, metrics: readonly EmfMetric[], dimensions: Readonly<Record<string, string>>, now: number = Date.now()): void {
  if (metrics.length === 0) return;
  logger.info({ event: 'metrics.emf', ...emfRecord(metrics, dimensions, now) });
}
