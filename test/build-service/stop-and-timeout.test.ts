import { AccountLimitExceededException, StartBuildCommand, StopBuildCommand } from '@aws-sdk/client-codebuild';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { liveGroupMembers } from '../../src/util/process-group.js';
import { phaseSummary, processAlive, startInProcess, waitUntil, type InProcess } from './harness.js';

// Stopping, timing out, queueing: signals reach the build's commands, and nothing of a
// build's process group survives it.

/** Leaves a background sleep behind, then waits in the foreground, reporting SIGTERM. */
const LONG = `version: 0.2
phases:
  build:
    commands:
      - sleep 300 & echo $! > "$CODEBUILD_SRC_DIR/bg.pid"
      - trap 'echo got-term > "$CODEBUILD_SRC_DIR/term"; exit 143' TERM; echo $$ > "$CODEBUILD_SRC_DIR/fg.pid"; touch "$CODEBUILD_SRC_DIR/ready"; sleep 300 & wait $!
  post_build:
    commands:
      - echo post-build-must-not-run
`;

/** Ignores SIGTERM: only SIGKILL after the grace period ends it. */
const STUBBORN = `version: 0.2
phases:
  build:
    commands:
      - trap '' TERM; sleep 300 & echo $! > "$CODEBUILD_SRC_DIR/bg.pid"; touch "$CODEBUILD_SRC_DIR/ready"; wait
`;

const LEAVES_BACKGROUND = `version: 0.2
phases:
  build:
    commands:
      - sleep 300 & echo $! > "$CODEBUILD_SRC_DIR/bg.pid"
      - echo done
`;

function srcDir(service: InProcess, id: string): string {
  return join(service.stateDir, 'builds', id.split(':')[1] as string, 'src');
}

function readPid(service: InProcess, id: string, name: string): number {
  return Number(readFileSync(join(srcDir(service, id), name), 'utf8').trim());
}

async function waitReady(service: InProcess, id: string): Promise<void> {
  await waitUntil(() => existsSync(join(srcDir(service, id), 'ready')), 15_000, `build ${id} to be ready`);
}

describe('StopBuild and timeouts', () => {
  let service: InProcess;

  beforeAll(async () => {
    service = await startInProcess({
      buildspecs: { long: LONG, stubborn: STUBBORN, background: LEAVES_BACKGROUND },
      // 5 "minutes" (the shortest timeout) = 5 s: long enough for a loaded machine to reach BUILD.
      // A 2 s grace gives a busy shell time to run its TERM trap before the SIGKILL.
      config: { minuteMs: 1_000, stopGraceMs: 2_000 },
    });
  });

  afterAll(async () => {
    await service?.close();
  });

  it('stops a build: SIGTERM reaches its commands, the group is gone, the build is STOPPED', async () => {
    const started = await service.start({ projectName: 'long' });
    const id = started.id as string;
    await waitReady(service, id);
    const group = service.running.service.record(id)?.processGroup;
    expect(group).toBeGreaterThan(0);
    const bg = readPid(service, id, 'bg.pid');
    const fg = readPid(service, id, 'fg.pid');
    expect(processAlive(bg)).toBe(true);

    const stopped = await service.client().send(new StopBuildCommand({ id }));
    expect(stopped.build?.buildStatus).toBe('STOPPED');

    const build = await service.waitComplete(id);
    expect(build.buildStatus).toBe('STOPPED');
    expect(phaseSummary(build).slice(4)).toEqual(['INSTALL:SUCCEEDED', 'PRE_BUILD:SUCCEEDED', 'BUILD:STOPPED', 'FINALIZING:SUCCEEDED', 'COMPLETED']);
    expect(readFileSync(join(srcDir(service, id), 'term'), 'utf8')).toBe('got-term\n');
    expect(processAlive(bg)).toBe(false);
    expect(processAlive(fg)).toBe(false);
    expect(liveGroupMembers(group as number)).toEqual([]);
    expect(await service.log(id)).not.toContain('post-build-must-not-run');
    expect(service.running.service.record(id)?.stop?.reason).toBe('StopBuild');
  });

  it('SIGKILLs a group that ignores SIGTERM after the grace period', async () => {
    const id = (await service.start({ projectName: 'stubborn' })).id as string;
    await waitReady(service, id);
    const bg = readPid(service, id, 'bg.pid');
    await service.client().send(new StopBuildCommand({ id }));
    const build = await service.waitComplete(id);
    expect(build.buildStatus).toBe('STOPPED');
    expect(processAlive(bg)).toBe(false);
  });

  it('kills what a build left running in the background when it ends normally', async () => {
    const id = (await service.start({ projectName: 'background' })).id as string;
    const build = await service.waitComplete(id);
    expect(build.buildStatus).toBe('SUCCEEDED');
    const bg = readPid(service, id, 'bg.pid');
    expect(processAlive(bg)).toBe(false);
  });

  it('times a build out after timeoutInMinutes (in --minute-ms minutes)', async () => {
    const id = (await service.start({ projectName: 'long', timeoutInMinutesOverride: 5 })).id as string;
    const build = await service.waitComplete(id);
    expect(build.buildStatus).toBe('TIMED_OUT');
    const timedOut = build.phases?.find((phase) => phase.phaseStatus === 'TIMED_OUT');
    expect(timedOut?.contexts?.[0]?.statusCode).toBe('BUILD_TIMED_OUT');
    expect(phaseSummary(build).slice(-2)).toEqual(['FINALIZING:SUCCEEDED', 'COMPLETED']);
    const bg = readPid(service, id, 'bg.pid');
    expect(processAlive(bg)).toBe(false);
  });
});

