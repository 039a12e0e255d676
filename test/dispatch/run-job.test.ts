import { existsSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { BuildSettingsSchema, PricingSchema } from '../../src/config/schema.js';
import { MessageType, type Frame } from '../../src/protocol/messages.js';
import { openPayload } from '../../src/seal/envelope.js';
import { LocalKeyService } from '../../src/seal/local-key-service.js';
import { LocalPayloadStore } from '../../src/seal/local-payload-store.js';
import type { JobLease, PayloadBinding, PayloadStore, TakeOptions } from '../../src/seal/types.js';
import type { CodeBuildApi, BuildSnapshot, StartBuildRequest } from '../../src/dispatch/codebuild-api.js';
import { PollingBuildWaiter, type BuildWaiter } from '../../src/dispatch/build-waiter.js';
import { runJob, type JobDependencies } from '../../src/dispatch/run-job.js';
import { awsError, InMemoryBuilds } from '../support/in-memory-builds.js';
import { jobMessage, runnerFileJson } from '../support/runner-root.js';
import { githubContext, pullRequestContext } from '../support/context-data.js';
import { PolicySchema } from '../../src/config/policy-schema.js';
import { reportOutcome } from '../../src/dispatch/job-report.js';

/** Frames as the listener sends them: the job, then maybe one follow-up or EOF. */
function listenerPipe(job: string) {
  const pending: ((value: IteratorResult<Frame>) => void)[] = [];
  const queued: IteratorResult<Frame>[] = [{ done: false, value: { type: MessageType.NewJobRequest, body: Buffer.from(job, 'utf16le') } }];
  const push = (item: IteratorResult<Frame>) => {
    const waiter = pending.shift();
    if (waiter) waiter(item);
    else queued.push(item);
  };
  const iterator: AsyncIterator<Frame> = {
    next: () => {
      const item = queued.shift();
      return item ? Promise.resolve(item) : new Promise((resolve) => pending.push(resolve));
    },
  };
  return {
    iterator,
    send: (type: MessageType) => push({ done: false, value: { type, body: Buffer.alloc(0) } }),
    close: () => push({ done: true, value: undefined }),
  };
}

const silent = pino({ level: 'silent' });

/** A call the test holds: `entered` settles when the call arrives, its answer waits for `release()`. */
class Hold {
  private arrive!: () => void;
  private open!: () => void;
  readonly entered = new Promise<void>((resolve) => (this.arrive = resolve));
  private readonly released = new Promise<void>((resolve) => (this.open = resolve));

  /** Called by the fake: waits for the release, or rejects like the SDK when `signal` aborts. */
  async pass(signal?: AbortSignal): Promise<void> {
    this.arrive();
    if (!signal) return this.released;
    signal.throwIfAborted();
    await new Promise<void>((resolve, reject) => {
      const onAbort = () => reject(signal.reason);
      signal.addEventListener('abort', onAbort, { once: true });
      void this.released.then(() => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      });
    });
  }

  release(): void {
    this.open();
  }
}

/** CodeBuild whose StartBuild answers are held: the call reaches CodeBuild, the answer waits. */
class HeldStartBuilds implements CodeBuildApi {
  readonly holds: Hold[] = [];
  constructor(private readonly inner: InMemoryBuilds) {}
  hold(): Hold {
    const hold = new Hold();
    this.holds.push(hold);
    return hold;
  }
  async startBuild(request: StartBuildRequest): Promise<BuildSnapshot> {
    const hold = this.holds.shift();
    const settled = await this.inner.startBuild(request).then((build) => ({ build }), (error: unknown) => ({ error }));
    await hold?.pass();
    if ('error' in settled) throw settled.error;
    return settled.build;
  }
  getBuilds(ids: string[]) {
    return this.inner.getBuilds(ids);
  }
  stopBuild(id: string) {
    return this.inner.stopBuild(id);
  }
}

