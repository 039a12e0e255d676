/**
 * Standby builds end to end (issue 11's fault-injection acceptance): the mux's in-process
 * dispatch with its standby manager, the local build service running the repository's
 * buildspec (so `cbactions entrypoint` really waits as a standby), the native shim and the
 * fake Runner.Worker. Each race is forced with the build service's freeze / thaw / kill /
 * StopBuild at the moment the job is handed over; every job must run exactly once (counted
 * from the fake worker's "running job" line in every build's log), no standby may be left
 * running, and none may outlive its wait limit.
 */
import { StopBuildCommand } from '@aws-sdk/client-codebuild';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalPayloadStore } from '../../src/seal/local-payload-store.js';
import { startJobPathRig, processesWithEnvironment, type JobPathRig } from '../support/job-path.js';
import type { LocalBuildRecord } from '../support/build-service.js';
import { jobMessage } from '../support/runner-root.js';

const isStandby = (record: LocalBuildRecord) => JSON.stringify(record.request).includes('CBACTIONS_STANDBY_WAIT_SECONDS');

/** How many builds ran `jobId` in a Runner.Worker, and which. */
async function runsOf(rig: JobPathRig, jobId: string): Promise<string[]> {
  const builds = await rig.service.builds();
  const ran: string[] = [];
  for (const build of builds) {
    if ((await rig.service.log(build.id)).includes(`fake Runner.Worker: running job ${jobId} `)) ran.push(build.id);
  }
  return ran;
}

/** A standby whose entrypoint says it is ready (polling for its job), with when it became ready. */
async function readyStandby(rig: JobPathRig, exclude: string[] = []): Promise<{ buildId: string; readyAt: number }> {
  let found: { buildId: string; readyAt: number } | undefined;
  await expect
    .poll(
      async () => {
        for (const entry of rig.inProcess?.standbys?.list() ?? []) {
          if (entry.state !== 'live' || exclude.includes(entry.buildId)) continue;
          const line = (await rig.service.log(entry.buildId)).split('\n').find((candidate) => candidate.includes('"event":"entrypoint.standby-ready"'));
          if (!line) continue;
          found = { buildId: entry.buildId, readyAt: Number((JSON.parse(line.slice(line.indexOf('{'))) as { readyAt: number }).readyAt) };
          return true;
        }
        return false;
      },
      { timeout: 60_000, interval: 100 },
    )
    .toBe(true);
  return found as { buildId: string; readyAt: number };
}

async function payloadHandedTo(rig: JobPathRig, buildId: string): Promise<void> {
  const store = new LocalPayloadStore({ dir: rig.payloadDir });
  await expect.poll(() => store.isPending({ buildId }), { timeout: 60_000, interval: 50 }).toBe(true);
}

function handoverFailures(rig: JobPathRig): { buildId?: string; jobId?: string; reason?: string }[] {
  return readFileSync(rig.inProcess?.logPath ?? '', 'utf8')
    .split('\n')
    .filter((line) => line.includes('"event":"dispatch.standby-handover-failed"'))
    .map((line) => JSON.parse(line) as { buildId?: string; jobId?: string; reason?: string });
}

/** After the rig stopped: nothing runs, and no standby lived past its wait (plus the backstop margin). */
async function expectNoStandbyLeft(rig: JobPathRig, waitSeconds: number): Promise<void> {
  const builds = await rig.service.builds();
  expect(builds.filter((build) => build.buildStatus === 'IN_PROGRESS').map((build) => build.id)).toEqual([]);
  for (const build of builds.filter(isStandby)) {
    const lived = Number(build.build.endTime) - Number(build.build.startTime);
    expect(lived, build.id).toBeLessThanOrEqual(waitSeconds + 60 + 10);
    expect(processesWithEnvironment(`CODEBUILD_BUILD_ID=${build.id}`)).toEqual([]);
  }
}

