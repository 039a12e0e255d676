/**
 * The standby manager against in-memory CodeBuild on a manual clock: how many standbys it
 * keeps, what it starts them with, when it replaces, backs off, stops and journals them,
 * and the synchronous claim two jobs race for.
 */
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import type { ConfigInput } from '../../src/config/schema.js';
import { PollingBuildWaiter } from '../../src/dispatch/build-waiter.js';
import type { StartBuildRequest } from '../../src/dispatch/codebuild-api.js';
import { MuxMetrics } from '../../src/mux/metrics.js';
import { inWarmWindow, StandbyPool, type StandbyEnded, type StandbyPoolOptions } from '../../src/mux/standby-pool.js';
import { awsError, InMemoryBuilds } from '../support/in-memory-builds.js';
import { ManualClock } from '../support/manual-clock.js';

const silent = pino({ level: 'silent' });

function config(pools: ConfigInput['pools'], mux: ConfigInput['mux'] = {}) {
  return parseConfig({
    github: { scope: { repository: 'o/r' }, auth: { token: { env: 'T' } } },
    codebuild: { projectName: 'cbactions' },
    payloads: { key: { local: { file: '/k' } }, store: { local: { dir: '/p' } } },
    pools,
    mux,
  });
}

/** Resolves once `check` holds, looking after every due callback; fails after a generous bound. */
async function until(check: () => boolean, what: string): Promise<void> {
  for (let round = 0; round < 20_000; round++) {
    if (check()) return;
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  throw new Error(`never happened: ${what}`);
}

/** Lets every callback already due run, a few rounds deep. */
async function settle(): Promise<void> {
  for (let round = 0; round < 50; round++) await new Promise<void>((resolve) => setImmediate(resolve));
}

describe('StandbyPool', () => {
  let pool: StandbyPool | undefined;
  afterEach(async () => {
    await pool?.close();
    pool = undefined;
  });

  function make(pools: ConfigInput['pools'], options: Partial<StandbyPoolOptions> = {}) {
    const builds = new InMemoryBuilds();
    const clock = new ManualClock(Date.UTC(2026, 11, 2, 12, 0, 0));
    const journal = new Set<string>();
    const ended: StandbyEnded[] = [];
    // Real-time polling, fast: ends are noticed promptly; the manager's own timing is the manual clock.
    const waiter = new PollingBuildWaiter(builds, silent, { initialIntervalMs: 2, maxIntervalMs: 5 });
    pool = new StandbyPool({
      config: config(pools),
      configPath: '/etc/cbactions/cbactions.json',
      builds,
      waiter,
      logger: silent,
      env: { CBACTIONS_MUX_INSTANCE: 'host:/state' },
      journal: { add: (id) => journal.add(id), remove: (id) => journal.delete(id) },
      onEnded: (end) => ended.push(end),
      clock,
      random: () => 0.5,
      endWaitMs: 1_000,
      ...options,
    });
    const starts = () => builds.calls.filter((call) => call.op === 'start').map((call) => call.arg as StartBuildRequest);
    const stops = () => builds.calls.filter((call) => call.op === 'stop').map((call) => call.arg as string);
    return { pool, builds, clock, journal, ended, starts, stops };
  }

  const warmPool = (warm: Record<string, unknown> = { standby: 2, maxWaitMinutes: 4 }, build: Record<string, unknown> = {}) => [{ name: 'default', labels: ['cb'], warm, build }];

  it('keeps `standby` builds started, with no job id and the wait, journaled', async () => {
    const { pool, starts, journal } = make(warmPool());
    pool.start();
    await until(() => starts().length === 2 && journal.size === 2, 'two standbys');
    for (const request of starts()) {
      expect(request.environmentVariables.CBACTIONS_JOB_ID).toBeUndefined();
      expect(request.environmentVariables.CBACTIONS_STANDBY_WAIT_SECONDS).toBe('240');
      expect(request.environmentVariables.CBACTIONS_POOL).toBe('default');
      expect(request.environmentVariables.CBACTIONS_MUX_INSTANCE).toBe('host:/state');
      expect(request.computeType).toBe('BUILD_GENERAL1_SMALL');
    }
    expect(new Set(starts().map((request) => request.idempotencyToken)).size).toBe(2);
    await settle();
    expect(starts()).toHaveLength(2);
  });

  it('starts nothing for pools without standbys', async () => {
    const { pool, starts } = make(warmPool({ standby: 0 }));
    expect(pool.enabled).toBe(false);
    pool.start();
    await settle();
    expect(starts()).toHaveLength(0);
  });

  it('gives a standby to exactly one of two jobs racing for it, and replaces it at once', async () => {
    const { pool, starts, builds, journal, ended } = make(warmPool({ standby: 1, maxWaitMinutes: 4 }));
    pool.start();
    await until(() => pool.list().length === 1, 'one standby');
    const key = poolKey(pool);
    const first = pool.claim('default', key);
    const second = pool.claim('default', key);
    expect(first?.build.id).toBe(builds.builds.keys().next().value);
    expect(second).toBeUndefined();
    await until(() => starts().length === 2, 'the replacement');
    // The used one ends with its job: forgotten, reported as used.
    builds.finish(first?.build.id ?? '', { exported: { CBACTIONS_EXIT_CODE: '100' } });
    await until(() => ended.length === 1, 'the end of the used standby');
    expect(ended[0]).toMatchObject({ reason: 'used', pool: 'default', computeType: 'BUILD_GENERAL1_SMALL' });
    expect(journal.has(first?.build.id ?? '')).toBe(false);
    expect(journal.size).toBe(1);
  });

  it('gives a job no standby started with other overrides', async () => {
    const { pool } = make(warmPool({ standby: 1 }));
    pool.start();
    await until(() => pool.list().length === 1, 'one standby');
    expect(pool.claim('default', 'something else')).toBeUndefined();
    expect(pool.claim('other', poolKey(pool))).toBeUndefined();
  });

  it('hands out no standby within the claim margin of its deadline, and stops it once it outlives its wait', async () => {
    const { pool, stops, clock } = make(warmPool({ standby: 1, maxWaitMinutes: 4 }), { claimMarginMs: 30_000, stopMarginMs: 60_000 });
    pool.start();
    await until(() => pool.list().length === 1, 'one standby');
    clock.advance(4 * 60_000 - 30_000);
    expect(pool.claim('default', poolKey(pool))).toBeUndefined();
    expect(stops()).toHaveLength(0);
    clock.advance(30_000 + 60_000);
    await until(() => stops().length === 1, 'the backstop StopBuild');
  });

  it('replaces an expired standby at once and a failed one only after a growing backoff', async () => {
    const { pool, starts, builds, clock, ended } = make(warmPool({ standby: 1 }), { backoff: { initialMs: 10_000, maxMs: 100_000 } });
    pool.start();
    await until(() => pool.list().length === 1, 'one standby');
    const [expired] = builds.builds.keys();
    builds.finish(expired ?? '', { exported: { CBACTIONS_FAILURE: 'STANDBY_EXPIRED: no job came within the standby wait of 600 s' } });
    await until(() => starts().length === 2, 'the replacement of the expired one');
    expect(ended[0]?.reason).toBe('expired');

    const failedOnce = [...builds.builds.keys()][1] ?? '';
    builds.finish(failedOnce, { status: 'FAILED' });
    await until(() => ended.length === 2, 'the failure');
    await settle();
    expect(starts()).toHaveLength(2);
    // backoff 10 s: half fixed, half jitter (0.5): 7.5 s
    clock.advance(7_499);
    await settle();
    expect(starts()).toHaveLength(2);
    clock.advance(1);
    await until(() => starts().length === 3, 'the restart after backoff');

    const failedTwice = [...builds.builds.keys()][2] ?? '';
    builds.finish(failedTwice, { status: 'FAULT' });
    await until(() => ended.length === 3, 'the second failure');
    clock.advance(7_500);
    await settle();
    expect(starts()).toHaveLength(3);
    clock.advance(7_500);
    await until(() => starts().length === 4, 'the restart after the doubled backoff');
  });

  it('backs off a standby start refused for quota, at least the quota hold', async () => {
    const { pool, starts, builds, clock } = make(warmPool({ standby: 1 }), { quotaHoldMs: 60_000, backoff: { initialMs: 1_000, maxMs: 10_000 } });
    builds.failures.push({ op: 'start', error: awsError('AccountLimitExceededException', 'Cannot have more than 1 active builds for the account') });
    pool.start();
    await until(() => starts().length === 1, 'the refused start');
    await settle();
    clock.advance(59_999);
    await settle();
    expect(starts()).toHaveLength(1);
    clock.advance(1);
    await until(() => starts().length === 2, 'the start after the hold');
  });

  it('stops every waiting standby on close, but not a claimed one, and claims nothing afterwards', async () => {
    const { pool, stops, builds } = make(warmPool({ standby: 3 }));
    pool.start();
    await until(() => pool.list().length === 3, 'three standbys');
    const claimed = pool.claim('default', poolKey(pool));
    await until(() => pool.list().length === 4, 'the replacement');
    await pool.close();
    expect(stops().sort()).toEqual([...builds.builds.keys()].filter((id) => id !== claimed?.build.id).sort());
    expect(pool.claim('default', poolKey(pool))).toBeUndefined();
    expect(pool.list()).toEqual([{ pool: 'default', buildId: claimed?.build.id, state: 'claimed' }]);
  });

  it('waits on close for a standby whose StartBuild is still on its way, and stops that build before returning', async () => {
    const { pool, builds, stops } = make(warmPool({ standby: 1 }));
    let release: () => void = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const startBuild = builds.startBuild.bind(builds);
    let sent = false;
    builds.startBuild = async (request) => {
      sent = true;
      await held;
      return startBuild(request);
    };
    pool.start();
    await until(() => sent, 'StartBuild sent');
    let closed = false;
    const closing = pool.close().then(() => {
      closed = true;
    });
    await settle();
    expect(closed).toBe(false);
    release();
    await closing;
    const ids = [...builds.builds.keys()];
    expect(ids).toHaveLength(1);
    expect(stops()).toEqual(ids);
    expect(builds.builds.get(ids[0] ?? '')?.status).toBe('STOPPED');
  });

  it('gives up a standby of the same compute type when a job meets a full quota, and holds the pool back', async () => {
    const { pool, starts, stops, builds, clock } = make(
      [
        { name: 'small', labels: ['s'], warm: { standby: 1 } },
        { name: 'large', labels: ['l'], warm: { standby: 1 }, build: { computeType: 'BUILD_GENERAL1_LARGE' } },
      ],
      { quotaHoldMs: 60_000 },
    );
    pool.start();
    await until(() => pool.list().length === 2, 'two standbys');
    // Build ids are handed out in start order.
    const largeIndex = starts().findIndex((request) => request.computeType === 'BUILD_GENERAL1_LARGE');
    expect(largeIndex).toBeGreaterThanOrEqual(0);
    expect(await pool.yieldForQuota('BUILD_GENERAL1_LARGE')).toBe(true);
    expect(stops()).toEqual([[...builds.builds.keys()][largeIndex]]);
    await settle();
    expect(starts()).toHaveLength(2);
    clock.advance(60_000);
    await until(() => starts().length === 3, 'the large pool refilled after the hold');
    await pool.close();
    expect(await pool.yieldForQuota(undefined)).toBe(false);
  });

  it('keeps a pool warm only inside its windows and stops its standbys when one closes', async () => {
    // 2026-12-02 is a Wednesday; the clock starts at 12:00 UTC.
    const { pool, starts, stops, clock } = make(warmPool({ standby: 1, windows: [{ days: ['wed'], from: '12:01', to: '12:03' }] }));
    pool.start();
    await settle();
    expect(starts()).toHaveLength(0);
    clock.advance(60_000);
    await until(() => starts().length === 1, 'the standby when the window opens');
    clock.advance(2 * 60_000);
    await until(() => stops().length === 1, 'the stop when it closes');
  });
});

describe('inWarmWindow', () => {
  const wednesdayAt = (time: string) => Date.parse(`2026-12-02T${time}:00Z`);
  it('is always true without windows and honours days, from (inclusive) and to (exclusive)', () => {
    expect(inWarmWindow(undefined, 0)).toBe(true);
    const windows = [{ days: ['mon', 'wed'] as ('mon' | 'wed')[], from: '08:00', to: '18:00' }];
    expect(inWarmWindow(windows, wednesdayAt('07:59'))).toBe(false);
    expect(inWarmWindow(windows, wednesdayAt('08:00'))).toBe(true);
    expect(inWarmWindow(windows, wednesdayAt('17:59'))).toBe(true);
    expect(inWarmWindow(windows, wednesdayAt('18:00'))).toBe(false);
    expect(inWarmWindow([{ days: ['tue'], from: '00:00', to: '24:00' }], wednesdayAt('12:00'))).toBe(false);
    expect(inWarmWindow([{ days: ['wed'], from: '00:00', to: '24:00' }], wednesdayAt('23:59'))).toBe(true);
  });
});

/** The overrides key of the pool's standbys (the job side's equality is run-job-standby.test.ts's). */
function poolKey(pool: StandbyPool, name = 'default'): string {
  return pool.overridesKey(name) ?? '';
}

describe('the standby gauge', () => {
  it('counts standby builds by pool and state at every scrape', async () => {
    const metrics = new MuxMetrics(() => []);
    let standbys = [
      { pool: 'default', state: 'live' },
      { pool: 'default', state: 'live' },
      { pool: 'large', state: 'claimed' },
    ];
    metrics.trackStandbys(() => standbys);
    const text = await metrics.registry.metrics();
    expect(text).toContain('cbactions_mux_standby_builds{pool="default",state="live"} 2');
    expect(text).toContain('cbactions_mux_standby_builds{pool="large",state="claimed"} 1');
    standbys = [];
    expect(await metrics.registry.metrics()).not.toContain('cbactions_mux_standby_builds{');
  });
});