/** The payload store, counting cancel markers; `put` and the marker's answer can be held. */
class WatchedStore implements PayloadStore {
  cancelMarkers = 0;
  putHold: Hold | undefined;
  /** Held after the marker is written: only the answer is late. */
  cancelHold: Hold | undefined;
  private answered!: () => void;
  /** Settles when the first marker's answer has been handed back. */
  readonly markerAnswered = new Promise<void>((resolve) => (this.answered = resolve));
  constructor(private readonly inner: LocalPayloadStore) {}
  describe(binding: PayloadBinding) {
    return this.inner.describe(binding);
  }
  async put(binding: PayloadBinding, sealed: Buffer, signal?: AbortSignal) {
    await this.putHold?.pass();
    return this.inner.put(binding, sealed, signal);
  }
  take(binding: PayloadBinding, options?: TakeOptions) {
    return this.inner.take(binding, options);
  }
  delete(binding: PayloadBinding) {
    return this.inner.delete(binding);
  }
  isPending(binding: PayloadBinding) {
    return this.inner.isPending(binding);
  }
  async requestCancel(binding: PayloadBinding, signal?: AbortSignal) {
    this.cancelMarkers += 1;
    await this.inner.requestCancel(binding);
    await this.cancelHold?.pass(signal);
    this.answered();
  }
  isCancelRequested(binding: PayloadBinding) {
    return this.inner.isCancelRequested(binding);
  }
  clearCancel(binding: PayloadBinding) {
    return this.inner.clearCancel(binding);
  }
  renewLease(binding: PayloadBinding, lease: JobLease, signal?: AbortSignal) {
    return this.inner.renewLease(binding, lease, signal);
  }
  readLease(binding: PayloadBinding, signal?: AbortSignal) {
    return this.inner.readLease(binding, signal);
  }
  releaseLease(binding: PayloadBinding, signal?: AbortSignal) {
    return this.inner.releaseLease(binding, signal);
  }
}

/** A waiter that returns when the test ends the build (or after a StopBuild ended it). */
class HeldWaiter implements BuildWaiter {
  private end: ((snapshot: BuildSnapshot) => void) | undefined;
  private waitingFor!: (buildId: string) => void;
  readonly waiting = new Promise<string>((resolve) => (this.waitingFor = resolve));
  constructor(private readonly builds: InMemoryBuilds) {}
  waitForCompletion(buildId: string): Promise<BuildSnapshot> {
    const done = new Promise<BuildSnapshot>((resolve) => (this.end = resolve));
    this.waitingFor(buildId);
    return done;
  }
  poke(buildId: string): void {
    const build = this.builds.builds.get(buildId);
    if (build?.complete) this.end?.({ ...build });
  }
  finish(buildId: string, exitCode: string): void {
    this.builds.finish(buildId, { exported: { CBACTIONS_EXIT_CODE: exitCode } });
    this.poke(buildId);
  }
}

