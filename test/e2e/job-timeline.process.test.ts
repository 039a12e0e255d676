import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ApiBuildPhase, LocalBuildRecord } from '../../src/build-service/build-record.js';
import type { JobTimelineRecord } from '../../src/dispatch/job-timeline.js';
import { localObjectName } from '../../src/seal/local-payload-store.js';
import { waitFor } from '../mux/helpers.js';
import { JOB_PATH_DISPATCHES, startJobPathRig, type JobPathRig } from '../support/job-path.js';
import { jobMessage } from '../support/runner-root.js';

/**
 * Every job's timeline and cost, read where a user reads them: the job's own log (the output
 * of the runner's job hooks, which the fake Runner.Worker runs as the real one does), and the
 * mux's `job.timeline` event. Both must agree with the build service's own record of the
 * build (its phases, start and end times, exported variables). Each job is held in its build
 * until the mux has passed CodeBuild's phase waits to the build through the job's lease, so
 * the job-completed hook has them however slow this machine is; a second job's build waits
 * in QUEUED (one build at a time) until the first one's has ended.
 */
const SECONDS = String.raw`(\d+\.\d)`;

function phase(record: LocalBuildRecord, type: string): ApiBuildPhase {
  const found = record.phases.find((candidate) => candidate.phaseType === type);
  if (!found || found.endTime === undefined) throw new Error(`build ${record.id} has no ended ${type} phase`);
  return found;
}

const phaseSeconds = (record: LocalBuildRecord, type: string) => {
  const found = phase(record, type);
  return (found.endTime as number) - found.startTime;
};

/** A printed "12.3 s" stands for the true value within rounding. */
function expectPrinted(printed: string | undefined, seconds: number): void {
  expect(printed).toBeDefined();
  expect(Math.abs(Number(printed) - seconds)).toBeLessThanOrEqual(0.05 + 1e-6);
}

