/**
 * The demand signal: which EMF records each publication writes (per task and pool, per
 * task, and the service-wide sets without Task), their values, and the schedule on a manual
 * clock.
 */
import { describe, expect, it } from 'vitest';
import { DemandMetrics, demandRecords, dimensionValue, type PoolCapacity } from '../../src/mux/demand-metrics.js';
import { demandMetricsEnabled } from '../../src/mux/main.js';
import { ManualClock } from '../support/manual-clock.js';
import { captureLogger } from './capture-logger.js';

const IDENTITY = { project: 'cbactions-test', task: 'arn:aws:ecs:eu-west-1:123456789012:task/cluster/0123456789abcdef' };

const SMALL: PoolCapacity = { pool: 'small', busy: 3, idle: 1, starting: 0, prepared: 0, registering: 0, idleTarget: 2, preparedTarget: 0, max: 4 };
const LARGE: PoolCapacity = { pool: 'large', busy: 1, idle: 0, starting: 1, prepared: 0, registering: 0, idleTarget: 1, preparedTarget: 0, max: 4 };

function emfLines(records: ReturnType<typeof captureLogger>['records']) {
  return records.filter((record) => record.event === 'metrics.emf');
}

describe('demandRecords', () => {
  it('per task and pool, per task, per pool and service-wide: the service-wide sets have no Task dimension', () => {
    const records = demandRecords([SMALL, LARGE], IDENTITY);
    expect(records.map((record) => record.dimensions)).toEqual([
      { Project: 'cbactions-test', Task: IDENTITY.task, Pool: 'small' },
      { Project: 'cbactions-test', Task: IDENTITY.task, Pool: 'large' },
      { Project: 'cbactions-test', Task: IDENTITY.task },
      { Project: 'cbactions-test', Pool: 'small' },
      { Project: 'cbactions-test', Pool: 'large' },
      { Project: 'cbactions-test' },
    ]);
  });

  it('counts, shortfall against the idle target (not counting listeners already starting), utilization of the maximum', () => {
    const values = (index: number) => Object.fromEntries((demandRecords([SMALL, LARGE], IDENTITY)[index]?.metrics ?? []).map((metric) => [metric.name, metric.value]));
    // small: 1 idle of a target of 2, none starting → short 1; 3 of 4 busy.
    expect(values(0)).toEqual({ BusyListeners: 3, IdleListeners: 1, StartingListeners: 0, IdleShortfall: 1, ListenerUtilization: 75 });
    // large: its one missing idle listener is starting → short 0.
    expect(values(1)).toEqual({ BusyListeners: 1, IdleListeners: 0, StartingListeners: 1, IdleShortfall: 0, ListenerUtilization: 25 });
    // The task: counts add up; utilization is the busiest pool's.
    const task = { BusyListeners: 4, IdleListeners: 1, StartingListeners: 1, IdleShortfall: 1, ListenerUtilization: 75 };
    expect(values(2)).toEqual(task);
    expect(values(3)).toEqual(values(0));
    expect(values(5)).toEqual(task);
  });

  it('units: listener counts are Count, utilization Percent', () => {
    const [record] = demandRecords([SMALL], IDENTITY);
    expect(record?.metrics.map((metric) => [metric.name, metric.unit])).toEqual([
      ['BusyListeners', 'Count'],
      ['IdleListeners', 'Count'],
      ['StartingListeners', 'Count'],
      ['IdleShortfall', 'Count'],
      ['ListenerUtilization', 'Percent'],
    ]);
  });

  it('no pools, no records; a pool without a maximum is 0 % used', () => {
    expect(demandRecords([], IDENTITY)).toEqual([]);
    const [record] = demandRecords([{ pool: 'empty', busy: 0, idle: 0, starting: 0, prepared: 0, registering: 0, idleTarget: 0, preparedTarget: 0, max: 0 }], IDENTITY);
    expect(record?.metrics.find((metric) => metric.name === 'ListenerUtilization')?.value).toBe(0);
  });

  it('dimension values are made printable ASCII (a host name or state dir may not be)', () => {
    expect(dimensionValue('host-ü:/var/lib/x')).toBe('host-?:/var/lib/x');
    expect(dimensionValue('')).toBe('?');
    expect(dimensionValue('x'.repeat(2000))).toHaveLength(1024);
    expect(demandRecords([SMALL], { project: 'p', task: 'höst:/state' })[0]?.dimensions.Task).toBe('h?st:/state');
  });
});

describe('the counts of Mux.capacity()', () => {
  it('a registration on its way counts as a listener starting: no shortfall for what is already coming; prepared registrations are not listeners', () => {
    const pool: PoolCapacity = { pool: 'a', busy: 2, idle: 1, starting: 1, prepared: 5, registering: 2, idleTarget: 6, preparedTarget: 5, max: 10 };
    const [record] = demandRecords([pool], IDENTITY);
    const value = (name: string) => record?.metrics.find((metric) => metric.name === name)?.value;
    expect(value('StartingListeners')).toBe(3);
    expect(value('IdleShortfall')).toBe(6 - 1 - 1 - 2);
    expect(value('IdleListeners')).toBe(1);
    expect(value('ListenerUtilization')).toBe(20);
  });
});

