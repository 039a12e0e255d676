/**
 * Listener exit codes (RUNNER-PROTOCOL §6) through the built `cbactions mux`: one pool per
 * behaviour, each told by the fake broker to make its listener exit with a given code.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SlotStatus } from '../../src/mux/status-model.js';
import { startFakeGitHub, type FakeGitHub, type FakeRunner } from '../support/fake-github.js';
import { eventsNamed, killEverything, makeMuxRunnerRoot, muxConfig, namedJob, PRELOAD_SO, startMux, waitFor, writeConfig, type MuxProcess } from './helpers.js';

const POOLS = ['exit1', 'exit2', 'exit3', 'exit5', 'exit7', 'spin', 'ok'];

describe('cbactions mux: listener exit codes', () => {
  let fake: FakeGitHub;
  let mux: MuxProcess;

  beforeAll(async () => {
    fake = await startFakeGitHub({ tokens: ['ghp_fake_test_token'] });
    const dir = mkdtempSync(join(tmpdir(), 'mux-exit-'));
    const config = muxConfig({
      fake,
      runnerRoot: makeMuxRunnerRoot(join(dir, 'runner')),
      stateDir: join(dir, 'state'),
      pools: POOLS.map((name) => ({ name, labels: [name], slots: 1 })),
      mux: { isolation: 'preload', preloadPath: PRELOAD_SO, listenerBackoff: { initialMs: 100, maxMs: 1_000, healthyAfterSeconds: 30 } },
    });
    mux = await startMux(writeConfig(dir, config));
    await waitFor('seven polling runners', () => [...fake.runners.values()].filter((runner) => runner.lastPollDisableUpdate === true).length === POOLS.length, 30_000);
  });

  afterAll(async () => {
    await killEverything([fake]);
    await fake?.stop();
  });

  const slotOf = async (pool: string): Promise<SlotStatus> => (await mux.status()).slots.find((slot) => slot.pool === pool) as SlotStatus;
  const runnerOf = (pool: string): FakeRunner | undefined => [...fake.runners.values()].find((runner) => runner.labels.includes(pool));
  const exitRecords = (pool: string) => eventsNamed(mux.logs, 'mux.listener-exited').filter((record) => record.pool === pool);

  async function expectReregistered(pool: string, code: number): Promise<void> {
    const before = runnerOf(pool) as FakeRunner;
    fake.instruct({ kind: 'exit', code, labels: [pool] });
    const after = await waitFor(`a new ${pool} registration`, () => {
      const runner = runnerOf(pool);
      return runner && runner.id !== before.id && runner.lastPollDisableUpdate === true ? runner : undefined;
    });
    expect(after.name).not.toBe(before.name);
    expect(after.name).toMatch(new RegExp(`-${pool}-0-[0-9a-z]{6}$`));
    // The unused registration was deleted by the mux (not left for GitHub).
    expect(fake.deleted.find((entry) => entry.runner.id === before.id)?.by).toBe('api');
    expect(exitRecords(pool)[0]).toMatchObject({ code, action: 'reregister' });
    // It backed off before registering again.
    const exitAt = mux.logs.indexOf(exitRecords(pool)[0] as never);
    expect(mux.logs.slice(exitAt).find((record) => record.pool === pool && record.event === 'mux.backing-off')).toBeDefined();
    const slot = await slotOf(pool);
    expect(slot).toMatchObject({ restarts: 1, lastExit: { code }, runnerName: after.name });
  }

  it('1 (terminated error): backs off, deletes the registration, registers a new runner', async () => {
    await expectReregistered('exit1', 1);
  });

  it('5 (session conflict): backs off, deletes the registration, registers a new runner', async () => {
    await expectReregistered('exit5', 5);
  });

  it('2 (retryable): backs off and restarts the same registration', async () => {
    const before = runnerOf('exit2') as FakeRunner;
    const sessions = () => [...fake.sessions.values()].filter((session) => session.runnerId === before.id).length;
    expect(sessions()).toBe(1);
    fake.instruct({ kind: 'exit', code: 2, labels: ['exit2'] });
    await waitFor('a second session of the same runner', () => sessions() === 2);
    await waitFor('the slot idle again', async () => (await slotOf('exit2')).state === 'idle');
    expect(runnerOf('exit2')?.id).toBe(before.id);
    expect(fake.deleted.some((entry) => entry.runner.id === before.id)).toBe(false);
    expect(await slotOf('exit2')).toMatchObject({ restarts: 1, lastExit: { code: 2 }, runnerName: before.name });
    expect(exitRecords('exit2')[0]).toMatchObject({ code: 2, action: 'restart' });
  });

  it.each([
    ['exit3', 3, /self-update.*disableUpdate/],
    ['exit7', 7, /deprecated/],
  ])('%s: the listener exits %i → alert, delete the registration, stop the pool; other pools go on', async (pool, code, reason) => {
    const before = runnerOf(pool) as FakeRunner;
    fake.instruct({ kind: 'exit', code, labels: [pool] });
    await waitFor(`${pool} stopped`, async () => (await mux.status()).pools.find((candidate) => candidate.name === pool)?.stopped);
    const status = await mux.status();
    expect(status.pools.find((candidate) => candidate.name === pool)?.stopped?.reason).toMatch(reason);
    await waitFor(`${pool} slot stopped`, async () => (await slotOf(pool)).state === 'stopped');
    expect(await slotOf(pool)).toMatchObject({ lastExit: { code }, runnerName: null });
    expect(fake.deleted.find((entry) => entry.runner.id === before.id)?.by).toBe('api');
    expect(runnerOf(pool)).toBeUndefined();
    // The log line travels a pipe, the status an HTTP answer: wait for the line rather than race it.
    const alert = await waitFor(`${pool} alert logged`, () => eventsNamed(mux.logs, 'mux.pool-stopped').find((record) => record.pool === pool));
    expect(alert).toMatchObject({ level: 'fatal', alert: true });
    const metrics = await (await fetch(`${mux.statusUrl}/metrics`)).text();
    expect(metrics).toContain(`cbactions_mux_pool_stopped{pool="${pool}"} 1`);
    expect(metrics).toContain(`cbactions_mux_listener_restarts_total{pool="${pool}",exit_code="${code}"} 1`);
    // Another pool still takes jobs.
    const job = fake.queueJob(['ok'], namedJob(`after ${pool}`));
    await waitFor('the ok pool to run a job', () => job.status === 'completed');
    expect(job.result).toBe('Succeeded');
  });

  it('a listener that exits instantly forever is restarted with growing, capped delays — never a hot loop', async () => {
    fake.instruct({ kind: 'exit', code: 2, labels: ['spin'], count: -1 });
    // Past the ramp (100, 200, 400, 800 ms ceilings), every delay is at least cap/2 = 500 ms.
    await waitFor('the backoff to reach its cap', async () => (await slotOf('spin')).restarts >= 5, 30_000);
    const first = { at: Date.now(), restarts: (await slotOf('spin')).restarts };
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    const second = { at: Date.now(), restarts: (await slotOf('spin')).restarts };
    const window = second.at - first.at;
    const restarts = second.restarts - first.restarts;
    // At most one restart per 500 ms floor (+1 for a restart already under way): a slower machine only restarts less.
    expect(restarts).toBeLessThanOrEqual(Math.floor(window / 500) + 1);
    expect(restarts).toBeGreaterThanOrEqual(1);
    const delays = eventsNamed(mux.logs, 'mux.backing-off')
      .filter((record) => record.pool === 'spin')
      .map((record) => Number(record.delayMs));
    expect(delays.length).toBeGreaterThanOrEqual(5);
    expect(Math.max(...delays)).toBeLessThan(1_000);
    expect(delays.slice(4).every((delay) => delay >= 500)).toBe(true);
    // The same registration all along: an instantly failing listener costs no GitHub writes.
    // Polled: the ok slot registers again only after its listener exits, a moment after its job completed.
    await expect.poll(() => fake.calls.filter((call) => call.method === 'POST' && call.path.endsWith('/generate-jitconfig')).length, { timeout: 10_000 }).toBe(POOLS.length + 2 + fake.jobs.length);
  });

  it('drains and exits 0 with stopped pools', async () => {
    fake.instructions.length = 0;
    mux.kill('SIGTERM');
    expect(await mux.exited).toEqual({ code: 0, signal: null });
    expect(fake.runners.size).toBe(0);
  });
});