describe('concurrency limit and queue', () => {
  let service: InProcess;

  beforeAll(async () => {
    service = await startInProcess({
      buildspecs: { long: LONG, quick: 'version: 0.2\nphases:\n  build:\n    commands:\n      - echo quick\n' },
      config: { minuteMs: 100, stopGraceMs: 300, concurrentBuildLimit: 1 },
    });
  });

  afterAll(async () => {
    await service?.close();
  });

  it('queues builds over the limit, times them out in the queue, runs them when a slot frees, refuses beyond 5× the limit', async () => {
    const client = service.client();
    // A long timeout of its own, so `running` holds the only slot however slow the steps below are.
    const running = (await service.start({ projectName: 'long', timeoutInMinutesOverride: 480 })).id as string;
    await waitReady(service, running);

    const expiring = await service.start({ projectName: 'quick', queuedTimeoutInMinutesOverride: 5 });
    expect(expiring.currentPhase).toBe('QUEUED');
    const waiting = (await service.start({ projectName: 'quick' })).id as string;
    const timedOut = await service.waitComplete(expiring.id as string);
    expect(timedOut.buildStatus).toBe('TIMED_OUT');
    expect(phaseSummary(timedOut)).toEqual(['SUBMITTED:SUCCEEDED', 'QUEUED:TIMED_OUT', 'COMPLETED']);

    // One waiting already; four more fill the queue to 5 × 1, the next is refused.
    const more: string[] = [];
    for (let i = 0; i < 4; i += 1) more.push((await service.start({ projectName: 'quick' })).id as string);
    const refused = client.send(new StartBuildCommand({ projectName: 'quick' }));
    await expect(refused).rejects.toBeInstanceOf(AccountLimitExceededException);
    await expect(refused).rejects.toThrow('Cannot have more than 1 active builds for the account');

    expect(service.running.service.record(waiting)?.currentPhase).toBe('QUEUED');
    await client.send(new StopBuildCommand({ id: running }));
    const ran = await service.waitComplete(waiting);
    expect(ran.buildStatus).toBe('SUCCEEDED');
    expect(phaseSummary(ran)[1]).toBe('QUEUED:SUCCEEDED');
    for (const id of more) expect((await service.waitComplete(id)).buildStatus).toBe('SUCCEEDED');
  });

  it('stops a queued build without running it', async () => {
    const running = (await service.start({ projectName: 'long', timeoutInMinutesOverride: 480 })).id as string;
    await waitReady(service, running);
    const queued = (await service.start({ projectName: 'quick' })).id as string;
    const stopped = await service.client().send(new StopBuildCommand({ id: queued }));
    expect(stopped.build?.buildStatus).toBe('STOPPED');
    expect(stopped.build?.buildComplete).toBe(true);
    expect(phaseSummary(stopped.build ?? {})).toEqual(['SUBMITTED:SUCCEEDED', 'QUEUED:STOPPED', 'COMPLETED']);
    await service.client().send(new StopBuildCommand({ id: running }));
    await service.waitComplete(running);
  });
});

describe('shutdown', () => {
  it('stops every running build and leaves no process behind', async () => {
    const service = await startInProcess({ buildspecs: { long: LONG }, config: { stopGraceMs: 300 } });
    const id = (await service.start({ projectName: 'long' })).id as string;
    await waitReady(service, id);
    const bg = readPid(service, id, 'bg.pid');
    await service.close();
    const record = service.running.service.record(id);
    expect(record?.buildStatus).toBe('STOPPED');
    expect(record?.buildComplete).toBe(true);
    expect(record?.stop?.reason).toBe('shutdown');
    expect(processAlive(bg)).toBe(false);
    const onDisk = JSON.parse(readFileSync(join(service.stateDir, 'builds', id.split(':')[1] as string, 'record.json'), 'utf8')) as { buildStatus: string; buildComplete: boolean };
    expect(onDisk).toMatchObject({ buildStatus: 'STOPPED', buildComplete: true });
  });
});
