import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readProcStat } from '../../src/util/proc.js';
import type { BuildServiceProcess } from '../support/build-service.js';
import { startMuxBuildRig } from '../support/mux-build-rig.js';
import { startFakeGitHub, type FakeGitHub } from '../support/fake-github.js';
import { eventsNamed, killEverything, muxConfig, namedJob, PRELOAD_SO, startMux, waitFor, writeConfig, type MuxProcess } from '../mux/helpers.js';

function alive(pid: number): boolean {
  const state = readProcStat(pid)?.state;
  return state !== undefined && state !== 'Z';
}

function runnerNameIn(file: string): string | undefined {
  if (!existsSync(file)) return undefined;
  return (JSON.parse(readFileSync(file, 'utf8').replace(/^\uFEFF/, '')) as { agentName?: string }).agentName;
}

/**
 * The mux dies hard (SIGKILL) while a job runs in a build: its listeners must die with it,
 * and the next mux on the same state directory stops the build and removes the registrations
 * and files the dead one left. The built `cbactions mux`, a fake GitHub, the fake
 * Runner.Listener with the real worker shim, and the local build service as its own process
 * (so the build outlives the mux, as a CodeBuild build does).
 */
describe('a mux killed with SIGKILL during a job', () => {
  let fake: FakeGitHub | undefined;
  let service: BuildServiceProcess | undefined;

  afterAll(async () => {
    await killEverything([fake]);
    await service?.stop();
    await fake?.stop();
  });

  it('leaves no listener alive; the restarted mux stops the build and removes the registrations and slot files of its previous life', { timeout: 240_000 }, async () => {
    // Runners stay "online" long after their last poll: the stale-registration sweep cannot be what removes them.
    fake = await startFakeGitHub({ tokens: ['ghp_fake_test_token'], onlineWindowMs: 600_000 });
    const rig = await startMuxBuildRig('cbactions-hard-kill-');
    service = rig.service;
    const { dir, runnerRoot, stateDir } = rig;
    const pools = [{ name: 'hk', labels: ['hard-kill'], slots: 2 }];
    const configPath = writeConfig(dir, muxConfig({ fake, runnerRoot, stateDir, pools, mux: { isolation: 'preload', preloadPath: PRELOAD_SO, installWorkerShim: true } }));
    // The old worker's own StopBuild (after its listener vanished) waits 40 s: the next mux is first.
    const env = { ...service.clientEnv(), CBACTIONS_CANCEL_GRACE_SECONDS: '40' };

    const first: MuxProcess = await startMux(configPath, env);
    await waitFor('both runners polling', () => [...(fake?.runners.values() ?? [])].filter((runner) => runner.lastPollDisableUpdate === true).length === 2, 30_000);
    // The fake Runner.Worker in the build ignores the cancel the orphaned worker relays: only StopBuild ends it.
    const job = fake.queueJob(['hard-kill'], namedJob('hard kill', { action: 'ignore-cancel' }));
    const build = await waitFor(
      'the job running in its build',
      async () => {
        const running = (await service?.builds())?.find((record) => record.buildStatus === 'IN_PROGRESS' && record.currentPhase === 'BUILD');
        if (!running) return undefined;
        return (await service?.log(running.id))?.includes('fake Runner.Worker: running job') ? running : undefined;
      },
      90_000,
      200,
    );
    expect(job.status).toBe('assigned');
    // The build names the mux that started it, for an operator (and the journal has it for the next life).
    expect(build.build.environment.environmentVariables).toContainEqual(expect.objectContaining({ name: 'CBACTIONS_MUX_INSTANCE', value: expect.stringContaining(`:${stateDir}`) }));
    await waitFor('the build in the journal', () => readFileSync(join(stateDir, 'mux-journal.json'), 'utf8').includes(build.id), 10_000);

    const status = await first.status();
    const listenerPids = status.slots.map((slot) => slot.listenerPid).filter((pid): pid is number => pid !== null);
    expect(listenerPids).toHaveLength(2);
    const oldRunners = [...fake.runners.values()].map((runner) => ({ id: runner.id, name: runner.name }));
    expect(oldRunners).toHaveLength(2);
    const oldSlotRunnerNames = pools.flatMap((pool) => [0, 1].map((index) => runnerNameIn(join(stateDir, 'slots', `${pool.name}-${index}`, '.runner'))));
    expect(oldSlotRunnerNames.sort()).toEqual(oldRunners.map((runner) => runner.name).sort());

    first.kill('SIGKILL');
    expect((await first.exited).signal).toBe('SIGKILL');
    await waitFor('every listener of the killed mux to be gone', () => listenerPids.every((pid) => !alive(pid)), 30_000);
    expect(build.buildStatus).toBe('IN_PROGRESS');
    // Nobody renews the job's lease now: GitHub abandons the job, and its runner can be deleted
    // (while it is busy GitHub refuses that; the mux would retry at exit and in its next life).
    fake.abandon(job);

    const second = await startMux(configPath, env, 90_000);
    const [cleaned] = eventsNamed(second.logs, 'mux.previous-life-cleaned');
    expect(cleaned).toMatchObject({ registrations: 2, registrationsRemoved: 2, builds: 1, buildsStopped: 1, failures: 0 });
    expect(cleaned?.filesRemoved).toBeGreaterThanOrEqual(6);
    expect(eventsNamed(second.logs, 'mux.previous-life-build-stopped')).toEqual([expect.objectContaining({ buildId: build.id })]);

    const stopped = await service.waitForBuild(build.id, { timeoutMs: 60_000 });
    expect(stopped.buildStatus).toBe('STOPPED');
    for (const runner of oldRunners) expect(fake.runners.has(runner.id)).toBe(false);
    expect(fake.deleted.filter((entry) => oldRunners.some((runner) => runner.id === entry.runner.id)).map((entry) => entry.by)).toEqual(['api', 'api']);
    // The slots' files now belong to the new life's registrations (or are not written yet), never the old ones.
    await waitFor('the new runners registered', () => [...(fake?.runners.values() ?? [])].filter((runner) => runner.lastPollDisableUpdate === true).length === 2, 30_000);
    for (const index of [0, 1]) {
      const name = runnerNameIn(join(stateDir, 'slots', `hk-${index}`, '.runner'));
      expect(oldRunners.map((runner) => runner.name)).not.toContain(name);
    }

    second.kill('SIGTERM');
    expect((await second.exited).code).toBe(0);
  });
});