/** Lets every promise callback that is already due run (I/O excluded): setImmediate runs after them. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('runJob (worker orchestration against in-memory CodeBuild)', () => {
  let dir: string;
  let builds: InMemoryBuilds;
  let keys: LocalKeyService;
  let store: LocalPayloadStore;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'run-job-'));
    builds = new InMemoryBuilds();
    keys = new LocalKeyService(randomBytes(32));
    store = new LocalPayloadStore({ dir: join(dir, 'payloads'), pollMs: 10 });
  });
  afterEach(() => {
    builds.onStart = undefined;
    vi.useRealTimers();
  });

  function deps(pipe: ReturnType<typeof listenerPipe>, overrides: Partial<JobDependencies['settings']> = {}): JobDependencies {
    return {
      frames: pipe.iterator,
      builds,
      waiter: new PollingBuildWaiter(builds, silent, { initialIntervalMs: 5, maxIntervalMs: 20, throttleMaxMs: 20 }),
      keys,
      store,
      runnerFiles: async () => ({ runnerFile: Buffer.from(runnerFileJson('runner-a')), runnerName: 'runner-a' }),
      logger: silent,
      settings: {
        projectName: 'cbactions',
        poolName: 'default',
        build: BuildSettingsSchema.parse({ computeType: 'BUILD_GENERAL1_LARGE', privileged: true }),
        payloadReferences: { store: `file://${join(dir, 'payloads')}`, key: 'file:///key' },
        cancelGraceMs: 100,
        firstMessageTimeoutMs: 1000,
        ...overrides,
      },
    };
  }

  /** Plays the entrypoint: when the build "runs", take and open the payload, then finish. */
  function entrypointFinishesWith(exitCode: string, check?: (message: Buffer) => void) {
    builds.onStart = (build) => {
      void (async () => {
        builds.update(build.id, { currentPhase: 'BUILD' });
        const sealed = await store.take({ buildId: build.id }, { waitMs: 30_000 });
        const payload = await openPayload(keys, sealed, { buildId: build.id });
        check?.(payload.jobMessage);
        builds.finish(build.id, { exported: { CBACTIONS_EXIT_CODE: exitCode } });
      })();
    };
  }

  it('returns the exit code the build exported, with the job delivered byte for byte', async () => {
    const job = jobMessage({ padding: 'ü😀' });
    let delivered: Buffer | undefined;
    entrypointFinishesWith('102', (message) => (delivered = message));
    const outcome = await runJob(deps(listenerPipe(job)));
    expect(outcome).toMatchObject({ exitCode: 102 });
    expect(delivered?.equals(Buffer.from(job, 'utf16le'))).toBe(true);
    const request = builds.calls.find((call) => call.op === 'start')?.arg as { environmentVariables: Record<string, string>; computeType: string; privileged: boolean };
    expect(request.computeType).toBe('BUILD_GENERAL1_LARGE');
    expect(request.privileged).toBe(true);
    expect(Object.keys(request.environmentVariables).sort()).toEqual(['CBACTIONS_COMPUTE_TYPE', 'CBACTIONS_ENVIRONMENT_TYPE', 'CBACTIONS_JOB_ID', 'CBACTIONS_PAYLOAD_KEY', 'CBACTIONS_PAYLOAD_STORE', 'CBACTIONS_POOL']);
    expect(readdirSync(join(dir, 'payloads')).filter((name) => name.endsWith('.sealed'))).toEqual([]);
  });

  it("passes CodeBuild's waits and the price to the build through the lease, and logs the job's timeline once", async () => {
    const T = 1_800_000_000_000;
    const lines: string[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
    let opened: { timeline?: unknown } | undefined;
    let leaseFacts: JobLease['facts'];
    const at = (ms: number) => new Date(T + ms);
    builds.onStart = (build) => {
      void (async () => {
        // CodeBuild: accepted at T (inside the StartBuild round trip), 1 s submitted, 2 s queued, 3 s provisioning.
        builds.update(build.id, {
          startTime: at(0),
          currentPhase: 'BUILD',
          phases: [
            { type: 'SUBMITTED', status: 'SUCCEEDED', startTime: at(0), endTime: at(1000), contexts: [] },
            { type: 'QUEUED', status: 'SUCCEEDED', startTime: at(1000), endTime: at(3000), contexts: [] },
            { type: 'PROVISIONING', status: 'SUCCEEDED', startTime: at(3000), endTime: at(6000), contexts: [] },
            { type: 'BUILD', status: 'IN_PROGRESS', startTime: at(6000), contexts: [] },
          ],
        });
        const binding = { buildId: build.id };
        opened = await openPayload(keys, await store.take(binding, { waitMs: 30_000 }), binding);
        // The mux saw PROVISIONING end: the waits reach the build with the lease.
        while (!leaseFacts?.waits) {
          leaseFacts = (await store.readLease(binding))?.facts;
          await new Promise((resolve) => setTimeout(resolve, 5));
        }
        const exportedTimeline = JSON.stringify({ entrypointStartedAt: T + 7000, payloadOpenedAt: T + 7500, workerStartedAt: T + 8000, workerExitedAt: T + 60_000 });
        builds.finish(build.id, { endTime: at(90_000), exported: { CBACTIONS_EXIT_CODE: '100', CBACTIONS_TIMELINE: exportedTimeline } });
      })();
    };
    const base = deps(listenerPipe(jobMessage()), { pricing: PricingSchema.parse({}) });
    const outcome = await runJob({ ...base, logger, now: () => T });
    expect(outcome.exitCode).toBe(100);
    expect(opened?.timeline).toEqual({ assignedAt: T, dispatchedAt: T, start: 'cold' });
    expect(leaseFacts).toEqual({
      price: { computeType: 'BUILD_GENERAL1_LARGE', rule: 'per-minute', region: 'us-east-1', perMinute: 0.02, currency: 'USD', asOf: '2026-05' },
      waits: { submittedMs: 1000, queuedMs: 2000, provisioningMs: 3000 },
    });
    expect(outcome.timeline).toMatchObject({
      pool: 'default',
      start: 'cold',
      times: { assignedAt: T, dispatchedAt: T, submittedAt: T, queuedAt: T + 1000, provisioningAt: T + 3000, buildStartedAt: T + 6000, workerStartedAt: T + 8000, buildEndedAt: T + 90_000 },
      durations: { dispatchMs: 0, waitedForCodeBuildMs: 6000, queuedMs: 2000, provisioningMs: 3000, startLatencyMs: 8000, jobMs: 52_000 },
      clock: { offsetMs: 0, uncertaintyMs: 0 },
      cost: { billedSeconds: 120, amount: 0.04, perMinute: 0.02 },
    });
    expect(outcome.timeline?.problems).toBeUndefined();
    const events = lines.filter((line) => line.includes('"event":"job.timeline"'));
    expect(events).toHaveLength(1);
    expect(JSON.parse(events[0] ?? '{}')).toMatchObject({ jobId: outcome.jobId, buildId: outcome.buildId, durations: { startLatencyMs: 8000 } });
  });

  it('retries a throttled StartBuild with the same idempotency token', async () => {
    builds.failures.push({ op: 'start', error: awsError('ThrottlingException', 'Rate exceeded') }, { op: 'start', error: awsError('InternalFailure', 'oops', 500) });
    entrypointFinishesWith('100');
    const outcome = await runJob({ ...deps(listenerPipe(jobMessage())) });
    expect(outcome.exitCode).toBe(100);
    const tokens = builds.calls.filter((call) => call.op === 'start').map((call) => (call.arg as { idempotencyToken: string }).idempotencyToken);
    expect(tokens).toHaveLength(3);
    expect(new Set(tokens).size).toBe(1);
  });

  it('fails fast with the quota reason on AccountLimitExceededException', async () => {
    builds.failures.push({ op: 'start', error: awsError('AccountLimitExceededException', 'Cannot have more than 1 active builds for the account') });
    const outcome = await runJob(deps(listenerPipe(jobMessage())));
    expect(outcome.exitCode).toBe(1);
    expect(outcome.failure?.code).toBe('CODEBUILD_QUOTA');
    expect(outcome.failure?.message).toContain('Cannot have more than 1 active builds');
    expect(builds.count('start')).toBe(1);
  });

  it('reports the phase and message of a build that failed before the job ran', async () => {
    builds.onStart = (build) =>
      setTimeout(() => builds.finish(build.id, { status: 'FAILED', phases: [{ type: 'INSTALL', status: 'FAILED', contexts: [{ statusCode: 'COMMAND_EXECUTION_ERROR', message: 'Error while executing command: apt-get install x. Reason: exit status 100' }] }] }), 10);
    const outcome = await runJob(deps(listenerPipe(jobMessage())));
    expect(outcome.exitCode).toBe(1);
    expect(outcome.failure?.code).toBe('BUILD_PHASE_FAILED');
    expect(outcome.failure?.message).toContain('INSTALL');
    expect(outcome.failure?.message).toContain('exit status 100');
    expect(readdirSync(join(dir, 'payloads')).filter((name) => name.endsWith('.sealed'))).toEqual([]);
  });

  it('relays a cancel through the marker and returns the canceled result without StopBuild', async () => {
    const pipe = listenerPipe(jobMessage());
    builds.onStart = (build) => {
      builds.update(build.id, { currentPhase: 'BUILD' });
      const timer = setInterval(async () => {
        if (await store.isCancelRequested({ buildId: build.id })) {
          clearInterval(timer);
          builds.finish(build.id, { exported: { CBACTIONS_EXIT_CODE: '103' } });
        }
      }, 5);
      setTimeout(() => pipe.send(MessageType.CancelRequest), 30);
    };
    const outcome = await runJob(deps(pipe, { cancelGraceMs: 30_000 }));
    expect(outcome.exitCode).toBe(103);
    expect(builds.count('stop')).toBe(0);
  });

  it('stops a build that ignores the cancel once the grace period ends', async () => {
    const pipe = listenerPipe(jobMessage());
    builds.onStart = (build) => {
      builds.update(build.id, { currentPhase: 'BUILD' });
      setTimeout(() => pipe.send(MessageType.CancelRequest), 20);
    };
    const outcome = await runJob(deps(pipe, { cancelGraceMs: 100 }));
    expect(builds.count('stop')).toBe(1);
    expect(outcome.exitCode).toBe(1);
    expect(outcome.failure?.code).toBe('BUILD_STOPPED');
  });

  it('stops a build at once when the job is cancelled before the build reached it', async () => {
    const pipe = listenerPipe(jobMessage());
    builds.onStart = () => setTimeout(() => pipe.send(MessageType.CancelRequest), 20);
    const outcome = await runJob(deps(pipe, { cancelGraceMs: 60_000 }));
    expect(builds.count('stop')).toBe(1);
    expect(outcome.failure?.code).toBe('BUILD_STOPPED');
  });

  it('treats the listener closing the pipe like a shutdown', async () => {
    const pipe = listenerPipe(jobMessage());
    builds.onStart = () => setTimeout(() => pipe.close(), 20);
    const outcome = await runJob(deps(pipe, { cancelGraceMs: 60_000 }));
    expect(builds.count('stop')).toBe(1);
    expect(outcome.exitCode).toBe(1);
  });

  it('reports a crashed Runner.Worker from an invalid exported exit code', async () => {
    entrypointFinishesWith('137');
    const outcome = await runJob(deps(listenerPipe(jobMessage())));
    expect(outcome.exitCode).toBe(1);
    expect(outcome.failure?.code).toBe('RUNNER_WORKER_CRASH');
    expect(outcome.failure?.message).toContain('137');
  });

  it('rejects a first message that is not a job', async () => {
    const pipe = listenerPipe(jobMessage());
    await pipe.iterator.next();
    pipe.send(MessageType.CancelRequest);
    await expect(runJob(deps(pipe))).rejects.toMatchObject({ code: 'PIPE_UNEXPECTED_MESSAGE' });
    expect(builds.count('start')).toBe(0);
  });

  describe('the admission policy decides before StartBuild', () => {
    const role = { arn: 'arn:aws:iam::123456789012:role/acme-app', roleId: 'AROAAPPROLE000000001' };
    const policy = PolicySchema.parse({
      roles: { 'acme-app': role },
      rules: [
        { name: 'legacy', match: { repository: 'acme/legacy' }, effect: 'refuse', reason: 'archived' },
        { name: 'app', match: { repository: 'acme/app' }, role: 'acme-app', build: { computeType: 'BUILD_GENERAL1_2XLARGE' } },
      ],
    });

    it('a refused job starts no build and ends with the one reason line, told to onAdmission', async () => {
      const decisions: string[] = [];
      const outcome = await runJob({
        ...deps(listenerPipe(jobMessage({ jobId: 'job-legacy', github: githubContext('acme/legacy') })), { policy }),
        onAdmission: (decision, job) => decisions.push(`${job.jobId} ${job.pool} ${decision.rule} ${decision.effect}`),
      });
      expect(outcome).toMatchObject({ exitCode: 1, jobId: 'job-legacy', failure: { code: 'POLICY_REFUSED', message: 'refused by policy rule "legacy": archived' } });
      expect(reportOutcome(outcome).lines).toEqual(['cbactions: refused by policy rule "legacy": archived (POLICY_REFUSED)']);
      expect(builds.count('start')).toBe(0);
      expect(decisions).toEqual(['job-legacy default legacy refuse']);
    });

    it('a fork pull request on this privileged pool is refused by fork protection, with no build', async () => {
      const outcome = await runJob(deps(listenerPipe(jobMessage({ github: pullRequestContext('acme/other', 'mallory/other') })), { policy }));
      expect(outcome.failure?.message).toBe('the policy default matched, but pull requests from forks may not use privileged (Docker) builds (pool "default") (policy.forkProtection)');
      expect(builds.count('start')).toBe(0);
    });

    it("runs the rule's job as the rule's role, with its overrides, and seals it for that role's build identity", async () => {
      let userId: string | undefined;
      builds.onStart = (build) => {
        void (async () => {
          builds.update(build.id, { currentPhase: 'BUILD' });
          const binding = { buildId: build.id, userId: `${role.roleId}:AWSCodeBuild-${build.id.split(':')[1]}` };
          const sealed = await store.take(binding, { waitMs: 30_000 });
          await openPayload(keys, sealed, binding);
          userId = binding.userId;
          builds.finish(build.id, { exported: { CBACTIONS_EXIT_CODE: '100' } });
        })();
      };
      const outcome = await runJob(deps(listenerPipe(jobMessage({ github: githubContext('acme/app') })), { policy, overridable: ['computeType'], defaultRoleId: 'AROAPROJECT000000001' }));
      expect(outcome).toMatchObject({ exitCode: 100, admission: { effect: 'run', rule: 'app', role: 'acme-app' } });
      const request = builds.calls.find((call) => call.op === 'start')?.arg as StartBuildRequest;
      expect(request.serviceRoleArn).toBe(role.arn);
      expect(request.computeType).toBe('BUILD_GENERAL1_2XLARGE');
      expect(request.environmentVariables.CBACTIONS_PAYLOAD_ROLE_ID).toBe(role.roleId);
      expect(userId).toMatch(/^AROAAPPROLE000000001:AWSCodeBuild-/);
    });
  });

  describe('a follow-up before the build exists', () => {
    const followUps: [string, (pipe: ReturnType<typeof listenerPipe>, shutdown: AbortController) => void][] = [
      ['CancelRequest', (pipe) => pipe.send(MessageType.CancelRequest)],
      ['RunnerShutdown', (pipe) => pipe.send(MessageType.RunnerShutdown)],
      ['OperatingSystemShutdown', (pipe) => pipe.send(MessageType.OperatingSystemShutdown)],
      ['the listener closing the pipe', (pipe) => pipe.close()],
      ['SIGTERM to the worker', (_pipe, shutdown) => shutdown.abort()],
    ];
    it.each(followUps)('%s before StartBuild: no build is started and the job ends Canceled (103)', async (_name, send) => {
      const pipe = listenerPipe(jobMessage());
      const shutdown = new AbortController();
      const filesHold = new Hold();
      const running = runJob({
        ...deps(pipe),
        shutdownSignal: shutdown.signal,
        runnerFiles: async () => {
          await filesHold.pass();
          return { runnerFile: Buffer.from(runnerFileJson('runner-a')), runnerName: 'runner-a' };
        },
      });
      await filesHold.entered;
      send(pipe, shutdown);
      await settle();
      filesHold.release();
      const outcome = await running;
      expect(builds.count('start')).toBe(0);
      expect(outcome).toMatchObject({ exitCode: 103, failure: { code: 'JOB_CANCELLED_BEFORE_BUILD' } });
      expect(outcome.buildId).toBeUndefined();
    });

    it('a SIGTERM that came before the job was read still keeps the build from starting', async () => {
      const shutdown = new AbortController();
      shutdown.abort();
      entrypointFinishesWith('100');
      const outcome = await runJob({ ...deps(listenerPipe(jobMessage())), shutdownSignal: shutdown.signal });
      expect(builds.count('start')).toBe(0);
      expect(outcome.exitCode).toBe(103);
    });

    it('a cancel while StartBuild is in flight: the build that comes back is stopped at once and gets no job', async () => {
      const pipe = listenerPipe(jobMessage());
      const held = new HeldStartBuilds(builds);
      const answer = held.hold();
      const running = runJob({ ...deps(pipe), builds: held, waiter: new PollingBuildWaiter(held, silent, { initialIntervalMs: 5, maxIntervalMs: 20 }) });
      await answer.entered;
      pipe.send(MessageType.CancelRequest);
      await settle();
      answer.release();
      const outcome = await running;
      const [build] = [...builds.builds.values()];
      expect(builds.count('start')).toBe(1);
      expect(builds.count('stop')).toBe(1);
      expect(build?.status).toBe('STOPPED');
      expect(outcome).toMatchObject({ exitCode: 103, buildId: build?.id, failure: { code: 'JOB_CANCELLED_BEFORE_BUILD' } });
      // No job went to the stopped build.
      expect(existsSync(join(dir, 'payloads')) ? readdirSync(join(dir, 'payloads')) : []).toEqual([]);
      expect(await store.isCancelRequested({ buildId: String(build?.id) })).toBe(false);
    });

    it('a cancel while a throttled StartBuild waits to retry: no further attempt, no build', async () => {
      const pipe = listenerPipe(jobMessage());
      builds.failures.push({ op: 'start', error: awsError('ThrottlingException', 'Rate exceeded') });
      const held = new HeldStartBuilds(builds);
      const answer = held.hold();
      const running = runJob({ ...deps(pipe), builds: held });
      await answer.entered;
      pipe.send(MessageType.CancelRequest);
      await settle();
      answer.release();
      const outcome = await running;
      expect(builds.count('start')).toBe(1);
      expect(builds.builds.size).toBe(0);
      expect(outcome).toMatchObject({ exitCode: 103, failure: { code: 'JOB_CANCELLED_BEFORE_BUILD' } });
    });
  });

  describe('a cancel is handled once, and no timer outlives the job', () => {
    it('a cancel during sealing writes one marker, arms one grace timer, and nothing is left when the job ends', async () => {
      vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
      const pipe = listenerPipe(jobMessage());
      const watched = new WatchedStore(store);
      watched.putHold = new Hold();
      const waiter = new HeldWaiter(builds);
      builds.onStart = (build) => builds.update(build.id, { currentPhase: 'BUILD' });
      const running = runJob({ ...deps(pipe, { cancelGraceMs: 30_000 }), store: watched, waiter });
      await watched.putHold.entered;
      pipe.send(MessageType.CancelRequest);
      // The marker is written; the build's refresh and the grace timer take only promise callbacks.
      await watched.markerAnswered;
      await settle();
      expect(vi.getTimerCount()).toBe(1);
      watched.putHold.release();
      const buildId = await waiter.waiting;
      // The build reports the job Canceled before the grace period ends.
      waiter.finish(buildId, '103');
      const outcome = await running;
      expect(outcome.exitCode).toBe(103);
      expect(watched.cancelMarkers).toBe(1);
      expect(vi.getTimerCount()).toBe(0);
      await vi.runAllTimersAsync();
      expect(builds.count('stop')).toBe(0);
    });

    it('a cancel still on its way when the build ends arms no timer and sends no StopBuild afterwards', async () => {
      vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
      const pipe = listenerPipe(jobMessage());
      const watched = new WatchedStore(store);
      watched.cancelHold = new Hold();
      const waiter = new HeldWaiter(builds);
      builds.onStart = (build) => builds.update(build.id, { currentPhase: 'BUILD' });
      const running = runJob({ ...deps(pipe, { cancelGraceMs: 30_000 }), store: watched, waiter });
      const buildId = await waiter.waiting;
      pipe.send(MessageType.CancelRequest);
      await watched.cancelHold.entered;
      // The job ends in the build while the marker's answer is still on its way.
      waiter.finish(buildId, '100');
      const outcome = await running;
      expect(outcome.exitCode).toBe(100);
      watched.cancelHold.release();
      await settle();
      expect(vi.getTimerCount()).toBe(0);
      await vi.runAllTimersAsync();
      expect(builds.count('stop')).toBe(0);
      expect(await store.isCancelRequested({ buildId })).toBe(false);
    });
  });
});
