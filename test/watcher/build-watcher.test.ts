import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { BuildWatcher } from '../../src/watcher/build-watcher.js';
import { HeldBuilds, snapshot } from '../support/held-builds.js';
import { awsError, InMemoryBuilds } from '../support/in-memory-builds.js';

const silent = pino({ level: 'silent' });

async function startBuilds(builds: InMemoryBuilds, count: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) ids.push((await builds.startBuild({ projectName: 'p', idempotencyToken: `t${i}`, environmentVariables: {} })).id);
  builds.calls.length = 0;
  return ids;
}

describe('BuildWatcher', () => {
  let watcher: BuildWatcher | undefined;
  afterEach(async () => {
    await watcher?.close();
    watcher = undefined;
  });

  it('asks about up to 100 builds per BatchGetBuilds call and resolves each waiter', async () => {
    const builds = new InMemoryBuilds();
    const ids = await startBuilds(builds, 250);
    watcher = new BuildWatcher(builds, silent, { minIntervalMs: 10, maxCallsPerSecond: 1000 });
    watcher.start();
    const waits = ids.map((id) => watcher!.waitForCompletion(id));
    for (const id of ids) builds.finish(id, { exported: { CBACTIONS_EXIT_CODE: '100' } });
    const results = await Promise.all(waits);
    expect(results.map((result) => result.exported.CBACTIONS_EXIT_CODE)).toEqual(ids.map(() => '100'));
    const sizes = builds.calls.filter((call) => call.op === 'get').map((call) => (call.arg as string[]).length);
    expect(Math.max(...sizes)).toBe(100);
    expect(sizes.slice(0, 3).sort((a, b) => a - b)).toEqual([50, 100, 100]);
    expect(watcher.getStats().watching).toBe(0);
  });

  it('stretches sweeps to stay within its call budget when one call is not enough', async () => {
    const builds = new InMemoryBuilds();
    const ids = await startBuilds(builds, 300);
    // 3 calls per sweep at 30 calls/s → one sweep per 100 ms at least.
    watcher = new BuildWatcher(builds, silent, { minIntervalMs: 10, maxCallsPerSecond: 30 });
    const started = Date.now();
    watcher.start();
    for (const id of ids) void watcher.waitForCompletion(id).catch(() => {});
    // It keeps sweeping (waits for the calls, however slow the machine) ...
    await expect.poll(() => builds.count('get'), { timeout: 30_000, interval: 20 }).toBeGreaterThanOrEqual(12);
    const calls = builds.count('get');
    const seconds = (Date.now() - started) / 1000;
    // ... but never faster than its budget: a 10 ms interval would make ~300 calls a second,
    // the budget allows 30 (+ the first sweep). A loaded machine only makes fewer.
    expect(calls).toBeLessThanOrEqual(6 + 30 * seconds);
  });

  it('backs off while throttled and still finds the result', async () => {
    const builds = new InMemoryBuilds();
    const [id] = await startBuilds(builds, 1);
    for (let i = 0; i < 4; i++) builds.failures.push({ op: 'get', error: awsError('ThrottlingException', 'Rate exceeded') });
    watcher = new BuildWatcher(builds, silent, { minIntervalMs: 5, maxCallsPerSecond: 200, throttleMaxMs: 50, random: () => 1 });
    watcher.start();
    const wait = watcher.waitForCompletion(String(id));
    builds.finish(String(id));
    await expect(wait).resolves.toMatchObject({ status: 'SUCCEEDED' });
    expect(watcher.getStats().throttled).toBe(4);
  });

  it('gives up on a build CodeBuild no longer knows', async () => {
    const builds = new InMemoryBuilds();
    watcher = new BuildWatcher(builds, silent, { minIntervalMs: 5, maxCallsPerSecond: 200, notFoundLimit: 3 });
    watcher.start();
    await expect(watcher.waitForCompletion('p:00000000-0000-4000-8000-00000000dead')).rejects.toMatchObject({ code: 'BUILD_NOT_FOUND' });
    expect(builds.count('get')).toBe(3);
  });

  it('reports each phase change once to subscribers', async () => {
    const builds = new InMemoryBuilds();
    const [id] = await startBuilds(builds, 1);
    watcher = new BuildWatcher(builds, silent, { minIntervalMs: 5, maxCallsPerSecond: 200 });
    watcher.start();
    const phases: string[] = [];
    const done = watcher.waitForCompletion(String(id), { onUpdate: (snapshot) => phases.push(String(snapshot.currentPhase)) });
    await new Promise((resolve) => setTimeout(resolve, 30));
    builds.update(String(id), { currentPhase: 'BUILD' });
    await new Promise((resolve) => setTimeout(resolve, 30));
    builds.finish(String(id));
    await done;
    expect(phases).toEqual(['QUEUED', 'BUILD', 'COMPLETED']);
  });

  it('asks about a poked build on its own, soon, without an early sweep of all', async () => {
    const builds = new InMemoryBuilds();
    const ids = await startBuilds(builds, 150);
    // Sweeps at most every 10 s: only the targeted call can explain a quick answer.
    watcher = new BuildWatcher(builds, silent, { minIntervalMs: 10_000, maxCallsPerSecond: 1 });
    watcher.start();
    for (const id of ids) void watcher.waitForCompletion(id).catch(() => {});
    const target = String(ids[42]);
    const done = watcher.waitForCompletion(target);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const before = builds.count('get');
    builds.finish(target);
    watcher.poke(target);
    await expect(done).resolves.toMatchObject({ id: target, complete: true });
    const calls = builds.calls.filter((call) => call.op === 'get').slice(before);
    expect(calls.map((call) => call.arg)).toEqual([[target]]);
  });

  it('makes no calls while it has nothing to watch', async () => {
    const builds = new InMemoryBuilds();
    watcher = new BuildWatcher(builds, silent, { minIntervalMs: 5 });
    watcher.start();
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(builds.count('get')).toBe(0);
  });
});

