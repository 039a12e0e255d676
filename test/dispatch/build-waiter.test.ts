/**
 * The per-job polling waiter (the fallback without the host watcher). CodeBuild answers
 * only when the test says so and intervals run on a manual clock, so the test decides
 * what lands while a BatchGetBuilds call is in flight.
 */
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { PollingBuildWaiter } from '../../src/dispatch/build-waiter.js';
import { HeldBuilds, snapshot } from '../support/held-builds.js';
import { ManualClock } from '../support/manual-clock.js';

const silent = pino({ level: 'silent' });
const BUILD = 'project:0001';

describe('PollingBuildWaiter', () => {
  it('a poke while a call is in flight makes the next call at once, not after the interval', async () => {
    const builds = new HeldBuilds();
    // The clock never moves: only the poke can bring the second call.
    const clock = new ManualClock();
    const waiter = new PollingBuildWaiter(builds, silent, { clock, initialIntervalMs: 600_000, maxIntervalMs: 600_000 });
    const done = waiter.waitForCompletion(BUILD);
    const first = await builds.nextCall();
    waiter.poke(BUILD); // e.g. StopBuild returned while this answer was on its way
    first.answer([snapshot(BUILD)]);
    const second = await builds.nextCall();
    second.answer([snapshot(BUILD, { status: 'STOPPED', complete: true, currentPhase: 'COMPLETED' })]);
    await expect(done).resolves.toMatchObject({ status: 'STOPPED' });
    expect(clock.pending).toEqual([]);
  });

  it('sleeps its interval on the clock; a poke while it sleeps ends the sleep', async () => {
    const builds = new HeldBuilds();
    const clock = new ManualClock();
    const updates: string[] = [];
    const waiter = new PollingBuildWaiter(builds, silent, { clock, initialIntervalMs: 1_000, maxIntervalMs: 5_000, growth: 2 });
    const done = waiter.waitForCompletion(BUILD, { onUpdate: (build) => updates.push(build.currentPhase ?? '') });
    (await builds.nextCall()).answer([snapshot(BUILD, { currentPhase: 'PROVISIONING' })]);
    await waitUntil(() => clock.pending.length === 1);
    expect(clock.pending).toEqual([1_000]);
    clock.advance(1_000);
    (await builds.nextCall()).answer([snapshot(BUILD, { currentPhase: 'BUILD' })]);
    await waitUntil(() => clock.pending.length === 1);
    expect(clock.pending).toEqual([2_000]);
    waiter.poke(BUILD);
    (await builds.nextCall()).answer([snapshot(BUILD, { status: 'SUCCEEDED', complete: true, currentPhase: 'COMPLETED' })]);
    await expect(done).resolves.toMatchObject({ status: 'SUCCEEDED' });
    expect(updates).toEqual(['PROVISIONING', 'BUILD', 'COMPLETED']);
    expect(clock.pending).toEqual([]);
  });

  it('an abort ends the wait, in flight or asleep', async () => {
    const builds = new HeldBuilds();
    const clock = new ManualClock();
    const waiter = new PollingBuildWaiter(builds, silent, { clock });
    const asleep = new AbortController();
    const sleeping = waiter.waitForCompletion(BUILD, { signal: asleep.signal });
    (await builds.nextCall()).answer([snapshot(BUILD)]);
    await waitUntil(() => clock.pending.length === 1);
    asleep.abort(new Error('job over'));
    await expect(sleeping).rejects.toThrow('job over');
    expect(clock.pending).toEqual([]);
    const inFlight = new AbortController();
    const calling = waiter.waitForCompletion(BUILD, { signal: inFlight.signal });
    await builds.nextCall();
    inFlight.abort(new Error('cancelled'));
    await expect(calling).rejects.toThrow('cancelled');
  });
});

/** Lets the waiter's promise chain run until `condition` holds (microtasks and I/O turns only, no clock). */
async function waitUntil(condition: () => boolean): Promise<void> {
  for (let turn = 0; !condition(); turn++) {
    if (turn > 10_000) throw new Error('condition never held');
    await new Promise((resolve) => setImmediate(resolve));
  }
}
