import { describe, expect, it } from 'vitest';
import { emfRecord, METRICS_NAMESPACE, publishMetrics } from '../../src/util/emf.js';
import { captureLogger } from '../mux/capture-logger.js';

describe('EMF records', () => {
  it('puts each metric under the namespace with its dimensions and values', () => {
    const record = emfRecord([{ name: 'BusyListeners', unit: 'Count', value: 3 }, { name: 'StartLatency', unit: 'Seconds', value: [0.4, 1.2] }], { Pool: 'small' }, 1_700_000_000_000);
    expect(record).toEqual({
      _aws: {
        Timestamp: 1_700_000_000_000,
        CloudWatchMetrics: [{ Namespace: METRICS_NAMESPACE, Dimensions: [['Pool']], Metrics: [{ Name: 'BusyListeners', Unit: 'Count' }, { Name: 'StartLatency', Unit: 'Seconds' }] }],
      },
      Pool: 'small',
      BusyListeners: 3,
      StartLatency: [0.4, 1.2],
    });
  });

  it('refuses what CloudWatch would drop without a word', () => {
    expect(() => emfRecord([{ name: 'X', unit: 'Count', value: Number.NaN }], {})).toThrow(/finite/);
    expect(() => emfRecord([{ name: 'X', unit: 'Count', value: [] }], {})).toThrow(/1 to 100 values/);
    expect(() => emfRecord([{ name: 'Pool', unit: 'Count', value: 1 }], { Pool: 'a' })).toThrow(/collides/);
    expect(() => emfRecord([{ name: 'X', unit: 'Count', value: 1 }], { Pool: '' })).toThrow(/printable ASCII/);
  });

  it('publishes one log line per record, none without metrics', () => {
    const { logger, records } = captureLogger();
    publishMetrics(logger, [], { Pool: 'a' });
    publishMetrics(logger, [{ name: 'IdleListeners', unit: 'Count', value: 2 }], { Pool: 'a' });
    const emf = records.filter((line) => line.event === 'metrics.emf');
    expect(emf).toHaveLength(1);
    expect(emf[0]).toMatchObject({ Pool: 'a', IdleListeners: 2, _aws: { CloudWatchMetrics: [{ Namespace: 'cbactions' }] } });
  });
});