describe('BuildWatcher that cannot reach CodeBuild', () => {
  it('hands its builds back to their waiters after repeated hard failures', async () => {
    const builds = new InMemoryBuilds();
    const [id] = await startBuilds(builds, 1);
    for (let i = 0; i < 3; i++) builds.failures.push({ op: 'get', error: Object.assign(new Error('Could not load credentials from any providers'), { name: 'CredentialsProviderError' }) });
    const watcher = new BuildWatcher(builds, silent, { minIntervalMs: 5, maxCallsPerSecond: 200, hardFailureLimit: 3 });
    watcher.start();
    try {
      await expect(watcher.waitForCompletion(String(id))).rejects.toMatchObject({ code: 'WATCHER_FAILING' });
      expect(watcher.getStats().watching).toBe(0);
    } finally {
      await watcher.close();
    }
  });
});

describe('BuildWatcher while a BatchGetBuilds call is in flight', () => {
  const A = 'p:0000-000a';
  const B = 'p:0000-000b';
  let watcher: BuildWatcher | undefined;
  afterEach(async () => {
    await watcher?.close();
    watcher = undefined;
  });

  it('a poke during a sweep brings a targeted call after it, not the next sweep', async () => {
    const builds = new HeldBuilds();
    // Sweeps at most every minute: only the poke can explain a second call.
    watcher = new BuildWatcher(builds, silent, { minIntervalMs: 60_000, maxCallsPerSecond: 1 });
    watcher.start();
    const done = watcher.waitForCompletion(A);
    void watcher.waitForCompletion(B).catch(() => {});
    const sweep = await builds.nextCall();
    expect(sweep.ids).toEqual([A, B]);
    watcher.poke(A); // an event about A while the sweep's answer is on its way
    sweep.answer([snapshot(A), snapshot(B)]);
    const targeted = await builds.nextCall();
    expect(targeted.ids).toEqual([A]);
    targeted.answer([snapshot(A, { status: 'SUCCEEDED', complete: true, currentPhase: 'COMPLETED' })]);
    await expect(done).resolves.toMatchObject({ id: A, status: 'SUCCEEDED' });
  });

  it('close() during a sweep ends the call and settles, rejecting the waiters', async () => {
    const builds = new HeldBuilds();
    watcher = new BuildWatcher(builds, silent, { minIntervalMs: 60_000 });
    watcher.start();
    const waiting = watcher.waitForCompletion(A);
    const sweep = await builds.nextCall();
    const closing = watcher.close();
    watcher = undefined;
    expect(sweep.signal?.aborted).toBe(true);
    await closing;
    await expect(waiting).rejects.toMatchObject({ code: 'WATCHER_CLOSED' });
  });

  it('a wait whose signal aborted before the call rejects at once and watches nothing', async () => {
    const builds = new HeldBuilds();
    watcher = new BuildWatcher(builds, silent, { minIntervalMs: 60_000 });
    watcher.start();
    const controller = new AbortController();
    controller.abort(new Error('worker gone'));
    await expect(watcher.waitForCompletion(A, { signal: controller.signal })).rejects.toThrow('worker gone');
    expect(watcher.watchedIds()).toEqual([]);
  });
});
