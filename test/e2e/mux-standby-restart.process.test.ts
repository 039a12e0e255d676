import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { BuildServiceProcess, LocalBuildRecord } from '../support/build-service.js';
import { startMuxBuildRig } from '../support/mux-build-rig.js';
import { startFakeGitHub, type FakeGitHub } from '../support/fake-github.js';
import { eventsNamed, killEverything, muxConfig, namedJob, PRELOAD_SO, startMux, waitFor, writeConfig } from '../mux/helpers.js';

const isStandby = (record: LocalBuildRecord) => JSON.stringify(record.request).includes('CBACTIONS_STANDBY_WAIT_SECONDS');

/**
 * The built `cbactions mux` with a warm pool: a job assigned by (fake) GitHub runs in a
 * standby build; then the mux dies hard (SIGKILL) with standbys waiting, and the next mux
 * on the same state directory stops them (the journal lists them) before keeping its own;
 * its SIGTERM stops those; and a job refused for a full quota gets a standby's place.
 * Every job once, no standby left running.
 */
describe('a warm mux killed with SIGKILL while standbys wait', () => {
  let fake: FakeGitHub | undefined;
  let service: BuildServiceProcess | undefined;

  afterAll(async () => {
    await killEverything([fake]);
    await service?.stop();
    await fake?.stop();
  });

  it('runs a job in a standby; the next life stops the standbys the dead one left; a drain stops its own', { timeout: 300_000 }, async () => {
    fake = await startFakeGitHub({ tokens: ['ghp_fake_test_token'], onlineWindowMs: 600_000 });
    const rig = await startMuxBuildRig('cbactions-warm-kill-');
    service = rig.service;
    const { dir, runnerRoot, stateDir } = rig;
    const waitSeconds = 180;
    const pools = [{ name: 'wm', labels: ['warm'], slots: 1, warm: { standby: 2, maxWaitMinutes: waitSeconds / 60 } }];
    const configPath = writeConfig(dir, muxConfig({ fake, runnerRoot, stateDir, pools, mux: { isolation: 'preload', preloadPath: PRELOAD_SO, installWorkerShim: true } }));
    const env = service.clientEnv();
    const standbysRunning = async () => (await service?.builds())?.filter((record) => isStandby(record) && record.buildStatus === 'IN_PROGRESS') ?? [];
    const journal = () => readFileSync(join(stateDir, 'mux-journal.json'), 'utf8');

    const first = await startMux(configPath, env);
    await waitFor('the runner polling', () => [...(fake?.runners.values() ?? [])].some((runner) => runner.lastPollDisableUpdate === true), 30_000);
    const ready = await waitFor(
      'two standbys ready and journaled',
      async () => {
        const running = await standbysRunning();
        if (running.length !== 2) return undefined;
        for (const build of running) {
          if (!(await service?.log(build.id))?.includes('"event":"entrypoint.standby-ready"') || !journal().includes(build.id)) return undefined;
        }
        return running;
      },
      90_000,
      200,
    );
    for (const build of ready) {
      const variables = build.build.environment.environmentVariables.map((variable) => variable.name);
      expect(variables).toContain('CBACTIONS_STANDBY_WAIT_SECONDS');
      expect(variables).not.toContain('CBACTIONS_JOB_ID');
    }

    // A job through GitHub goes to one of them.
    const job = fake.queueJob(['warm'], namedJob('warm job'));
    await waitFor('the job completed', () => job.status === 'completed', 90_000, 200);
    expect(job.result).toBe('Succeeded');
    const ran: string[] = [];
    for (const build of (await service.builds()) ?? []) if ((await service.log(build.id)).includes('fake Runner.Worker: running job warm_job ')) ran.push(build.id);
    expect(ran).toHaveLength(1);
    expect(ready.map((build) => build.id)).toContain(ran[0]);
    expect(eventsNamed(first.logs, 'dispatch.standby-claimed')).toHaveLength(1);

    // The used standby is replaced; then the mux dies hard with its standbys waiting.
    const left = await waitFor('two standbys waiting again', async () => ((await standbysRunning()).length === 2 ? standbysRunning() : undefined), 90_000, 200);
    await waitFor('both journaled', () => left.every((build) => journal().includes(build.id)), 10_000);
    first.kill('SIGKILL');
    expect((await first.exited).signal).toBe('SIGKILL');
    expect((await standbysRunning()).map((build) => build.id).sort()).toEqual(left.map((build) => build.id).sort());

    const second = await startMux(configPath, env, 90_000);
    const [cleaned] = eventsNamed(second.logs, 'mux.previous-life-cleaned');
    expect(cleaned).toMatchObject({ buildsStopped: 2, failures: 0 });
    for (const build of left) expect((await service.waitForBuild(build.id, { timeoutMs: 60_000 })).buildStatus).toBe('STOPPED');
    // The new life keeps its own, and stops them at its drain.
    await waitFor('the new life’s standbys', async () => ((await standbysRunning()).length === 2 ? true : undefined), 90_000, 200);
    second.kill('SIGTERM');
    expect((await second.exited).code).toBe(0);
    expect(await standbysRunning()).toEqual([]);
    for (const build of (await service.builds()).filter(isStandby)) {
      expect(Number(build.build.endTime) - Number(build.build.startTime), build.id).toBeLessThanOrEqual(waitSeconds + 70);
    }
  });
});

