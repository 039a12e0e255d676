import { randomBytes } from 'node:crypto';
import { lstatSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigSchema } from '../../src/config/schema.js';
import { encodeDispatchMessage } from '../../src/dispatch/shim-protocol.js';
import { DispatchServer, type DispatchEvent } from '../../src/mux/dispatch-server.js';
import { MessageType } from '../../src/protocol/messages.js';
import { LocalKeyService } from '../../src/seal/local-key-service.js';
import { LocalPayloadStore } from '../../src/seal/local-payload-store.js';
import type { PayloadBinding } from '../../src/seal/types.js';
import { BuildWatcher } from '../../src/watcher/build-watcher.js';
import { FakeShim } from '../support/fake-shim.js';
import { InMemoryBuilds } from '../support/in-memory-builds.js';
import { leakForms } from '../support/job-path.js';
import { jobMessage, runnerFileJson } from '../support/runner-root.js';
import { captureLogger } from './capture-logger.js';

/** The local store, telling the test when a payload or a cancel marker arrives. */
class ObservedStore extends LocalPayloadStore {
  onPut: ((binding: PayloadBinding) => void) | undefined;
  onCancel: ((binding: PayloadBinding) => void) | undefined;
  cancels = 0;
  override async put(binding: PayloadBinding, sealed: Buffer, signal?: AbortSignal): Promise<void> {
    await super.put(binding, sealed, signal);
    this.onPut?.(binding);
  }
  override async requestCancel(binding: PayloadBinding, signal?: AbortSignal): Promise<void> {
    this.cancels += 1;
    await super.requestCancel(binding, signal);
    this.onCancel?.(binding);
  }
}

function until<T>(check: () => T | undefined, what: string, timeoutMs = 20_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const poll = () => {
      const value = check();
      if (value !== undefined) return resolve(value);
      if (Date.now() - started > timeoutMs) return reject(new Error(`timed out waiting for ${what}`));
      setTimeout(poll, 5);
    };
    poll();
  });
}

