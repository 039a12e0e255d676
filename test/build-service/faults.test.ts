import { AccountLimitExceededException, BatchGetBuildsCommand, StartBuildCommand } from '@aws-sdk/client-codebuild';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FaultState, FaultsSchema } from '../../src/build-service/faults.js';
import { liveGroupMembers } from '../../src/util/process-group.js';
import { runnableMembers } from '../../src/build-service/local-codebuild.js';
import { phaseSummary, startInProcess, type InProcess } from './harness.js';

// Fault injection: what the control API arms, the SDK and the builds see.

// Waits in BUILD for a "go" file the test writes, then marks that it went on.
const WAITS = `version: 0.2
phases:
  build:
    commands:
      - touch "$CODEBUILD_SRC_DIR/started"; while [ ! -e "$CODEBUILD_SRC_DIR/go" ]; do sleep 0.05; done; touch "$CODEBUILD_SRC_DIR/went-on"
`;

/** A loop that starts a short-lived command again and again (dash vforks each one). */
const SPINS = `version: 0.2
phases:
  build:
    commands:
      - touch "$CODEBUILD_SRC_DIR/started"; while [ ! -e "$CODEBUILD_SRC_DIR/go" ]; do sleep 0.001; done
`;

const MARKS = `version: 0.2
phases:
  install:
    commands:
      - touch "$CODEBUILD_SRC_DIR/install-ran"
  build:
    commands:
      - touch "$CODEBUILD_SRC_DIR/build-ran"
  post_build:
    commands:
      - touch "$CODEBUILD_SRC_DIR/post-build-ran"
`;

