import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { runEntrypoint, writeResult, type EntrypointDependencies } from '../../src/entrypoint/run-entrypoint.js';
import { sealPayload } from '../../src/seal/envelope.js';
import { LocalKeyService } from '../../src/seal/local-key-service.js';
import { LocalPayloadStore } from '../../src/seal/local-payload-store.js';
import type { PayloadBinding } from '../../src/seal/types.js';
import { credentialsFileJson, FAKE_WORKER_JS, jobMessage, makeFakeRunnerRoot, PROJECT_ROOT, runnerFileJson } from '../support/runner-root.js';

const silent = pino({ level: 'silent' });

describe('runEntrypoint (inside the build, with the fake Runner.Worker)', () => {
  let dir: string;
  let keys: LocalKeyService;
  let store: LocalPayloadStore;
  let root: string;
  const binding: PayloadBinding = { buildId: 'cbactions:6f1d2c9e-0000-4000-8000-000000000001' };
  /** The clock the entrypoint compares job leases with. */
  let clock = Date.parse('2026-12-01T12:00:00Z');

  beforeAll(() => {
    if (!existsSync(FAKE_WORKER_JS)) throw new Error(`${FAKE_WORKER_JS} is missing: run "npm run build" first (npm test does)`);
  });
  beforeEach(() => {
    clock = Date.parse('2026-12-01T12:00:00Z');
    dir = mkdtempSync(join(tmpdir(), 'entrypoint-'));
    keys = new LocalKeyService(randomBytes(32));
    store = new LocalPayloadStore({ dir: join(dir, 'payloads'), pollMs: 20 });
    root = makeFakeRunnerRoot(join(dir, 'runner'));
  });

  async function deliver(job: string, sealingKeys = keys): Promise<Buffer> {
    const body = Buffer.from(job, 'utf16le');
    const sealed = await sealPayload(sealingKeys, { jobMessage: Buffer.from(body), runnerFile: Buffer.from(runnerFileJson()), credentialsFile: Buffer.from(credentialsFileJson()), ids: { buildId: binding.buildId, jobId: 'job-1' } }, binding);
    await store.put(binding, sealed);
    return body;
  }

  /** A logger that resolves once the entrypoint has started Runner.Worker: a cancel from then on is relayed to it. */
  function loggerUntilWorkerStarted() {
    let started!: () => void;
    const workerStarted = new Promise<void>((resolve) => (started = resolve));
    const logger = pino({ level: 'info' }, { write: (line: string) => (line.includes('"event":"entrypoint.worker-started"') ? started() : undefined) });
    return { logger, workerStarted };
  }

  function deps(stop = new AbortController(), logger: pino.Logger = silent): EntrypointDependencies {
    return {
      keys,
      store,
      resolveBinding: async () => binding,
      runnerRoot: root,
      resultDir: join(dir, 'result'),
      logger,
      facts: { buildId: binding.buildId, buildArn: `arn:aws:codebuild:us-east-1:123456789012:build/${binding.buildId}`, computeType: 'BUILD_GENERAL1_SMALL', image: 'img' },
      payloadWaitMs: 2000,
      cancelPollMs: 50,
      leaseCheckMs: 50,
      leaseCancelGraceMs: 10_000,
      now: () => clock,
      stopSignal: stop.signal,
      workerEnv: { ...process.env, ACTIONS_RUNNER_HOOK_JOB_STARTED: undefined, ACTIONS_RUNNER_HOOK_JOB_COMPLETED: undefined },
      runnerInstall: { installer: join(PROJECT_ROOT, 'docker', 'install-runner.sh'), checksums: join(dir, 'no-checksums.txt') },
      cbactionsCommand: [process.execPath, join(PROJECT_ROOT, 'bin', 'cbactions')],
    };
  }

  function evidence(jobId = 'job-1') {
    return JSON.parse(readFileSync(join(root, '_diag', `fake-worker-${jobId}.json`), 'utf8')) as Record<string, unknown>;
  }

  it('runs the real worker as the listener would and returns its exit code', async () => {
    const body = await deliver(jobMessage({ action: 'fail' }));
    const result = await runEntrypoint(deps());
    expect(result).toEqual({ kind: 'exit-code', exitCode: 102 });
    const seen = evidence();
    expect(seen.argv).toEqual(['spawnclient', '3', '4']);
    expect(Object.values(seen.fdKinds as Record<string, string>)).toEqual(['socket', 'socket']);
    expect(seen.runnerFilePresent).toBe(true);
    expect(seen.credentialsFilePresent).toBe(true);
    expect(seen.cwd).toBe(join(root, 'bin'));
    expect(seen.bodySha256).toBe(createHash('sha256').update(body).digest('hex'));
    expect(seen.messages).toEqual([1]);
    expect((seen.env as Record<string, string>).GITHUB_ACTIONS).toBe('true');
    const hook = (seen.env as Record<string, string>).ACTIONS_RUNNER_HOOK_JOB_STARTED;
    expect(readFileSync(String(hook), 'utf8')).toContain(`this job runs in AWS CodeBuild build ${binding.buildId} (BUILD_GENERAL1_SMALL, img)`);
    expect(readdirSync(join(dir, 'payloads')).filter((name) => name.endsWith('.sealed'))).toEqual([]);
  });

  it("records its times for CBACTIONS_TIMELINE and runs the job hooks that print the wait and the cost into the job's log", async () => {
    const price = { computeType: 'BUILD_GENERAL1_SMALL', rule: 'per-minute' as const, region: 'us-east-1', perMinute: 0.005, currency: 'USD', asOf: '2026-05' };
    // The mux wrote the price with the first lease and CodeBuild's waits later.
    await store.renewLease(binding, { expiresAt: new Date(clock + 300_000), facts: { price, waits: { submittedMs: 400, queuedMs: 500, provisioningMs: 19_400 } } });
    await deliver(jobMessage({ action: 'succeed' }));
    const submittedAt = clock - 25_000;
    const result = await runEntrypoint({ ...deps(), startedAt: clock - 3000, submittedAt });
    expect(result).toEqual({ kind: 'exit-code', exitCode: 100 });
    const timeline = JSON.parse(readFileSync(join(dir, 'result', 'timeline'), 'utf8')) as Record<string, number>;
    expect(timeline).toEqual({ entrypointStartedAt: clock - 3000, payloadOpenedAt: clock, workerStartedAt: clock, workerExitedAt: clock });
    expect((evidence().hooks as unknown[]).map((hook) => hook)).toEqual([
      { variable: 'ACTIONS_RUNNER_HOOK_JOB_STARTED', exitCode: 0 },
      { variable: 'ACTIONS_RUNNER_HOOK_JOB_COMPLETED', exitCode: 0 },
    ]);
    const log = readFileSync(join(root, '_diag', 'fake-job-log-job-1.txt'), 'utf8');
    expect(log.match(/^cbactions: waited 20\.3 s for CodeBuild \(queued 0\.5 s, provisioning 19\.4 s\)$/gm)).toHaveLength(2);
    expect(log).toMatch(/^cbactions: build cost so far: BUILD_GENERAL1_SMALL, \d+ min billed \(every started minute counts\) for \d+\.\d s since the build was submitted.*USD at 0\.005 USD\/min \(us-east-1 list price as of 2026-05\)$/m);
  });

  it('writes its timeline even when the job could not run', async () => {
    const result = await runEntrypoint({ ...deps(), payloadWaitMs: 0, startedAt: clock - 10 });
    expect(result).toMatchObject({ kind: 'failure', code: 'PAYLOAD_NOT_FOUND' });
    expect(JSON.parse(readFileSync(join(dir, 'result', 'timeline'), 'utf8'))).toEqual({ entrypointStartedAt: clock - 10 });
  });

  it('relays the cancel marker as a CancelRequest', async () => {
    await deliver(jobMessage({ action: 'wait-for-cancel' }));
    const { logger, workerStarted } = loggerUntilWorkerStarted();
    const running = runEntrypoint(deps(undefined, logger));
    await workerStarted;
    await store.requestCancel(binding);
    const result = await running;
    expect(result).toEqual({ kind: 'exit-code', exitCode: 103 });
    expect(evidence().messages).toEqual([1, 2]);
    expect(await store.isCancelRequested(binding)).toBe(false);
  });

  it('relays a stop signal (SIGTERM from CodeBuild) as a CancelRequest', async () => {
    await deliver(jobMessage({ action: 'wait-for-cancel' }));
    const stop = new AbortController();
    const { logger, workerStarted } = loggerUntilWorkerStarted();
    const running = runEntrypoint(deps(stop, logger));
    await workerStarted;
    stop.abort();
    expect(await running).toEqual({ kind: 'exit-code', exitCode: 103 });
  });

  it('a stop that arrives after the payload is opened, before the worker starts, is not lost: the job never starts', async () => {
    await deliver(jobMessage({ action: 'wait-for-cancel' }));
    const stop = new AbortController();
    // Stop exactly between taking the payload and starting the worker (pino writes synchronously).
    const logger = pino({ level: 'info' }, { write: (line: string) => (line.includes('"event":"entrypoint.payload-opened"') ? stop.abort() : undefined) });
    const result = await runEntrypoint(deps(stop, logger));
    expect(result).toMatchObject({ kind: 'failure', code: 'JOB_CANCELLED_BEFORE_START', message: 'the build was stopped before the job started' });
    expect(existsSync(join(root, '_diag'))).toBe(false);
  });

  it('a cancel marker already set when the payload opens: the job never starts', async () => {
    await deliver(jobMessage({ action: 'wait-for-cancel' }));
    await store.requestCancel(binding);
    const result = await runEntrypoint(deps());
    expect(result).toMatchObject({ kind: 'failure', code: 'JOB_CANCELLED_BEFORE_START', message: 'the job was cancelled before it started' });
    expect(existsSync(join(root, '_diag'))).toBe(false);
  });

  it('records a crashed worker exit code as it is', async () => {
    await deliver(jobMessage({ action: 'crash', crashCode: 3 }));
    expect(await runEntrypoint(deps())).toEqual({ kind: 'exit-code', exitCode: 3 });
  });

  it('fails with the store error when no payload arrives', async () => {
    const result = await runEntrypoint({ ...deps(), payloadWaitMs: 100 });
    expect(result).toMatchObject({ kind: 'failure', code: 'PAYLOAD_NOT_FOUND' });
  });

  it('fails clearly on a payload sealed under another key, and does not start the worker', async () => {
    await deliver(jobMessage(), new LocalKeyService(randomBytes(32)));
    const result = await runEntrypoint(deps());
    expect(result).toMatchObject({ kind: 'failure', code: 'SEAL_WRONG_KEY' });
    expect(existsSync(join(root, '_diag'))).toBe(false);
  });

  /** Resolves after the entrypoint has read the lease `count` more times (a peer that holds its answer). */
  function countLeaseReads() {
    let reads = 0;
    const waiters: { at: number; resolve: () => void }[] = [];
    const readLease = store.readLease.bind(store);
    store.readLease = async (...args) => {
      const lease = await readLease(...args);
      reads += 1;
      for (const waiter of waiters.filter((candidate) => candidate.at <= reads)) waiter.resolve();
      return lease;
    };
    return { afterMoreReads: (count: number) => new Promise<void>((resolve) => waiters.push({ at: reads + count, resolve })) };
  }

  describe('job lease', () => {
    it('a job whose lease expired (its holder is gone) is cancelled and ends as JOB_LEASE_EXPIRED; a live lease does not end it', async () => {
      await deliver(jobMessage({ action: 'wait-for-cancel' }));
      await store.renewLease(binding, { expiresAt: new Date(clock + 300_000) });
      const lines: string[] = [];
      let started!: () => void;
      const workerStarted = new Promise<void>((resolve) => (started = resolve));
      const logger = pino({ level: 'info' }, { write: (line: string) => {
        lines.push(line);
        if (line.includes('"event":"entrypoint.worker-started"')) started();
      } });
      const reads = countLeaseReads();
      const running = runEntrypoint(deps(undefined, logger));
      await workerStarted;
      await reads.afterMoreReads(3);
      expect(lines.filter((line) => line.includes('"event":"entrypoint.cancel"'))).toEqual([]);

      // Five minutes and a second later nobody has renewed it.
      clock += 301_000;
      const result = await running;
      expect(result).toMatchObject({ kind: 'failure', code: 'JOB_LEASE_EXPIRED' });
      expect(result.kind === 'failure' && result.message).toContain('lease expired at 2026-12-01T12:05:00.000Z');
      expect(evidence().messages).toEqual([1, 2]);
      expect(lines.some((line) => line.includes('"event":"entrypoint.lease-expired"') && line.includes('"code":"JOB_LEASE_EXPIRED"'))).toBe(true);
    });

    it('a renewed lease keeps the job running past the first expiry', async () => {
      await deliver(jobMessage({ action: 'wait-for-cancel' }));
      await store.renewLease(binding, { expiresAt: new Date(clock + 300_000) });
      const { logger, workerStarted } = loggerUntilWorkerStarted();
      const reads = countLeaseReads();
      const running = runEntrypoint(deps(undefined, logger));
      await workerStarted;
      await store.renewLease(binding, { expiresAt: new Date(clock + 600_000) });
      // A read already in flight may still return the old lease: move the clock only after a
      // read that began after the renewal has finished.
      await reads.afterMoreReads(2);
      clock += 301_000;
      await reads.afterMoreReads(3);
      await store.requestCancel(binding);
      expect(await running).toEqual({ kind: 'exit-code', exitCode: 103 });
    });

    it('no lease at all (an older worker) does not end the job', async () => {
      await deliver(jobMessage({ action: 'wait-for-cancel' }));
      const { logger, workerStarted } = loggerUntilWorkerStarted();
      const reads = countLeaseReads();
      const running = runEntrypoint(deps(undefined, logger));
      await workerStarted;
      clock += 86_400_000;
      await reads.afterMoreReads(3);
      await store.requestCancel(binding);
      expect(await running).toEqual({ kind: 'exit-code', exitCode: 103 });
    });

    it('a worker that ignores the lease-expiry cancel is killed after the grace period', async () => {
      await deliver(jobMessage({ action: 'ignore-cancel' }));
      await store.renewLease(binding, { expiresAt: new Date(clock - 1) });
      const result = await runEntrypoint({ ...deps(), leaseCancelGraceMs: 100 });
      expect(result).toMatchObject({ kind: 'failure', code: 'JOB_LEASE_EXPIRED' });
      expect(result.kind === 'failure' && result.message).toContain('Runner.Worker exited 137');
    });
  });

  it('writes results the buildspec exports', async () => {
    const resultDir = join(dir, 'r');
    await writeResult(resultDir, { kind: 'exit-code', exitCode: 101 });
    expect(readFileSync(join(resultDir, 'exit-code'), 'utf8')).toBe('101');
    await writeResult(resultDir, { kind: 'failure', code: 'X_Y', message: 'multi\nline   reason' });
    expect(readFileSync(join(resultDir, 'failure'), 'utf8')).toBe('X_Y: multi line reason');
  });
});
