import { mkdtempSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PollingBuildWaiter } from '../../src/dispatch/build-waiter.js';
import { BuildWatcher } from '../../src/watcher/build-watcher.js';
import { WatcherClient } from '../../src/watcher/watcher-client.js';
import { WatcherServer, type WatcherEvent } from '../../src/watcher/watcher-server.js';
import { InMemoryBuilds } from '../support/in-memory-builds.js';

const silent = pino({ level: 'silent' });

async function until(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe('watcher server and client over the local socket', () => {
  let builds: InMemoryBuilds;
  let watcher: BuildWatcher;
  let server: WatcherServer;
  let events: WatcherEvent[];

  beforeEach(async () => {
    builds = new InMemoryBuilds();
    watcher = new BuildWatcher(builds, silent, { minIntervalMs: 10, maxCallsPerSecond: 100, hardFailureLimit: 3 });
    watcher.start();
    events = [];
    server = await WatcherServer.listen({ socketPath: join(mkdtempSync(join(tmpdir(), 'watcher-')), 'w.sock'), watcher, builds, logger: silent, onEvent: (event) => events.push(event) });
  });
  afterEach(async () => {
    await server.close();
    await watcher.close();
  });

  async function newBuild(): Promise<string> {
    return (await builds.startBuild({ projectName: 'p', idempotencyToken: String(Math.random()), environmentVariables: {} })).id;
  }

  it('delivers updates and the final snapshot to the worker', async () => {
    const id = await newBuild();
    const client = await WatcherClient.connect(server.socketPath, { pid: 4242, pool: 'small', slot: 'small-1' }, new PollingBuildWaiter(builds, silent), silent);
    expect(client).toBeDefined();
    client!.track(id, { jobId: 'job-7' });
    const seen: string[] = [];
    const result = client!.waitForCompletion(id, { onUpdate: (snapshot) => seen.push(String(snapshot.currentPhase)) });
    await until(() => server.builds().length === 1);
    expect(server.builds()[0]).toMatchObject({ buildId: id, pid: 4242, jobId: 'job-7', pool: 'small', slot: 'small-1' });
    builds.finish(id, { exported: { CBACTIONS_EXIT_CODE: '101' } });
    await expect(result).resolves.toMatchObject({ id, exported: { CBACTIONS_EXIT_CODE: '101' } });
    await client!.finish(101);
    await until(() => events.some((event) => event.kind === 'worker-done'));
    expect(builds.count('stop')).toBe(0);
    expect(seen).toContain('QUEUED');
  });

  it('stops the build of a worker that disappears mid-job', async () => {
    const id = await newBuild();
    const socket = connect(server.socketPath);
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write(`${JSON.stringify({ op: 'watch', buildId: id, pid: 99999 })}\n`);
    await until(() => server.builds().length === 1);
    socket.destroy();
    await until(() => builds.count('stop') === 1);
    expect(builds.builds.get(id)?.status).toBe('STOPPED');
    await until(() => events.some((event) => event.kind === 'orphaned'));
  });

  it('refuses malformed messages without stopping anything', async () => {
    const socket = connect(server.socketPath);
    await new Promise((resolve) => socket.once('connect', resolve));
    const reply = new Promise<string>((resolve) => socket.once('data', (data) => resolve(String(data))));
    socket.write('{"op":"watch","buildId":"not a build id; rm -rf /","pid":1}\n');
    expect(JSON.parse(await reply)).toMatchObject({ op: 'error', code: 'WATCHER_BAD_MESSAGE' });
    expect(builds.count('stop')).toBe(0);
  });

  it('lets the worker fall back to polling when the watcher goes away', async () => {
    const id = await newBuild();
    const client = await WatcherClient.connect(server.socketPath, { pid: 1 }, new PollingBuildWaiter(builds, silent, { initialIntervalMs: 10 }), silent);
    client!.track(id, { jobId: 'j' });
    const result = client!.waitForCompletion(id);
    await until(() => server.builds().length === 1);
    await server.close();
    // Closing the watcher ends the worker's connection: that is not the worker going away,
    // so its build must not be stopped as an orphan (it was, and this test then saw STOPPED).
    expect(builds.count('stop')).toBe(0);
    builds.finish(id);
    await expect(result).resolves.toMatchObject({ status: 'SUCCEEDED' });
    expect(builds.count('stop')).toBe(0);
  });

  it('hands a build back when the watcher cannot poll, without stopping it when the worker falls back', async () => {
    const id = await newBuild();
    const hardFailure = () => Object.assign(new Error('no credentials'), { name: 'CredentialsProviderError' });
    for (let i = 0; i < 3; i++) builds.failures.push({ op: 'get', error: hardFailure() });
    const client = await WatcherClient.connect(server.socketPath, { pid: 1 }, new PollingBuildWaiter(builds, silent, { initialIntervalMs: 10 }), silent);
    client!.track(id, { jobId: 'j' });
    const result = client!.waitForCompletion(id);
    setTimeout(() => builds.finish(id), 300);
    await expect(result).resolves.toMatchObject({ status: 'SUCCEEDED' });
    expect(builds.count('stop')).toBe(0);
  });

  it('is not there: the worker polls on its own', async () => {
    const client = await WatcherClient.connect('/nonexistent/socket', { pid: 1 }, new PollingBuildWaiter(builds, silent), silent);
    expect(client).toBeUndefined();
  });
});