describe.each(JOB_PATH_DISPATCHES)('job timeline and cost in the job log (dispatch: %s)', (dispatch) => {
  let rig: JobPathRig;

  beforeAll(async () => {
    // One build at a time: a second job's build waits in CodeBuild's QUEUED phase, as above an account's quota.
    rig = await startJobPathRig({ dispatch, serviceConfig: { concurrentBuildLimit: 1 } });
  });
  afterAll(async () => {
    await rig?.stop();
  });

  async function buildOf(jobId: string): Promise<LocalBuildRecord | undefined> {
    return (await rig.service.builds()).find((record) => JSON.stringify(record.request).includes(`"value":"${jobId}"`));
  }

  /** The mux has told the job's build CodeBuild's waits (the local store's lease file holds them). */
  async function leaseHasWaits(jobId: string): Promise<boolean> {
    const build = await buildOf(jobId);
    if (!build) return false;
    const path = join(rig.payloadDir, `${localObjectName({ buildId: build.id })}.lease`);
    return existsSync(path) && readFileSync(path, 'utf8').includes('"waits"');
  }

  /** Starts a job held in its build (`rendezvous`): `release()` lets it end once its build knows CodeBuild's waits. */
  function heldJob(jobId: string) {
    const dir = join(rig.base, `rendezvous-${jobId}`);
    mkdirSync(dir);
    const result = rig.runJob({ jobBody: jobMessage({ jobId, action: 'rendezvous', rendezvousDir: dir }) });
    return {
      result,
      running: () => waitFor(`${jobId} to start in its build`, () => existsSync(join(dir, `${jobId}.ready`)), 120_000),
      release: async () => {
        await waitFor(`CodeBuild's phase waits in the lease of ${jobId}`, () => leaseHasWaits(jobId), 120_000);
        writeFileSync(join(dir, 'go'), '');
        return result;
      },
    };
  }

  function muxTimeline(jobId: string): JobTimelineRecord {
    if (dispatch === 'in-process') {
      const done = rig.inProcess?.events.find((event) => event.kind === 'done' && event.jobId === jobId);
      if (!done || done.kind !== 'done' || !done.timeline) throw new Error(`no timeline in the done event of ${jobId}`);
      return done.timeline;
    }
    const line = readFileSync(rig.workerLog, 'utf8')
      .split('\n')
      .find((candidate) => candidate.includes('"event":"job.timeline"') && candidate.includes(`"jobId":"${jobId}"`));
    if (!line) throw new Error(`no job.timeline event for ${jobId} in the worker log`);
    return JSON.parse(line) as JobTimelineRecord;
  }

  it('prints the wait and the cost, and they agree with the build service and the mux', { timeout: 180_000 }, async () => {
    const jobId = `job-timeline-${dispatch}`;
    const job = heldJob(jobId);
    await job.running();
    expect((await job.release()).exitCode).toBe(100);
    await expectTimelineAgrees(jobId);
  });

  it("a build that waited in CodeBuild's queue: the job's log and the mux say how long, as the build service recorded it", { timeout: 240_000 }, async () => {
    const first = heldJob(`job-first-${dispatch}`);
    await first.running();
    const queuedId = `job-queued-${dispatch}`;
    const queued = heldJob(queuedId);
    // Its build exists and waits for the first one's to end.
    await waitFor(`the build of ${queuedId} to be QUEUED`, async () => (await buildOf(queuedId))?.currentPhase === 'QUEUED', 120_000);
    expect((await first.release()).exitCode).toBe(100);
    await queued.running();
    expect((await queued.release()).exitCode).toBe(100);
    const { queuedSeconds } = await expectTimelineAgrees(queuedId);
    expect(queuedSeconds).toBeGreaterThan(0);
  });

  async function expectTimelineAgrees(jobId: string): Promise<{ queuedSeconds: number }> {
    const build = await buildOf(jobId);
    if (!build) throw new Error(`no build for ${jobId}`);
    const record = await rig.service.waitForBuild(build.id);
    const exported = Object.fromEntries(record.exportedEnvironmentVariables.map(({ name, value }) => [name, value]));
    const inBuild = JSON.parse(String(exported.CBACTIONS_TIMELINE)) as { entrypointStartedAt: number; payloadOpenedAt: number; workerStartedAt: number; workerExitedAt: number };
    const startTime = record.build.startTime;
    const endTime = record.build.endTime as number;
    const submitted = phaseSeconds(record, 'SUBMITTED');
    const queued = phaseSeconds(record, 'QUEUED');
    const provisioning = phaseSeconds(record, 'PROVISIONING');

    const log = readFileSync(join(rig.buildRunnerRoot, '_diag', `fake-job-log-${jobId}.txt`), 'utf8');
    const [started, completed] = log.split('##[group]Run the job completed hook');
    expect(completed).toBeDefined();

    // At job start: the split if the mux had seen it, else the build's own measure from its submission.
    const startLine = String(started).split('\n').find((line) => line.startsWith('cbactions: waited'));
    const split = new RegExp(`^cbactions: waited ${SECONDS} s for CodeBuild \\(queued ${SECONDS} s, provisioning ${SECONDS} s\\)$`);
    const own = new RegExp(`^cbactions: waited ${SECONDS} s for CodeBuild, from the build's submission to its first cbactions command`);
    const startSplit = startLine?.match(split);
    if (startSplit) {
      expectPrinted(startSplit[2], queued);
      expectPrinted(startSplit[3], provisioning);
    } else {
      expect(startLine).toMatch(own);
      expectPrinted(startLine?.match(own)?.[1], inBuild.entrypointStartedAt / 1000 - startTime);
    }

    // At job end: CodeBuild's own queued and provisioning times, as BatchGetBuilds reports them.
    const completedLines = String(completed).split('\n');
    const waited = completedLines.find((line) => line.startsWith('cbactions: waited'))?.match(split);
    expect(waited, String(completed)).not.toBeNull();
    expectPrinted(waited?.[1], submitted + queued + provisioning);
    expectPrinted(waited?.[2], queued);
    expectPrinted(waited?.[3], provisioning);

    // The cost so far: the record's compute type, every started minute since the build's submission, at the default price.
    const costLine = completedLines.find((line) => line.startsWith('cbactions: build cost'));
    const cost = costLine?.match(new RegExp(`^cbactions: build cost so far: (\\S+), (\\d+) min billed \\(every started minute counts\\) for ${SECONDS} s since the build was submitted.*: (\\d+\\.\\d+) USD at 0\\.005 USD/min \\(us-east-1 list price as of 2026-05\\)$`));
    expect(cost, costLine).not.toBeNull();
    expect(cost?.[1]).toBe(record.build.environment.computeType);
    const sinceSubmission = Number(cost?.[3]);
    // The hook ran after Runner.Worker started and before the build ended.
    expect(sinceSubmission).toBeGreaterThanOrEqual(inBuild.workerStartedAt / 1000 - startTime - 0.05);
    expect(sinceSubmission).toBeLessThanOrEqual(endTime - startTime + 0.05);
    const minutes = Math.max(1, Math.ceil(sinceSubmission / 60));
    expect(Number(cost?.[2])).toBe(minutes);
    expect(Number(cost?.[4])).toBeCloseTo(minutes * 0.005, 6);

    // The mux's one event for the job: the same phases, the build's own times, the final cost.
    const timeline = muxTimeline(jobId);
    expect(timeline).toMatchObject({ pool: 'default', jobId, buildId: record.id, start: 'cold' });
    expect(timeline.problems).toBeUndefined();
    expect(Math.abs((timeline.durations.queuedMs ?? NaN) - queued * 1000)).toBeLessThanOrEqual(1);
    expect(Math.abs((timeline.durations.provisioningMs ?? NaN) - provisioning * 1000)).toBeLessThanOrEqual(1);
    expect(Math.abs((timeline.durations.waitedForCodeBuildMs ?? NaN) - (submitted + queued + provisioning) * 1000)).toBeLessThanOrEqual(2);
    // The same machine's clock: CodeBuild stamped the build while StartBuild was in flight.
    expect(timeline.clock.offsetMs).toBe(0);
    expect(timeline.times.workerStartedAt).toBe(inBuild.workerStartedAt);
    expect(timeline.times.payloadOpenedAt).toBe(inBuild.payloadOpenedAt);
    expect(timeline.times.buildEndedAt).toBe(Math.round(endTime * 1000));
    expect(timeline.times.assignedAt).toBeLessThanOrEqual(timeline.times.dispatchedAt);
    expect(timeline.times.dispatchedAt).toBeLessThanOrEqual(Math.round(startTime * 1000) + 1);
    expect(timeline.durations.startLatencyMs).toBe(inBuild.workerStartedAt - timeline.times.assignedAt);
    expect(timeline.durations.jobMs).toBe(inBuild.workerExitedAt - inBuild.workerStartedAt);
    const billedMinutes = Math.max(1, Math.ceil((endTime - startTime) / 60));
    expect(timeline.cost).toMatchObject({ computeType: record.build.environment.computeType, rule: 'per-minute', region: 'us-east-1', billedSeconds: billedMinutes * 60, currency: 'USD', perMinute: 0.005 });
    expect(timeline.cost?.amount).toBeCloseTo(billedMinutes * 0.005, 9);
    return { queuedSeconds: queued };
  }
});
