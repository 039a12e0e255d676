import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BuildSettingsSchema } from '../../src/config/schema.js';
import { MessageType, type Frame } from '../../src/protocol/messages.js';
import { openPayload } from '../../src/seal/envelope.js';
import { LocalKeyService } from '../../src/seal/local-key-service.js';
import { LocalPayloadStore } from '../../src/seal/local-payload-store.js';
import { PollingBuildWaiter } from '../../src/worker/build-waiter.js';
import { runJob, type JobDependencies } from '../../src/worker/run-job.js';
import { awsError, InMemoryBuilds } from '../support/in-memory-builds.js';
import { jobMessage, runnerFileJson } from '../support/runner-root.js';

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
        const sealed = await store.take({ buildId: build.id }, { waitMs: 2000 });
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
    const outcome = await runJob(deps(pipe, { cancelGraceMs: 5000 }));
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
});