async function control(service: InProcess, method: string, path: string, body?: unknown): Promise<{ status: number; json: unknown }> {
  const response = await fetch(`${service.endpoint}${path}`, { method, headers: { authorization: `Bearer ${service.controlToken}` }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  return { status: response.status, json: await response.json() };
}

function ran(service: InProcess, id: string, marker: string): boolean {
  return existsSync(join(service.stateDir, 'builds', id.split(':')[1] as string, 'src', marker));
}

describe('FaultState', () => {
  it('throttles exactly the next N calls of the given operations', () => {
    const faults = new FaultState(FaultsSchema.parse({ throttle: { count: 2, operations: ['StartBuild'] } }));
    expect(faults.takeThrottle('BatchGetBuilds')).toBe(false);
    expect(faults.takeThrottle('StartBuild')).toBe(true);
    expect(faults.takeThrottle('StartBuild')).toBe(true);
    expect(faults.takeThrottle('StartBuild')).toBe(false);
    expect(faults.snapshot().throttle).toBeUndefined();
  });

  it('throttles a seeded ratio of calls, the same way for the same seed', () => {
    const run = (seed: number) => {
      const faults = new FaultState(FaultsSchema.parse({ throttleRatio: { ratio: 0.3, seed } }));
      return Array.from({ length: 200 }, () => faults.takeThrottle('BatchGetBuilds'));
    };
    const first = run(7);
    expect(run(7)).toEqual(first);
    expect(run(8)).not.toEqual(first);
    const share = first.filter(Boolean).length / first.length;
    expect(share).toBeGreaterThan(0.15);
    expect(share).toBeLessThan(0.45);
  });

  it('hands each planned build failure to the next builds of its project', () => {
    const faults = new FaultState(FaultsSchema.parse({ buildFailures: [{ phase: 'INSTALL', count: 2, project: 'a' }] }));
    expect(faults.takeBuildFailure('b')).toBeUndefined();
    expect(faults.takeBuildFailure('a')).toMatchObject({ phase: 'INSTALL', status: 'FAILED', statusCode: 'CLIENT_ERROR' });
    expect(faults.takeBuildFailure('a')).toBeDefined();
    expect(faults.takeBuildFailure('a')).toBeUndefined();
  });
});

describe('fault injection through the control API', () => {
  let service: InProcess;

  beforeAll(async () => {
    service = await startInProcess({ buildspecs: { marks: MARKS, other: MARKS, waits: WAITS, spins: SPINS } });
  });

  afterEach(async () => {
    await control(service, 'DELETE', '/_local/faults');
  });

  afterAll(async () => {
    await service?.close();
  });

  it('throttles with ThrottlingException "Rate exceeded" and counts it', async () => {
    await control(service, 'DELETE', '/_local/calls');
    const armed = await control(service, 'POST', '/_local/faults', { throttle: { count: 1, operations: ['BatchGetBuilds'] } });
    expect(armed.status).toBe(200);
    const client = service.client();
    const error = await client.send(new BatchGetBuildsCommand({ ids: ['marks:x'] })).catch((caught: unknown) => caught as Error & { $metadata: { httpStatusCode?: number } });
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).name).toBe('ThrottlingException');
    expect((error as Error).message).toBe('Rate exceeded');
    expect((error as { $metadata: { httpStatusCode?: number } }).$metadata.httpStatusCode).toBe(400);
    const calls = await control(service, 'GET', '/_local/calls');
    expect(calls.json).toMatchObject({ operations: { BatchGetBuilds: { calls: 1, throttled: 1 } }, total: { calls: 1, throttled: 1 } });
  });

  it('lets the SDK retry a throttled call to success', async () => {
    await control(service, 'DELETE', '/_local/calls');
    await control(service, 'POST', '/_local/faults', { throttle: { count: 2, operations: ['StartBuild'] } });
    const client = service.client({ maxAttempts: 4 });
    const { build } = await client.send(new StartBuildCommand({ projectName: 'marks', idempotencyToken: 'retry-me' }));
    expect(build?.id).toBeDefined();
    const calls = (await control(service, 'GET', '/_local/calls')).json as { operations: Record<string, { calls: number; throttled: number }> };
    expect(calls.operations.StartBuild).toEqual({ calls: 3, throttled: 2 });
    await service.waitComplete(build?.id as string);
  });

  it('refuses StartBuild with AccountLimitExceededException the next N times', async () => {
    await control(service, 'POST', '/_local/faults', { accountLimit: { count: 2, limit: 20 } });
    const client = service.client();
    for (let i = 0; i < 2; i += 1) {
      const refused = client.send(new StartBuildCommand({ projectName: 'marks' }));
      await expect(refused).rejects.toBeInstanceOf(AccountLimitExceededException);
      await expect(refused).rejects.toThrow('Cannot have more than 20 active builds for the account');
    }
    const { build } = await client.send(new StartBuildCommand({ projectName: 'marks' }));
    await service.waitComplete(build?.id as string);
  });

  it('fails the next build in PROVISIONING with the given status, code and message', async () => {
    const message = "Unable to pull customer's container image. CannotPullContainerError: pull access denied";
    await control(service, 'POST', '/_local/faults', { buildFailures: [{ phase: 'PROVISIONING', status: 'FAILED', statusCode: 'CLIENT_ERROR', message }] });
    const failed = await service.waitComplete((await service.start({ projectName: 'marks' })).id as string);
    expect(failed.buildStatus).toBe('FAILED');
    expect(phaseSummary(failed)).toEqual(['SUBMITTED:SUCCEEDED', 'QUEUED:SUCCEEDED', 'PROVISIONING:FAILED', 'FINALIZING:SUCCEEDED', 'COMPLETED']);
    expect(failed.phases?.[2]?.contexts).toEqual([{ statusCode: 'CLIENT_ERROR', message }]);
    expect(ran(service, failed.id as string, 'install-ran')).toBe(false);
    // Only the next build.
    const next = await service.waitComplete((await service.start({ projectName: 'marks' })).id as string);
    expect(next.buildStatus).toBe('SUCCEEDED');
  });

  it('fails INSTALL without running its commands, and a FAULT in BUILD skips POST_BUILD', async () => {
    await control(service, 'POST', '/_local/faults', {
      buildFailures: [
        { phase: 'INSTALL', statusCode: 'COMMAND_EXECUTION_ERROR', message: 'Error while executing command: injected. Reason: exit status 1', project: 'marks' },
        { phase: 'BUILD', status: 'FAULT', statusCode: 'INTERNAL_ERROR', message: 'injected fault', project: 'other' },
      ],
    });
    const install = await service.waitComplete((await service.start({ projectName: 'marks' })).id as string);
    expect(install.buildStatus).toBe('FAILED');
    expect(phaseSummary(install).slice(2)).toEqual(['PROVISIONING:SUCCEEDED', 'DOWNLOAD_SOURCE:SUCCEEDED', 'INSTALL:FAILED', 'FINALIZING:SUCCEEDED', 'COMPLETED']);
    expect(ran(service, install.id as string, 'install-ran')).toBe(false);

    const fault = await service.waitComplete((await service.start({ projectName: 'other' })).id as string);
    expect(fault.buildStatus).toBe('FAULT');
    expect(phaseSummary(fault).slice(4)).toEqual(['INSTALL:SUCCEEDED', 'PRE_BUILD:SUCCEEDED', 'BUILD:FAULT', 'FINALIZING:SUCCEEDED', 'COMPLETED']);
    expect(ran(service, fault.id as string, 'install-ran')).toBe(true);
    expect(ran(service, fault.id as string, 'build-ran')).toBe(false);
    expect(ran(service, fault.id as string, 'post-build-ran')).toBe(false);
    expect(service.running.service.record(fault.id as string)?.plannedFailure).toMatchObject({ phase: 'BUILD', status: 'FAULT' });
  });

  it('shows armed faults and refuses malformed ones naming the field', async () => {
    await control(service, 'POST', '/_local/faults', { throttle: { count: 3 }, accountLimit: {} });
    const shown = await control(service, 'GET', '/_local/faults');
    expect(shown.json).toMatchObject({ throttle: { remaining: 3 }, accountLimit: { limit: 1 }, buildFailures: [] });
    const bad = await control(service, 'POST', '/_local/faults', { buildFailures: [{ phase: 'NOPE' }] });
    expect(bad.status).toBe(400);
    expect(JSON.stringify(bad.json)).toContain('buildFailures[0].phase');
    const cleared = await control(service, 'DELETE', '/_local/faults');
    expect(cleared.json).toEqual({ buildFailures: [] });
  });

  it('freezes a build whose shell vforks, again and again: each freeze answers with no process able to run', { timeout: 120_000 }, async () => {
    // dash vforks each command: a freeze that lands between vfork and exec stops the child while
    // its parent waits in state D for the exec. That parent cannot run, and the freeze must say so, not wait for a T it never shows.
    const busy = (await service.start({ projectName: 'spins' })).id as string;
    const srcOf = (id: string) => join(service.stateDir, 'builds', id.split(':')[1] as string, 'src');
    await expect.poll(() => existsSync(join(srcOf(busy), 'started')), { timeout: 30_000, interval: 20 }).toBe(true);
    const pgid = service.running.service.record(busy)?.processGroup as number;
    for (let round = 0; round < 40; round++) {
      const frozen = await control(service, 'POST', `/_local/builds/${encodeURIComponent(busy)}/freeze`);
      expect(frozen.status, JSON.stringify(frozen.json)).toBe(200);
      expect(runnableMembers(pgid)).toEqual([]);
      expect((await control(service, 'POST', `/_local/builds/${encodeURIComponent(busy)}/thaw`)).status).toBe(200);
    }
    writeFileSync(join(srcOf(busy), 'go'), '');
    expect((await service.waitComplete(busy)).buildStatus).toBe('SUCCEEDED');
  });

  it('freezes a running build (every process stopped), thaws it, and kills one (the build fails)', { timeout: 60_000 }, async () => {
    const srcOf = (id: string) => join(service.stateDir, 'builds', id.split(':')[1] as string, 'src');
    const frozen = (await service.start({ projectName: 'waits' })).id as string;
    await expect.poll(() => existsSync(join(srcOf(frozen), 'started')), { timeout: 30_000, interval: 20 }).toBe(true);
    const pgid = service.running.service.record(frozen)?.processGroup;
    expect(pgid).toBeGreaterThan(0);
    expect((await control(service, 'POST', `/_local/builds/${encodeURIComponent(frozen)}/freeze`)).status).toBe(200);
    // SIGSTOP reaches each process when it is next scheduled: the freeze answers only once none can run.
    expect(liveGroupMembers(pgid as number).length).toBeGreaterThan(0);
    expect(runnableMembers(pgid as number)).toEqual([]);
    writeFileSync(join(srcOf(frozen), 'go'), '');
    expect((await control(service, 'POST', `/_local/builds/${encodeURIComponent(frozen)}/thaw`)).status).toBe(200);
    expect((await service.waitComplete(frozen)).buildStatus).toBe('SUCCEEDED');
    expect(existsSync(join(srcOf(frozen), 'went-on'))).toBe(true);

    const killed = (await service.start({ projectName: 'waits' })).id as string;
    await expect.poll(() => existsSync(join(srcOf(killed), 'started')), { timeout: 30_000, interval: 20 }).toBe(true);
    expect((await control(service, 'POST', `/_local/builds/${encodeURIComponent(killed)}/kill`)).status).toBe(200);
    const failed = await service.waitComplete(killed);
    expect(failed.buildStatus).toBe('FAILED');
    expect(existsSync(join(srcOf(killed), 'went-on'))).toBe(false);

    // Over, unknown, or no such action: refused, naming why.
    const over = await control(service, 'POST', `/_local/builds/${encodeURIComponent(killed)}/freeze`);
    expect(over.status).toBe(409);
    expect(JSON.stringify(over.json)).toContain('no running commands');
    expect((await control(service, 'POST', '/_local/builds/waits:nope/freeze')).status).toBe(404);
    expect((await control(service, 'POST', `/_local/builds/${encodeURIComponent(killed)}/melt`)).status).toBe(404);
  });
});