describe('DemandMetrics on a manual clock', () => {
  it('publishes every interval, the EMF lines carrying the clock\'s time, the namespace and the live counts', () => {
    const clock = new ManualClock();
    const { logger, records } = captureLogger();
    let busy = 0;
    const metrics = new DemandMetrics({ capacity: () => [{ ...SMALL, busy, idle: 4 - busy }], ...IDENTITY, intervalMs: 60_000, logger, clock });
    metrics.start();
    expect(clock.pending).toEqual([60_000]);
    expect(emfLines(records)).toEqual([]);

    clock.advance(59_999);
    expect(emfLines(records)).toEqual([]);
    clock.advance(1);
    const first = emfLines(records);
    expect(first).toHaveLength(4);
    expect(first[3]).toMatchObject({
      _aws: {
        Timestamp: clock.now(),
        CloudWatchMetrics: [
          {
            Namespace: 'cbactions',
            Dimensions: [['Project']],
            Metrics: [
              { Name: 'BusyListeners', Unit: 'Count' },
              { Name: 'IdleListeners', Unit: 'Count' },
              { Name: 'StartingListeners', Unit: 'Count' },
              { Name: 'IdleShortfall', Unit: 'Count' },
              { Name: 'ListenerUtilization', Unit: 'Percent' },
            ],
          },
        ],
      },
      Project: 'cbactions-test',
      BusyListeners: 0,
      IdleListeners: 4,
      ListenerUtilization: 0,
    });
    expect(first[0]?._aws).toMatchObject({ CloudWatchMetrics: [{ Dimensions: [['Project', 'Task', 'Pool']] }] });

    busy = 3;
    clock.advance(60_000);
    const second = emfLines(records).slice(4);
    expect(second).toHaveLength(4);
    expect(second[3]).toMatchObject({ BusyListeners: 3, IdleListeners: 1, ListenerUtilization: 75, _aws: { Timestamp: clock.now() } });
    expect(metrics.published).toBe(2);

    metrics.stop();
    expect(clock.pending).toEqual([]);
    clock.advance(600_000);
    expect(emfLines(records)).toHaveLength(8);
  });

  it('keeps to its schedule, and skips the ticks a slow publication missed instead of bursting them', () => {
    const manual = new ManualClock();
    // Time the mux sees: the manual clock plus however long the event loop was held.
    let held = 0;
    const clock = { now: () => manual.now() + held, setTimer: (callback: () => void, ms: number) => manual.setTimer(callback, ms) };
    const { logger } = captureLogger();
    let slow = false;
    const metrics = new DemandMetrics({
      capacity: () => {
        // The event loop is held for 35 s while this one publication runs.
        if (slow) {
          held += 35_000;
          slow = false;
        }
        return [SMALL];
      },
      ...IDENTITY,
      intervalMs: 10_000,
      logger,
      clock,
    });
    metrics.start();
    manual.advance(10_000);
    expect(metrics.published).toBe(1);
    expect(manual.pending).toEqual([10_000]);
    slow = true;
    manual.advance(10_000);
    // Started at +20 s, done at +55 s: the ticks due at +30, +40 and +50 s are gone; the next is +60 s.
    expect(metrics.published).toBe(2);
    expect(manual.pending).toEqual([5_000]);
    manual.advance(5_000);
    expect(metrics.published).toBe(3);
    expect(manual.pending).toEqual([10_000]);
    metrics.stop();
  });

  it('a failing capacity read is logged, and the next tick publishes again', () => {
    const clock = new ManualClock();
    const { logger, records, events } = captureLogger();
    let fail = true;
    const metrics = new DemandMetrics({
      capacity: () => {
        if (fail) throw new Error('not yet');
        return [SMALL];
      },
      ...IDENTITY,
      intervalMs: 30_000,
      logger,
      clock,
    });
    metrics.start();
    clock.advance(30_000);
    expect(events()).toContain('mux.demand-metrics-failed');
    expect(emfLines(records)).toEqual([]);
    fail = false;
    clock.advance(30_000);
    expect(emfLines(records)).toHaveLength(4);
    metrics.stop();
  });
});

describe('when the mux publishes (mux.demandMetrics.publish)', () => {
  it('auto: only on ECS (ECS_AGENT_URI set); on and off regardless', () => {
    expect(demandMetricsEnabled('auto', 'http://169.254.170.2/api/x')).toBe(true);
    expect(demandMetricsEnabled('auto', undefined)).toBe(false);
    expect(demandMetricsEnabled('auto', '')).toBe(false);
    expect(demandMetricsEnabled('on', undefined)).toBe(true);
    expect(demandMetricsEnabled('off', 'http://169.254.170.2/api/x')).toBe(false);
  });
});
