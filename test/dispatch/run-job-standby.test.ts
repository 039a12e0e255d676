/**
 * A job handed to a standby build (issue 11), against in-memory CodeBuild and the real
 * standby manager: the claim, the handover, and every way a standby can fail to open the
 * job — each ends with the job run exactly once, by the standby or by one new build.
 */
import { mkdtempSync, readdirSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import type { ConfigInput } from '../../src/config/schema.js';
import { PollingBuildWaiter } from '../../src/dispatch/build-waiter.js';
import type { BuildSnapshot, StartBuildRequest } from '../../src/dispatch/codebuild-api.js';
import { jobSettings } from '../../src/dispatch/job-settings.js';
import { runJob, type JobOutcome } from '../../src/dispatch/run-job.js';
import { StandbyPool } from '../../src/mux/standby-pool.js';
import { MessageType, type Frame } from '../../src/protocol/messages.js';
import { openPayload } from '../../src/seal/envelope.js';
import { LocalKeyService } from '../../src/seal/local-key-service.js';
import { LocalPayloadStore } from '../../src/seal/local-payload-store.js';
import type { PayloadBinding } from '../../src/seal/types.js';
import { captureLogger } from '../mux/capture-logger.js';
import { awsError, InMemoryBuilds } from '../support/in-memory-builds.js';
import { jobMessage, runnerFileJson } from '../support/runner-root.js';

const silent = pino({ level: 'silent' });

/** A listener pipe that sends the job and then nothing (the job is not cancelled). */
function jobFrames(jobId: string): AsyncIterator<Frame> {
  let sent = false;
  return {
    next: () => {
      if (sent) return new Promise(() => {});
      sent = true;
      return Promise.resolve({ done: false, value: { type: MessageType.NewJobRequest, body: Buffer.from(jobMessage({ jobId }), 'utf16le') } });
    },
  };
}

async function until(check: () => boolean | Promise<boolean>, what: string): Promise<void> {
  for (let round = 0; round < 50_000; round++) {
    if (await check()) return;
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  throw new Error(`never happened: ${what}`);
}

/** A payload store whose `put` can be held by the test (the standby ends "during" the put). */
class HeldPutStore extends LocalPayloadStore {
  hold: { entered: () => void; released: Promise<void> } | undefined;
  override async put(binding: PayloadBinding, sealed: Buffer, signal?: AbortSignal): Promise<void> {
    const hold = this.hold;
    this.hold = undefined;
    if (hold) {
      hold.entered();
      await hold.released;
    }
    return super.put(binding, sealed, signal);
  }
}

describe('runJob with standby builds', () => {
  let dir: string;
  let builds: InMemoryBuilds;
  let keys: LocalKeyService;
  let store: HeldPutStore;
  let pool: StandbyPool | undefined;
  /** Job ids a build ran, per build: the "entrypoints" record each job they open. */
  let ran: { jobId: string; buildId: string; warm: boolean }[];

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'run-job-standby-'));
    builds = new InMemoryBuilds();
    keys = new LocalKeyService(randomBytes(32));
    store = new HeldPutStore({ dir: join(dir, 'payloads'), pollMs: 5 });
    ran = [];
  });
  afterEach(async () => {
    await pool?.close();
    pool = undefined;
  });

  const starts = () => builds.calls.filter((call) => call.op === 'start').map((call) => call.arg as StartBuildRequest);
  const coldStarts = () => starts().filter((request) => request.environmentVariables.CBACTIONS_JOB_ID !== undefined);
  const stops = () => builds.calls.filter((call) => call.op === 'stop').map((call) => call.arg as string);
  const sealedFiles = () => readdirSync(join(dir, 'payloads')).filter((name) => name.endsWith('.sealed'));

  /** Plays a build's entrypoint: open the payload, record the job, finish with the job's exit code. */
  async function openAndRun(buildId: string, warm: boolean): Promise<void> {
    const sealed = await store.take({ buildId }, { waitMs: 30_000 });
    const payload = await openPayload(keys, sealed, { buildId });
    ran.push({ jobId: payload.ids.jobId ?? '', buildId, warm });
    builds.finish(buildId, { exported: { CBACTIONS_EXIT_CODE: '100' } });
  }

  function rig(pools: ConfigInput['pools'], options: { standbyHandoverMs?: number } = {}) {
    const logs = captureLogger();
    const configPath = join(dir, 'cbactions.json');
    const config = parseConfig({
      github: { scope: { repository: 'o/r' }, auth: { token: { env: 'T' } } },
      codebuild: { projectName: 'cbactions' },
      payloads: { key: { local: { file: join(dir, 'key') } }, store: { local: { dir: join(dir, 'payloads') } } },
      pools,
    });
    const waiter = new PollingBuildWaiter(builds, silent, { initialIntervalMs: 2, maxIntervalMs: 5 });
    // Cold builds run their job at once; standbys wait until the test plays them.
    builds.onStart = (build, request) => {
      builds.update(build.id, { currentPhase: 'BUILD' });
      if (request.environmentVariables.CBACTIONS_JOB_ID !== undefined) void openAndRun(build.id, false);
    };
    pool = new StandbyPool({ config, configPath, builds, waiter, logger: logs.logger, env: {} });
    const standbys = pool;
    const job = (jobId: string, poolName = config.pools[0]?.name ?? 'default'): Promise<JobOutcome> => {
      const poolConfig = config.pools.find((candidate) => candidate.name === poolName);
      if (!poolConfig) throw new Error(`no pool ${poolName}`);
      return runJob({
        frames: jobFrames(jobId),
        builds,
        waiter,
        keys,
        store,
        runnerFiles: async () => ({ runnerFile: Buffer.from(runnerFileJson('runner-a')), runnerName: `runner-${jobId}` }),
        logger: logs.logger,
        settings: { ...jobSettings(config, configPath, poolConfig, {}), firstMessageTimeoutMs: 5_000, ...(options.standbyHandoverMs !== undefined ? { standbyHandoverMs: options.standbyHandoverMs } : {}) },
        standbys,
      });
    };
    return { pool, logs, job, waiter };
  }

  const onePool = (standby = 1): ConfigInput['pools'] => [{ name: 'default', labels: ['cb'], warm: { standby, maxWaitMinutes: 10 } }];

  async function readyStandbys(standbyPool: StandbyPool, count: number): Promise<string[]> {
    await until(() => standbyPool.list().filter((entry) => entry.state === 'live').length === count, `${count} live standbys`);
    return standbyPool.list().filter((entry) => entry.state === 'live').map((entry) => entry.buildId);
  }

  /** Resolves once the payload for `buildId` is in the store (handed over, not taken). */
  const payloadPut = (buildId: string) => until(() => store.isPending({ buildId }), `the payload for ${buildId}`);

  it('hands the job to a waiting standby: no new build for the job, the standby runs it', async () => {
    const { pool, job, logs } = rig(onePool());
    pool.start();
    const [standby] = await readyStandbys(pool, 1);
    const outcome = job('job-warm');
    await payloadPut(standby ?? '');
    await openAndRun(standby ?? '', true);
    expect(await outcome).toMatchObject({ exitCode: 100, buildId: standby, jobId: 'job-warm' });
    expect(coldStarts()).toHaveLength(0);
    expect(ran).toEqual([{ jobId: 'job-warm', buildId: standby, warm: true }]);
    expect(logs.events()).toContain('dispatch.standby-claimed');
    // The used standby was replaced.
    await until(() => starts().length === 2, 'the replacement standby');
  });

  it('two jobs racing for the last standby: one gets it, the other a new build, each runs once', async () => {
    const { pool, job } = rig(onePool());
    pool.start();
    const [standby] = await readyStandbys(pool, 1);
    const first = job('job-a');
    const second = job('job-b');
    await payloadPut(standby ?? '');
    await openAndRun(standby ?? '', true);
    const outcomes = await Promise.all([first, second]);
    expect(outcomes.map((outcome) => outcome.exitCode)).toEqual([100, 100]);
    expect(ran.map((entry) => entry.jobId).sort()).toEqual(['job-a', 'job-b']);
    expect(ran.filter((entry) => entry.warm)).toHaveLength(1);
    expect(coldStarts()).toHaveLength(1);
  });

  const endings: { name: string; changes: Partial<BuildSnapshot> }[] = [
    { name: 'expires (its entrypoint says STANDBY_EXPIRED)', changes: { exported: { CBACTIONS_FAILURE: 'STANDBY_EXPIRED: no job came within the standby wait of 600 s; the standby took none' } } },
    { name: 'fails', changes: { status: 'FAILED', exported: {} } },
    { name: 'is stopped (nothing exported)', changes: { status: 'STOPPED', exported: {} } },
  ];
  for (const ending of endings) {
    it(`a standby that ${ending.name} after the payload is put, before it is taken: the payload goes, one new build runs the job`, async () => {
      const { pool, job, logs } = rig(onePool());
      pool.start();
      const [standby] = await readyStandbys(pool, 1);
      const outcome = job('job-1');
      await payloadPut(standby ?? '');
      builds.finish(standby ?? '', ending.changes);
      const result = await outcome;
      expect(result.exitCode).toBe(100);
      expect(result.buildId).not.toBe(standby);
      expect(coldStarts()).toHaveLength(1);
      expect(ran).toEqual([{ jobId: 'job-1', buildId: result.buildId, warm: false }]);
      expect(await store.isPending({ buildId: standby ?? '' })).toBe(false);
      expect(sealedFiles()).toEqual([]);
      const failed = logs.records.find((record) => record.event === 'dispatch.standby-handover-failed');
      expect(failed).toMatchObject({ buildId: standby, jobId: 'job-1' });
      expect(result.failure).toBeUndefined();
    });
  }

  it('a standby that ends while its payload is being put (before the put): one new build runs the job, nothing is left', async () => {
    const { pool, job } = rig(onePool());
    pool.start();
    const [standby] = await readyStandbys(pool, 1);
    let entered!: () => void;
    const putEntered = new Promise<void>((resolve) => (entered = resolve));
    let release!: () => void;
    store.hold = { entered, released: new Promise<void>((resolve) => (release = resolve)) };
    const outcome = job('job-1');
    await putEntered;
    builds.finish(standby ?? '', { status: 'STOPPED', exported: {} });
    release();
    const result = await outcome;
    expect(result).toMatchObject({ exitCode: 100, jobId: 'job-1' });
    expect(coldStarts()).toHaveLength(1);
    expect(ran).toEqual([{ jobId: 'job-1', buildId: result.buildId, warm: false }]);
    expect(sealedFiles()).toEqual([]);
  });

  it('a standby that took the job and then failed: the job is not run again, it fails with the build', async () => {
    const { pool, job } = rig(onePool());
    pool.start();
    const [standby] = await readyStandbys(pool, 1);
    const outcome = job('job-1');
    await payloadPut(standby ?? '');
    await store.take({ buildId: standby ?? '' });
    builds.finish(standby ?? '', { status: 'FAILED', phases: [{ type: 'BUILD', status: 'FAILED', contexts: [{ statusCode: 'COMMAND_EXECUTION_ERROR', message: 'Error while executing command: cbactions entrypoint' }] }] });
    const result = await outcome;
    expect(result.exitCode).toBe(1);
    expect(result.buildId).toBe(standby);
    expect(coldStarts()).toHaveLength(0);
  });

  it('a standby that does not take its job in time is stopped and the job goes to one new build', async () => {
    const { pool, job, logs } = rig(onePool(), { standbyHandoverMs: 20 });
    pool.start();
    const [standby] = await readyStandbys(pool, 1);
    const result = await job('job-1');
    expect(stops()).toContain(standby);
    expect(result).toMatchObject({ exitCode: 100, jobId: 'job-1' });
    expect(result.buildId).not.toBe(standby);
    expect(coldStarts()).toHaveLength(1);
    expect(ran.map((entry) => entry.jobId)).toEqual(['job-1']);
    expect(logs.records.find((record) => record.event === 'dispatch.standby-handover-failed')?.reason).toContain('in time');
  });

  it('a job whose overrides differ from the standbys gets a new build and leaves them waiting', async () => {
    const { pool, job } = rig([
      { name: 'default', labels: ['cb'], warm: { standby: 1 } },
      { name: 'large', labels: ['l'], build: { computeType: 'BUILD_GENERAL1_LARGE' } },
    ]);
    pool.start();
    await readyStandbys(pool, 1);
    const result = await job('job-large', 'large');
    expect(result.exitCode).toBe(100);
    expect(coldStarts()).toHaveLength(1);
    expect(pool.list().map((entry) => entry.state)).toEqual(['live']);
  });

  it('a job meeting a full quota while standbys wait: a standby is stopped and the job gets its build', async () => {
    const { pool, job, logs } = rig([
      { name: 'default', labels: ['cb'] },
      { name: 'large', labels: ['l'], warm: { standby: 1 }, build: { computeType: 'BUILD_GENERAL1_LARGE' } },
    ]);
    pool.start();
    const [standby] = await readyStandbys(pool, 1);
    builds.failures.push({ op: 'start', error: awsError('AccountLimitExceededException', 'Cannot have more than 1 active builds for the account') });
    const result = await job('job-1', 'default');
    expect(result.exitCode).toBe(100);
    expect(stops()).toEqual([standby]);
    expect(coldStarts()).toHaveLength(2);
    expect(logs.events()).toContain('dispatch.standby-yielded');
  });

  it('without standbys to give up, a full quota still fails the job fast with its reason', async () => {
    const { job } = rig([{ name: 'default', labels: ['cb'] }]);
    builds.failures.push({ op: 'start', error: awsError('AccountLimitExceededException', 'Cannot have more than 1 active builds for the account') });
    const result = await job('job-1');
    expect(result.failure?.code).toBe('CODEBUILD_QUOTA');
  });
});