describe('standby builds: handover races through the local build service', () => {
  let rig: JobPathRig;

  beforeAll(async () => {
    rig = await startJobPathRig({ dispatch: 'in-process', pool: { warm: { standby: 1, maxWaitMinutes: 3 } } });
  });
  afterAll(async () => {
    if (!rig) return;
    // The mux's half first (its standbys are stopped), then look, then the build service goes.
    await rig.inProcess?.stop();
    await expectNoStandbyLeft(rig, 180);
    await rig.service.stop();
  });

  it('a job goes to the waiting standby; two jobs racing for the last one: one gets it, the other a new build', { timeout: 180_000 }, async () => {
    const standby = await readyStandby(rig);
    const [a, b] = await Promise.all([rig.runJob({ jobBody: jobMessage({ jobId: 'race-a' }) }), rig.runJob({ jobBody: jobMessage({ jobId: 'race-b' }) })]);
    expect([a.exitCode, b.exitCode]).toEqual([100, 100]);
    const ranA = await runsOf(rig, 'race-a');
    const ranB = await runsOf(rig, 'race-b');
    expect(ranA).toHaveLength(1);
    expect(ranB).toHaveLength(1);
    expect([...ranA, ...ranB]).toContain(standby.buildId);
    expect(handoverFailures(rig)).toEqual([]);
  });

  for (const fault of ['kill', 'stop'] as const) {
    it(`a standby that ${fault === 'kill' ? 'fails (its container dies)' : 'is stopped'} while its job is handed over: the job runs once, in a new build`, { timeout: 180_000 }, async () => {
      const jobId = `handover-${fault}`;
      const standby = await readyStandby(rig);
      // Frozen, it cannot take the payload: the fault lands exactly between put and take.
      await rig.service.buildAction(standby.buildId, 'freeze');
      const job = rig.runJob({ jobBody: jobMessage({ jobId }) });
      await payloadHandedTo(rig, standby.buildId);
      if (fault === 'kill') await rig.service.buildAction(standby.buildId, 'kill');
      else await rig.service.client().send(new StopBuildCommand({ id: standby.buildId }));
      const result = await job;
      expect(result.exitCode).toBe(100);
      const ran = await runsOf(rig, jobId);
      expect(ran).toHaveLength(1);
      expect(ran[0]).not.toBe(standby.buildId);
      const ended = await rig.service.waitForBuild(standby.buildId);
      expect(ended.buildStatus).toBe(fault === 'kill' ? 'FAILED' : 'STOPPED');
      expect(handoverFailures(rig)).toContainEqual(expect.objectContaining({ buildId: standby.buildId, jobId }));
      expect(await new LocalPayloadStore({ dir: rig.payloadDir }).isPending({ buildId: standby.buildId })).toBe(false);
    });
  }
});

describe('standby builds: a standby that expires while its job is handed over', () => {
  let rig: JobPathRig;
  const waitSeconds = 45;

  beforeAll(async () => {
    // A short wait; claims allowed until 2 s before it ends, so the test can hand one over late.
    rig = await startJobPathRig({ dispatch: 'in-process', pool: { warm: { standby: 1, maxWaitMinutes: waitSeconds / 60 } }, standbyOptions: { claimMarginMs: 2_000 } });
  });
  afterAll(async () => {
    if (!rig) return;
    await rig.inProcess?.stop();
    await expectNoStandbyLeft(rig, waitSeconds);
    await rig.service.stop();
  });

  it('frozen past its deadline with the payload waiting, it ends STANDBY_EXPIRED without taking it; the job runs once, in a new build', { timeout: 180_000 }, async () => {
    const standby = await readyStandby(rig);
    await rig.service.buildAction(standby.buildId, 'freeze');
    const job = rig.runJob({ jobBody: jobMessage({ jobId: 'expires' }) });
    await payloadHandedTo(rig, standby.buildId);
    // Its deadline passes while it is frozen; thawed, it looks at the deadline before polling again.
    await expect.poll(() => Date.now() > standby.readyAt + waitSeconds * 1000, { timeout: 60_000, interval: 100 }).toBe(true);
    await rig.service.buildAction(standby.buildId, 'thaw');
    const result = await job;
    expect(result.exitCode).toBe(100);
    const ended = await rig.service.waitForBuild(standby.buildId);
    expect(ended.buildStatus).toBe('SUCCEEDED');
    expect(ended.exportedEnvironmentVariables).toContainEqual(expect.objectContaining({ name: 'CBACTIONS_FAILURE', value: expect.stringMatching(/^STANDBY_EXPIRED: /) }));
    const ran = await runsOf(rig, 'expires');
    expect(ran).toHaveLength(1);
    expect(ran[0]).not.toBe(standby.buildId);
    expect(handoverFailures(rig)).toContainEqual(expect.objectContaining({ buildId: standby.buildId, jobId: 'expires' }));
  });
});
