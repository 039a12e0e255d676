import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AwsCodeBuildApi } from '../../src/dispatch/codebuild-api.js';
import { BuildWatcher } from '../../src/watcher/build-watcher.js';
import { WatcherServer, type WatcherEvent } from '../../src/watcher/watcher-server.js';
import { processesWithEnvironment, startJobPathRig, type JobPathRig } from '../support/job-path.js';
import { jobMessage } from '../support/runner-root.js';

/**
 * The AWS-shaped job path with the host's shared watcher (as the mux runs it): workers
 * started by the fake listener reach it over its socket; builds run in the local build
 * service through the real SDK.
 */
describe('job path with the shared build watcher', () => {
  let rig: JobPathRig;
  let watcher: BuildWatcher;
  let server: WatcherServer;
  const events: WatcherEvent[] = [];

  beforeAll(async () => {
    rig = await startJobPathRig();
    const builds = new AwsCodeBuildApi(rig.service.client({ maxAttempts: 1 }));
    watcher = new BuildWatcher(builds, pino({ level: 'silent' }), { minIntervalMs: 500, maxCallsPerSecond: 4, throttleMaxMs: 4000 });
    watcher.start();
    server = await WatcherServer.listen({ socketPath: join(mkdtempSync(join(tmpdir(), 'watch-')), 'watcher.sock'), watcher, builds, logger: pino({ level: 'silent' }), onEvent: (event) => events.push(event) });
  });
  afterAll(async () => {
    await server?.close();
    await watcher?.close();
    await rig?.stop();
  });

  const withWatcher = () => ({ CBACTIONS_WATCHER_SOCKET: server.socketPath });

  it('a worker killed with SIGKILL has its build stopped by the watcher', async () => {
    const workerLog = join(rig.base, 'killed-worker.log');
    let buildId: string | undefined;
    const running = rig.runJob({
      jobBody: jobMessage({ jobId: 'job-orphan', action: 'wait-for-cancel' }),
      extraEnv: { ...withWatcher(), CBACTIONS_WORKER_LOG: workerLog },
    });
    // Wait until the job runs in its build, then kill the worker the listener started.
    for (;;) {
      const tracked = server.builds().find((build) => build.jobId === 'job-orphan');
      if (tracked?.phase === 'BUILD') {
        buildId = tracked.buildId;
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const workers = processesWithEnvironment(`CBACTIONS_WORKER_LOG=${workerLog}`);
    expect(workers).toHaveLength(1);
    process.kill(workers[0] as number, 'SIGKILL');
    const result = await running;
    expect(result.signal).toBe('SIGKILL');
    const build = await rig.service.waitForBuild(buildId, { timeoutMs: 60_000 });
    expect(build.buildStatus).toBe('STOPPED');
    // The watcher's event and the build's status arrive on different connections: poll, do not race.
    await expect.poll(() => events, { timeout: 30_000 }).toContainEqual(expect.objectContaining({ kind: 'orphaned', stopped: true, build: expect.objectContaining({ buildId }) }));
    expect(processesWithEnvironment(`CODEBUILD_BUILD_ID=${buildId}`)).toEqual([]);
  }, 120_000);

  it('loses no job in a throttling storm (half of all CodeBuild calls throttled)', async () => {
    await rig.service.resetCalls();
    await rig.service.setFaults({ throttleRatio: { ratio: 0.5, seed: 7 } });
    try {
      const jobs = ['a', 'b', 'c', 'd', 'e', 'f'].map((name, index) =>
        rig.runJob({ jobBody: jobMessage({ jobId: `job-storm-${name}`, action: index % 2 === 0 ? 'succeed' : 'fail' }), extraEnv: withWatcher() }),
      );
      const results = await Promise.all(jobs);
      expect(results.map((result) => result.exitCode)).toEqual([100, 102, 100, 102, 100, 102]);
      const calls = JSON.stringify(await rig.service.calls());
      expect(calls).toMatch(/throttled/i);
    } finally {
      await rig.service.clearFaults();
    }
  });

  it('an image that cannot be pulled reaches stderr with the build id and a console link', async () => {
    await rig.service.setFaults({
      buildFailures: [{ phase: 'PROVISIONING', statusCode: 'CLIENT_ERROR', message: "Unable to pull customer's container image. CannotPullContainerError: pull access denied for example/missing" }],
    });
    const result = await rig.runJob({ jobBody: jobMessage({ jobId: 'job-image' }), extraEnv: withWatcher() });
    expect(result.exitCode).toBe(1);
    expect(result.crashReport).toHaveLength(1);
    expect(result.crashReport?.[0]).toMatch(
      /^cbactions: the build could not pull its container image .*CannotPullContainerError: pull access denied for example\/missing \[build cbactions:[0-9a-f-]{36} https:\/\/us-east-1\.console\.aws\.amazon\.com\/.+\] \(BUILD_IMAGE_PULL\)$/,
    );
  });

  it('a refused StartBuild (quota) reaches stderr and the watcher log says the dispatch failed', async () => {
    await rig.service.setFaults({ accountLimit: { count: 1, limit: 10 } });
    const result = await rig.runJob({ jobBody: jobMessage({ jobId: 'job-quota-w' }), extraEnv: withWatcher() });
    expect(result.crashReport?.[0]).toContain('Cannot have more than 10 active builds for the account');
    await expect.poll(() => events, { timeout: 10_000 }).toContainEqual(expect.objectContaining({ kind: 'worker-done', failureCode: 'CODEBUILD_QUOTA', build: expect.objectContaining({ jobId: 'job-quota-w' }) }));
  });
});

/** The same guarantee with in-process dispatch: the process the listener SIGKILLs is the native shim. */
describe('job path with in-process dispatch: a shim killed with SIGKILL', () => {
  let rig: JobPathRig;

  beforeAll(async () => {
    rig = await startJobPathRig({ dispatch: 'in-process' });
  });
  afterAll(async () => {
    await rig?.stop();
  });

  it('has its build stopped by the mux at once (its connection closed before the job ended)', { timeout: 120_000 }, async () => {
    const workerLog = join(rig.base, 'killed-shim.log');
    const running = rig.runJob({ jobBody: jobMessage({ jobId: 'job-shim-orphan', action: 'wait-for-cancel' }), extraEnv: { CBACTIONS_WORKER_LOG: workerLog } });
    const events = rig.inProcess?.events ?? [];
    await expect.poll(() => events.some((event) => event.kind === 'tracked' && event.jobId === 'job-shim-orphan'), { timeout: 60_000, interval: 100 }).toBe(true);
    const tracked = events.find((event) => event.kind === 'tracked' && event.jobId === 'job-shim-orphan');
    const buildId = tracked?.buildId as string;
    await expect.poll(async () => (await rig.service.log(buildId)).includes('running job job-shim-orphan'), { timeout: 60_000, interval: 200 }).toBe(true);
    // The shim carries the listener's environment; it is the only process of this job here (no worker).
    const shims = processesWithEnvironment(`CBACTIONS_WORKER_LOG=${workerLog}`);
    expect(shims).toHaveLength(1);
    process.kill(shims[0] as number, 'SIGKILL');
    const result = await running;
    expect(result.signal).toBe('SIGKILL');
    const build = await rig.service.waitForBuild(buildId, { timeoutMs: 60_000 });
    expect(build.buildStatus).toBe('STOPPED');
    await expect.poll(() => events, { timeout: 30_000 }).toContainEqual(expect.objectContaining({ kind: 'done', jobId: 'job-shim-orphan', orphan: { stopped: true } }));
    expect(processesWithEnvironment(`CODEBUILD_BUILD_ID=${buildId}`)).toEqual([]);
  });
});