describe('a warm mux whose build quota is full of standbys', () => {
  let fake: FakeGitHub | undefined;
  let service: BuildServiceProcess | undefined;

  afterAll(async () => {
    await killEverything([fake]);
    await service?.stop();
    await fake?.stop();
  });

  it('stops a standby for a job CodeBuild refused for quota, and runs the job in its place', { timeout: 300_000 }, async () => {
    fake = await startFakeGitHub({ tokens: ['ghp_fake_test_token'] });
    const rig = await startMuxBuildRig('cbactions-warm-quota-');
    service = rig.service;
    const { dir, runnerRoot, stateDir } = rig;
    // The warm pool's standby cannot take the cold pool's job (other compute type): only yielding helps.
    const pools = [
      { name: 'cold', labels: ['cold'], slots: 1 },
      { name: 'wm', labels: ['warm'], slots: 1, build: { computeType: 'BUILD_GENERAL1_LARGE' }, warm: { standby: 1, maxWaitMinutes: 3 } },
    ];
    const configPath = writeConfig(dir, muxConfig({ fake, runnerRoot, stateDir, pools, mux: { isolation: 'preload', preloadPath: PRELOAD_SO, installWorkerShim: true } }));
    const mux = await startMux(configPath, service.clientEnv());
    await waitFor('both runners polling', () => [...(fake?.runners.values() ?? [])].filter((runner) => runner.lastPollDisableUpdate === true).length === 2, 30_000);
    const standby = await waitFor('the standby running', async () => (await service?.builds())?.find((record) => isStandby(record) && record.buildStatus === 'IN_PROGRESS'), 90_000, 200);
    // The quota is full: the job's first StartBuild is refused.
    await service.setFaults({ accountLimit: { count: 1, limit: 1 } });
    const job = fake.queueJob(['cold'], namedJob('quota job'));
    await waitFor('the job completed', () => job.status === 'completed', 120_000, 200);
    expect(job.result).toBe('Succeeded');
    expect((await service.waitForBuild(standby.id, { timeoutMs: 60_000 })).buildStatus).toBe('STOPPED');
    expect(eventsNamed(mux.logs, 'dispatch.standby-yielded')).toHaveLength(1);
    const ran: string[] = [];
    for (const build of await service.builds()) if ((await service.log(build.id)).includes('fake Runner.Worker: running job quota_job ')) ran.push(build.id);
    expect(ran).toHaveLength(1);
    mux.kill('SIGTERM');
    expect((await mux.exited).code).toBe(0);
    expect((await service.builds()).filter((record) => record.buildStatus === 'IN_PROGRESS')).toEqual([]);
  });
});

