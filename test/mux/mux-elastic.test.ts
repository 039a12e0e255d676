/**
 * Elastic pools (idle / max / prepared / coolDownSeconds) of the built `cbactions mux`,
 * against the fake GitHub's job queue and fake listeners with a simulated start-up time.
 * Jobs are held by the fake worker's rendezvous (a `go` file) so the test decides when they end.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { MuxStatus } from '../../src/mux/status-model.js';
import { startFakeGitHub, type FakeGitHub, type FakeJob } from '../support/fake-github.js';
import { eventsNamed, killEverything, makeMuxRunnerRoot, muxConfig, namedJob, startMux, waitFor, writeConfig, type MuxProcess } from './helpers.js';

type Capacity = NonNullable<MuxStatus['pools'][number]['capacity']>;

describe('cbactions mux: elastic pools', () => {
  let fake: FakeGitHub | undefined;
  afterEach(async () => {
    await killEverything([fake]);
    await fake?.stop();
    fake = undefined;
  });

  async function start(pool: { idle: number; max: number; prepared?: number; coolDownSeconds: number }, startupMs = 500) {
    fake = await startFakeGitHub({ tokens: ['ghp_fake_test_token'] });
    const dir = mkdtempSync(join(tmpdir(), 'mux-elastic-'));
    const rendezvous = join(dir, 'rendezvous');
    mkdirSync(rendezvous);
    const config = muxConfig({
      fake,
      runnerRoot: makeMuxRunnerRoot(join(dir, 'runner')),
      stateDir: join(dir, 'state'),
      pools: [{ name: 'el', labels: ['el'], ...pool }],
      // Hard-link roots: each slot its own `_work`, so the fake workers' rendezvous files of
      // jobs running at once cannot meet in one shared `_work/_temp` (the real jobs run in CodeBuild).
      mux: { isolation: 'hardlink', drainTimeoutSeconds: 120 },
    });
    const mux = await startMux(writeConfig(dir, config), { FAKE_LISTENER_STARTUP_MS: String(startupMs) });
    return { mux, github: fake, rendezvous, release: () => writeFileSync(join(rendezvous, 'go'), '') };
  }

  async function capacity(mux: MuxProcess): Promise<Capacity> {
    const pool = (await mux.status()).pools[0];
    if (!pool?.capacity) throw new Error('no capacity in /status');
    return pool.capacity;
  }

  function heldJob(github: FakeGitHub, rendezvous: string, name: string): FakeJob {
    return github.queueJob(['el'], namedJob(name, { action: 'rendezvous', rendezvousDir: rendezvous, exitCode: 100 }));
  }

  it('restores the idle target after each assignment, and a pool at its maximum never starts more', async () => {
    const { mux, github, rendezvous, release } = await start({ idle: 2, max: 4, coolDownSeconds: 600 });
    await waitFor('two idle listeners', async () => (await capacity(mux)).idle === 2);
    expect(await capacity(mux)).toMatchObject({ busy: 0, idle: 2, starting: 0, max: 4 });

    const jobs: FakeJob[] = [];
    // One job at a time: each takes an idle listener, and the pool starts a replacement.
    for (const n of [1, 2]) {
      jobs.push(heldJob(github, rendezvous, `held ${n}`));
      await waitFor(`job ${n} assigned`, () => jobs.at(-1)?.status === 'assigned');
      await waitFor(`idle target restored after job ${n}`, async () => {
        const now = await capacity(mux);
        // The target grows by one per job within the cool-down (within max): wait for it, not for a passing count.
        return now.busy === n && now.idle === now.idleTarget && now.starting === 0 && now.registering === 0;
      });
    }
    // At 2 busy of 4, two more fill the pool: no room is left for idle listeners.
    jobs.push(heldJob(github, rendezvous, 'held 3'), heldJob(github, rendezvous, 'held 4'));
    await waitFor('four busy', async () => (await capacity(mux)).busy === 4);
    const beyond = heldJob(github, rendezvous, 'held 5');
    const full = await capacity(mux);
    expect(full).toMatchObject({ busy: 4, idle: 0, starting: 0, prepared: 0, registering: 0, idleTarget: 0 });
    await waitFor('the mux to log the pool at its maximum', () => eventsNamed(mux.logs, 'mux.pool-at-max').length > 0);
    const registrations = github.calls.filter((call) => call.path.endsWith('/generate-jitconfig')).length;
    // Still at max once more status round-trips have passed: nothing registered, the fifth job waits in the queue.
    for (let check = 0; check < 5; check++) expect(await capacity(mux)).toMatchObject({ busy: 4, idle: 0, starting: 0, registering: 0 });
    expect(github.calls.filter((call) => call.path.endsWith('/generate-jitconfig')).length).toBe(registrations);
    expect(beyond.status).toBe('queued');
    expect(github.peakSessions).toBeLessThanOrEqual(4);

    release();
    await waitFor('all five jobs done', () => [...jobs, beyond].every((job) => job.status === 'completed'), 90_000);
    expect([...jobs, beyond].map((job) => job.result)).toEqual(['Succeeded', 'Succeeded', 'Succeeded', 'Succeeded', 'Succeeded']);
    await waitFor('idle listeners again', async () => (await capacity(mux)).idle >= 2);
    expect(github.peakSessions).toBeLessThanOrEqual(4);
    const metrics = await (await fetch(`${mux.statusUrl}/metrics`)).text();
    expect(metrics).toContain('cbactions_mux_pool_capacity{pool="el",kind="max"} 4');
    expect(metrics).toMatch(/cbactions_mux_listeners_started_total\{pool="el"\} ([6-9]|\d\d)/);
    expect(Number(/cbactions_mux_pool_at_max_seconds_total\{pool="el"\} (\S+)/.exec(metrics)?.[1])).toBeGreaterThan(0);
    // The fifth job was taken at once by a listener started after the pool left its maximum.
    expect(metrics).toMatch(/cbactions_mux_job_wait_at_max_seconds_count\{pool="el"\} [1-9]/);

    mux.kill('SIGTERM');
    expect(await mux.exited).toEqual({ code: 0, signal: null });
    expect(github.runners.size).toBe(0);
  }, 180_000);

  it('retires idle listeners above the target after the cool-down, deleting their registrations', async () => {
    const { mux, github, rendezvous, release } = await start({ idle: 1, max: 4, coolDownSeconds: 10 });
    await waitFor('one idle listener', async () => (await capacity(mux)).idle === 1);
    const jobs = [heldJob(github, rendezvous, 'burst 1'), heldJob(github, rendezvous, 'burst 2')];
    // Two jobs within the cool-down: the target grows with them (1 + 2, within max - busy).
    await waitFor('both jobs assigned', () => jobs.every((job) => job.status === 'assigned'));
    await waitFor('two idle listeners beside the two busy', async () => {
      const now = await capacity(mux);
      return now.busy === 2 && now.idle === 2;
    });
    release();
    await waitFor('both jobs done', () => jobs.every((job) => job.status === 'completed'), 60_000);
    // Quiet for the cool-down: the surplus retires until one idle listener is left, registration and all.
    await waitFor('back to one idle listener and one registration', async () => {
      const now = await capacity(mux);
      return now.idle === 1 && now.busy === 0 && now.starting === 0 && now.registering === 0 && github.runners.size === 1;
    }, 90_000);
    const retired = eventsNamed(mux.logs, 'mux.slot-retired');
    expect(retired.filter((record) => record.reason === 'idle-above-target').length).toBeGreaterThanOrEqual(1);
    const jobRunners = new Set(jobs.map((job) => job.runnerName));
    for (const record of retired) {
      expect(['idle-above-target', 'prepared-surplus']).toContain(record.reason);
      // Never one that ran a job; its registration was deleted through the API.
      expect(jobRunners.has(String(record.runner))).toBe(false);
      expect(github.deleted.some((entry) => entry.runner.name === record.runner && entry.by === 'api')).toBe(true);
    }
    const metrics = await (await fetch(`${mux.statusUrl}/metrics`)).text();
    expect(metrics).toMatch(/cbactions_mux_listeners_retired_total\{pool="el",reason="idle-above-target"\} [1-9]/);
    mux.kill('SIGTERM');
    expect(await mux.exited).toEqual({ code: 0, signal: null });
    expect(github.runners.size).toBe(0);
  }, 180_000);

  it('SIGTERM during a burst: running jobs finish with their own results, nothing new starts, every registration goes', async () => {
    const { mux, github, rendezvous, release } = await start({ idle: 1, max: 8, prepared: 3, coolDownSeconds: 600 }, 1_500);
    await waitFor('one idle listener and three prepared registrations', async () => {
      const now = await capacity(mux);
      return now.idle === 1 && now.prepared === 3;
    });
    const jobs = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10].map((n) => heldJob(github, rendezvous, `burst ${n}`));
    // Mid-burst: some jobs run, others wait for listeners still starting or registering.
    await waitFor('two jobs running and more listeners on their way', async () => {
      const now = await capacity(mux);
      return now.busy >= 2 && now.starting + now.registering + now.prepared > 0 ? now : undefined;
    });
    mux.kill('SIGTERM');
    await waitFor('the drain to begin', () => eventsNamed(mux.logs, 'mux.drain-started').length === 1);
    release();
    expect(await mux.exited).toEqual({ code: 0, signal: null });
    const ran = jobs.filter((job) => job.status !== 'queued');
    expect(ran.length).toBeGreaterThanOrEqual(2);
    // No job was killed or cancelled: each one a listener took ended with its worker's own result.
    for (const job of ran) expect(job).toMatchObject({ status: 'completed', result: 'Succeeded' });
    expect(github.runners.size).toBe(0);
    expect(github.peakSessions).toBeLessThanOrEqual(8);
    // Every registration the mux created is gone: consumed by its job, or deleted by the mux.
    const created = eventsNamed(mux.logs, 'mux.registered').map((record) => Number(record.runnerId));
    for (const runnerId of created) expect(github.deleted.some((entry) => entry.runner.id === runnerId)).toBe(true);
  }, 180_000);
});
