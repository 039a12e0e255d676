/** SIGTERM: idle slots stop at once, busy ones finish their jobs under ECS task protection. */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startFakeEcsAgent, type FakeEcsAgent } from '../support/fake-ecs-agent.js';
import { startFakeGitHub, type FakeGitHub } from '../support/fake-github.js';
import { childCatchesSigterm, eventsNamed, killEverything, makeMuxRunnerRoot, muxConfig, namedJob, PRELOAD_SO, startMux, waitFor, writeConfig } from './helpers.js';

describe('cbactions mux: drain', () => {
  let fake: FakeGitHub | undefined;
  let agent: FakeEcsAgent | undefined;
  afterEach(async () => {
    await killEverything([fake]);
    await fake?.stop();
    await agent?.stop();
    fake = undefined;
    agent = undefined;
  });

  async function start(slots: number, drainTimeoutSeconds: number) {
    fake = await startFakeGitHub({ tokens: ['ghp_fake_test_token'] });
    agent = await startFakeEcsAgent();
    const dir = mkdtempSync(join(tmpdir(), 'mux-drain-'));
    const config = muxConfig({
      fake,
      runnerRoot: makeMuxRunnerRoot(join(dir, 'runner')),
      stateDir: join(dir, 'state'),
      pools: [{ name: 'drain', labels: ['drain'], slots }],
      mux: { isolation: 'preload', preloadPath: PRELOAD_SO, drainTimeoutSeconds, taskProtectionMinutes: 30 },
    });
    const mux = await startMux(writeConfig(dir, config), { ECS_AGENT_URI: agent.uri });
    const github = fake;
    await waitFor(`${slots} polling runners`, () => [...github.runners.values()].filter((runner) => runner.lastPollDisableUpdate === true).length === slots);
    return mux;
  }

  it('SIGTERM with two busy slots: idle slots stop at once, jobs finish with their real results, protection is held then cleared, exit 0', async () => {
    const mux = await start(4, 120);
    const github = fake as FakeGitHub;
    const ecs = agent as FakeEcsAgent;
    expect(ecs.requests).toEqual([]);
    // Long enough that, on a loaded machine, both jobs still run when the idle slots have stopped.
    const jobs = [github.queueJob(['drain'], namedJob('long job 1', { action: 'sleep', seconds: 5 })), github.queueJob(['drain'], namedJob('long job 2', { action: 'sleep', seconds: 5 }))];
    await waitFor('two busy slots', async () => (await mux.status()).slots.filter((slot) => slot.state === 'busy').length === 2);
    await waitFor('task protection', () => ecs.enabled);
    expect(ecs.requests[0]?.body).toEqual({ ProtectionEnabled: true, ExpiresInMinutes: 30 });
    const busy = (await mux.status()).slots.filter((slot) => slot.state === 'busy');
    expect(busy.map((slot) => slot.job).sort()).toEqual(['long job 1', 'long job 2']);

    const callsBefore = github.calls.length;
    mux.kill('SIGTERM');
    // Idle slots stop at once; busy ones drain. The status endpoint stays up meanwhile.
    const during = await waitFor('idle slots stopped', async () => {
      const status = await mux.status();
      return status.slots.filter((slot) => slot.state === 'stopped').length === 2 ? status : undefined;
    });
    expect(during.draining).toBe(true);
    expect(during.slots.filter((slot) => slot.state === 'draining').map((slot) => slot.id).sort()).toEqual(busy.map((slot) => slot.id).sort());
    expect(jobs.every((job) => job.status === 'assigned')).toBe(true);
    expect(ecs.enabled).toBe(true);

    expect(await mux.exited).toEqual({ code: 0, signal: null });
    // Real results: the listeners were never signalled, so the jobs were not cancelled.
    expect(jobs.map((job) => job.result)).toEqual(['Succeeded', 'Succeeded']);
    expect(ecs.protectionHistory.at(0)).toBe(true);
    expect(ecs.protectionHistory.at(-1)).toBe(false);
    expect(ecs.enabled).toBe(false);
    // Nothing re-registered after the signal; every registration is gone.
    expect(github.calls.slice(callsBefore).filter((call) => call.path.endsWith('/generate-jitconfig'))).toEqual([]);
    expect(github.runners.size).toBe(0);
    expect(eventsNamed(mux.logs, 'mux.drain-finished')).toHaveLength(1);
    expect(eventsNamed(mux.logs, 'mux.listener-stopping')).toHaveLength(2);
  });

  it('past mux.drainTimeoutSeconds it stops busy listeners too (the job is cancelled) and exits 1', async () => {
    const mux = await start(1, 1);
    const github = fake as FakeGitHub;
    const job = github.queueJob(['drain'], namedJob('endless job', { action: 'wait-for-cancel' }));
    const listenerPid = await waitFor('busy slot', async () => {
      const slot = (await mux.status()).slots[0];
      return slot?.state === 'busy' ? slot.listenerPid : undefined;
    });
    // "Busy" is the listener's word; the worker must also be up, or the group's SIGTERM kills it before it can cancel.
    await waitFor('the worker to handle SIGTERM', () => childCatchesSigterm(listenerPid));
    mux.kill('SIGTERM');
    expect(await mux.exited).toEqual({ code: 1, signal: null });
    expect(eventsNamed(mux.logs, 'mux.drain-timeout')).toHaveLength(1);
    expect(job.result).toBe('Canceled');
    expect(agent?.enabled).toBe(false);
    expect(github.runners.size).toBe(0);
  });
});