describe('in-mux dispatch server (a TypeScript fake shim against the job path)', () => {
  let dir: string;
  let builds: InMemoryBuilds;
  let store: ObservedStore;
  let watcher: BuildWatcher;
  let server: DispatchServer;
  let logs: ReturnType<typeof captureLogger>;
  let events: DispatchEvent[];
  let throwOnEvent = false;
  const slotEnv = (slot = 'default-0', extra: Record<string, string> = {}) => ({ CBACTIONS_SLOT: slot, CBACTIONS_CANCEL_GRACE_SECONDS: '40', ...extra });

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'dispatch-'));
    builds = new InMemoryBuilds();
    store = new ObservedStore({ dir: join(dir, 'payloads'), pollMs: 10 });
    const keys = new LocalKeyService(randomBytes(32));
    logs = captureLogger();
    events = [];
    throwOnEvent = false;
    watcher = new BuildWatcher(builds, logs.logger, { minIntervalMs: 10, maxCallsPerSecond: 1000 });
    watcher.start();
    const slotDir = join(dir, 'slot');
    const { mkdirSync } = await import('node:fs');
    mkdirSync(slotDir);
    writeFileSync(join(slotDir, '.runner'), runnerFileJson('runner-a'));
    const configPath = join(dir, 'cbactions.yaml');
    const config = ConfigSchema.parse({
      github: { scope: { repository: 'octo/repo' }, auth: { token: { env: 'GITHUB_TOKEN' } } },
      codebuild: { projectName: 'cbactions', region: 'us-east-1' },
      payloads: { key: { local: { file: join(dir, 'key') } }, store: { local: { dir: join(dir, 'payloads') } } },
      pools: [{ name: 'default', labels: ['cbactions'], slots: 2 }],
    });
    server = await DispatchServer.listen({
      socketPath: join(dir, 'dispatch.sock'),
      config,
      configPath,
      builds,
      payloads: async () => ({ keys, store }),
      waiter: watcher,
      slot: (slotId) => (slotId.startsWith('default-') ? { pool: 'default', configDir: slotDir } : undefined),
      logger: logs.logger,
      onEvent: (event) => {
        events.push(event);
        if (throwOnEvent) throw new Error('the mux bookkeeping broke');
      },
      closeTimeoutMs: 30_000,
    });
  });
  afterEach(async () => {
    await server.close();
    await watcher.close();
  });

  /** The build finishes with the job's exit code once its payload is stored (the entrypoint ran it). */
  function buildsRunJobs(exitCode = '100'): void {
    store.onPut = (binding) => {
      builds.update(binding.buildId, { currentPhase: 'BUILD' });
      builds.finish(binding.buildId, { exported: { CBACTIONS_EXIT_CODE: exitCode } });
      watcher.poke(binding.buildId);
    };
  }

  /** The build reaches BUILD and runs until cancelled; a cancel marker ends it Canceled. */
  function buildsRunUntilCancelled(): void {
    store.onPut = (binding) => builds.update(binding.buildId, { currentPhase: 'BUILD' });
    store.onCancel = (binding) => {
      builds.finish(binding.buildId, { exported: { CBACTIONS_EXIT_CODE: '103' } });
      watcher.poke(binding.buildId);
    };
  }

  it('runs a job: ACCEPT, the build, exit 100 with no line; the mux is told the slot’s build; no secret in any log', async () => {
    buildsRunJobs('100');
    const secret = `cbx-marker-${randomBytes(8).toString('hex')}`;
    const shim = await FakeShim.connect(server.socketPath, slotEnv());
    expect(await shim.acceptance).toBe(true);
    shim.job(jobMessage({ jobId: 'job-ok', secret }));
    expect(await shim.result).toEqual({ accepted: true, lines: [], exitCode: 100 });
    const tracked = events.find((event) => event.kind === 'tracked');
    expect(tracked).toMatchObject({ kind: 'tracked', slot: 'default-0', jobId: 'job-ok' });
    expect(events.at(-1)).toMatchObject({ kind: 'done', slot: 'default-0', jobId: 'job-ok', exitCode: 100, buildId: tracked?.kind === 'tracked' ? tracked.buildId : 'x' });
    expect(logs.records.find((record) => record.event === 'worker.finished')).toMatchObject({ slot: 'default-0', jobId: 'job-ok', exitCode: 100 });
    const text = JSON.stringify(logs.records);
    for (const form of leakForms(secret)) expect(text).not.toContain(form.toString('utf8'));
    const request = JSON.stringify(builds.calls.filter((call) => call.op === 'start'));
    expect(request).not.toContain(secret);
    // The shim closing after EXIT is the normal end: no build is stopped as an orphan.
    await until(() => (server.connections === 0 ? true : undefined), 'the connection to close on the mux side');
    expect(logs.events()).not.toContain('watcher.orphan');
    expect(builds.count('stop')).toBe(0);
  });

  it('the job’s failure is the worker’s: exit 1 and the one reason line of the catalogue', async () => {
    store.onPut = (binding) => {
      builds.finish(binding.buildId, { status: 'FAILED', phases: [{ type: 'INSTALL', status: 'FAILED', contexts: [{ statusCode: 'COMMAND_EXECUTION_ERROR', message: 'yum install -y foo' }] }] });
      watcher.poke(binding.buildId);
    };
    const shim = await FakeShim.connect(server.socketPath, slotEnv());
    shim.job(jobMessage({ jobId: 'job-install' }));
    const result = await shim.result;
    expect(result.exitCode).toBe(1);
    expect(result.lines).toHaveLength(1);
    expect(result.lines[0]).toMatch(/^cbactions: the build FAILED in phase INSTALL .*yum install -y foo.*\(BUILD_PHASE_FAILED\)$/);
  });

  it('relays a cancel into the build and ends 103', async () => {
    buildsRunUntilCancelled();
    const shim = await FakeShim.connect(server.socketPath, slotEnv());
    shim.job(jobMessage({ jobId: 'job-cancel' }));
    await until(() => (builds.builds.size === 1 && [...builds.builds.values()][0]?.currentPhase === 'BUILD' ? true : undefined), 'the build to run the job');
    shim.frame(MessageType.CancelRequest);
    expect(await shim.result).toMatchObject({ exitCode: 103, lines: [] });
    expect(store.cancels).toBe(1);
  });

  it('EOF from the listener pipe is the listener gone: the job is cancelled in its build, as by a worker', async () => {
    buildsRunUntilCancelled();
    const shim = await FakeShim.connect(server.socketPath, slotEnv());
    shim.job(jobMessage({ jobId: 'job-eof' }));
    await until(() => ([...builds.builds.values()][0]?.currentPhase === 'BUILD' ? true : undefined), 'the build to run the job');
    shim.eof();
    expect((await shim.result).exitCode).toBe(103);
    expect(store.cancels).toBe(1);
    expect(logs.records.find((record) => record.event === 'worker.follow-up')).toMatchObject({ kind: 'listener-gone' });
  });

  it('a shim that dies mid-job (its connection closes): the build is stopped at once, not after the cancel grace', async () => {
    store.onPut = (binding) => builds.update(binding.buildId, { currentPhase: 'BUILD' });
    const shim = await FakeShim.connect(server.socketPath, slotEnv());
    shim.job(jobMessage({ jobId: 'job-orphan' }));
    await until(() => ([...builds.builds.values()][0]?.currentPhase === 'BUILD' ? true : undefined), 'the build to run the job');
    shim.kill();
    await until(() => events.find((event) => event.kind === 'done'), 'the job to end');
    expect(builds.count('stop')).toBeGreaterThanOrEqual(1);
    expect([...builds.builds.values()][0]?.status).toBe('STOPPED');
    expect(events.at(-1)).toMatchObject({ kind: 'done', jobId: 'job-orphan', orphan: { stopped: true } });
    expect(logs.events()).toContain('watcher.orphan-stopped');
  });

  it('malformed runner frames end the job with exit 3 and the reason', async () => {
    const shim = await FakeShim.connect(server.socketPath, slotEnv());
    const bad = Buffer.alloc(8);
    bad.writeInt32LE(99, 0);
    shim.data(bad);
    const result = await shim.result;
    expect(result.exitCode).toBe(3);
    expect(result.lines).toEqual([expect.stringMatching(/^cbactions: the job could not be started: pipe message has unknown type 99.*\(PIPE_UNKNOWN_MESSAGE_TYPE\)$/)]);
    expect(builds.count('start')).toBe(0);
  });

  it('a pipe that ends in the middle of a frame is exit 3 too', async () => {
    const shim = await FakeShim.connect(server.socketPath, slotEnv());
    shim.data(Buffer.from([1, 0, 0, 0, 100, 0, 0, 0, 0x7b]));
    shim.eof();
    const result = await shim.result;
    expect(result.exitCode).toBe(3);
    expect(result.lines[0]).toMatch(/PIPE_TRUNCATED_FRAME/);
  });

  it('a job that is not JSON is exit 1 with its reason; no build', async () => {
    const shim = await FakeShim.connect(server.socketPath, slotEnv());
    shim.job('this is not json');
    const result = await shim.result;
    expect(result.exitCode).toBe(1);
    expect(result.lines).toEqual([expect.stringMatching(/not valid JSON \(JOB_MESSAGE_INVALID\)$/)]);
    expect(builds.count('start')).toBe(0);
  });

  it('a bad job setting in the listener environment is the worker’s config error: exit 2', async () => {
    const shim = await FakeShim.connect(server.socketPath, slotEnv('default-0', { CBACTIONS_CANCEL_GRACE_SECONDS: '99' }));
    shim.job(jobMessage({ jobId: 'job-config' }));
    const result = await shim.result;
    expect(result.exitCode).toBe(2);
    expect(result.lines[0]).toMatch(/CBACTIONS_CANCEL_GRACE_SECONDS must be whole seconds.*\(CONFIG_INVALID\)$/);
  });

  it('two jobs at once, one bad: the other runs to its end unaffected, and the server takes the next', async () => {
    buildsRunJobs('100');
    const good = await FakeShim.connect(server.socketPath, slotEnv('default-0'));
    const bad = await FakeShim.connect(server.socketPath, slotEnv('default-1'));
    await Promise.all([good.acceptance, bad.acceptance]);
    // The bad one: half a job, then a message type no shim sends.
    bad.data(Buffer.from([1, 0, 0, 0, 10, 0, 0, 0]));
    bad.raw(encodeDispatchMessage(2, Buffer.alloc(0)).fill(0x77, 0, 4));
    good.job(jobMessage({ jobId: 'job-good' }));
    const [goodResult, badResult] = await Promise.all([good.result, bad.result]);
    expect(goodResult).toEqual({ accepted: true, lines: [], exitCode: 100 });
    expect(badResult.exitCode).toBeNull();
    expect(logs.events()).toContain('dispatch.bad-message');
    const next = await FakeShim.connect(server.socketPath, slotEnv('default-1'));
    next.job(jobMessage({ jobId: 'job-next' }));
    expect((await next.result).exitCode).toBe(100);
  });

  it('SIGNAL is the worker’s SIGTERM: before a build, the job ends Canceled with its line and no build', async () => {
    const shim = await FakeShim.connect(server.socketPath, slotEnv());
    await shim.acceptance;
    shim.signal(15);
    shim.job(jobMessage({ jobId: 'job-signalled' }));
    const result = await shim.result;
    expect(result.exitCode).toBe(103);
    expect(result.lines).toEqual([expect.stringMatching(/^cbactions: the worker was told to stop before its build was started; no build was started \(JOB_CANCELLED_BEFORE_BUILD\)$/)]);
    expect(builds.count('start')).toBe(0);
  });

  it('SIGNAL while the build runs relays a cancel into it', async () => {
    buildsRunUntilCancelled();
    const shim = await FakeShim.connect(server.socketPath, slotEnv());
    shim.job(jobMessage({ jobId: 'job-sigterm' }));
    await until(() => ([...builds.builds.values()][0]?.currentPhase === 'BUILD' ? true : undefined), 'the build to run the job');
    shim.signal(15);
    expect((await shim.result).exitCode).toBe(103);
    expect(store.cancels).toBe(1);
  });

  it('closing (after the slots stopped) refuses new connections, tells running jobs to stop as SIGTERM would, and waits for them', async () => {
    buildsRunUntilCancelled();
    const shim = await FakeShim.connect(server.socketPath, slotEnv());
    shim.job(jobMessage({ jobId: 'job-at-close' }));
    await until(() => ([...builds.builds.values()][0]?.currentPhase === 'BUILD' ? true : undefined), 'the build to run the job');
    const closing = server.close();
    await expect(FakeShim.connect(server.socketPath, slotEnv('default-1'))).rejects.toThrow();
    expect((await shim.result).exitCode).toBe(103);
    expect(store.cancels).toBe(1);
    await closing;
  });

  it('an error in the mux’s own bookkeeping of a job neither ends that job nor crashes the mux', async () => {
    buildsRunJobs('100');
    throwOnEvent = true;
    const shim = await FakeShim.connect(server.socketPath, slotEnv());
    shim.job(jobMessage({ jobId: 'job-bookkeeping' }));
    expect(await shim.result).toEqual({ accepted: true, lines: [], exitCode: 100 });
    expect(logs.events().filter((event) => event === 'dispatch.event-failed')).toHaveLength(2);
  });

  it('refuses a shim naming no running slot with a line and exit 1, without accepting', async () => {
    const shim = await FakeShim.connect(server.socketPath, { CBACTIONS_SLOT: 'other-3' });
    expect(await shim.result).toEqual({ accepted: false, lines: [expect.stringMatching(/no slot "other-3" \(CBACTIONS_SLOT\).*\(DISPATCH_UNKNOWN_SLOT\)$/)], exitCode: 1 });
    const none = await FakeShim.connect(server.socketPath, {});
    expect((await none.result).exitCode).toBe(1);
  });

  it('a connection whose first message is not a HELLO is closed; nothing else is affected', async () => {
    const { connect } = await import('node:net');
    const socket = connect(server.socketPath);
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write(encodeDispatchMessage(2, Buffer.from('x')));
    await new Promise((resolve) => socket.once('close', resolve));
    expect(logs.events()).toContain('dispatch.bad-message');
    buildsRunJobs('100');
    const shim = await FakeShim.connect(server.socketPath, slotEnv());
    shim.job(jobMessage({ jobId: 'job-after' }));
    expect((await shim.result).exitCode).toBe(100);
  });

  it('the socket is 0600, and a stale socket of a previous life is replaced; a file that is not a socket is refused', async () => {
    expect(lstatSync(server.socketPath).mode & 0o777).toBe(0o600);
    const stalePath = join(dir, 'stale.sock');
    const stale = createServer().listen(stalePath);
    await new Promise((resolve) => stale.once('listening', resolve));
    // Closing a listening server removes its file; a dead process's would stay: keep it.
    const again = await DispatchServer.listen({ ...optionsOf(server), socketPath: stalePath });
    await again.close();
    stale.close();
    writeFileSync(join(dir, 'plain'), 'x');
    await expect(DispatchServer.listen({ ...optionsOf(server), socketPath: join(dir, 'plain') })).rejects.toMatchObject({ code: 'DISPATCH_SOCKET_PATH' });
  });
});

function optionsOf(server: DispatchServer): Parameters<typeof DispatchServer.listen>[0] {
  return (server as unknown as { options: Parameters<typeof DispatchServer.listen>[0] }).options;
}
