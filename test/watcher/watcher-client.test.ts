/**
 * The worker's side of the host watcher against a scripted watcher on a real local socket:
 * the test decides when the build completes, so it controls what every waiting call sees.
 */
import { mkdtempSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { BuildWaiter } from '../../src/dispatch/build-waiter.js';
import { WatcherClient } from '../../src/watcher/watcher-client.js';

const silent = pino({ level: 'silent' });
const BUILD = 'project:0000-0001';
const neverFallback: BuildWaiter = { waitForCompletion: () => Promise.reject(new Error('the fallback must not be used')) };

/** A watcher that records what workers send and answers only when told. */
async function scriptedWatcher(): Promise<{ path: string; close: () => Promise<void>; connection: () => Promise<Socket>; lines: string[] }> {
  const path = join(mkdtempSync(join(tmpdir(), 'watcher-client-')), 'w.sock');
  const lines: string[] = [];
  const sockets: Socket[] = [];
  const server = createServer((socket) => {
    sockets.push(socket);
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => lines.push(...chunk.split('\n').filter(Boolean)));
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  const connection = async () => {
    while (sockets.length === 0) await new Promise((resolve) => setImmediate(resolve));
    return sockets[0] as Socket;
  };
  const close = async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  };
  return { path, close, connection, lines };
}

function complete(id: string): string {
  return `${JSON.stringify({ op: 'complete', snapshot: { id, status: 'SUCCEEDED', complete: true, currentPhase: 'COMPLETED', phases: [], exported: { CBACTIONS_EXIT_CODE: '100' } } })}\n`;
}

describe('WatcherClient', () => {
  let stopWatcher: (() => Promise<void>) | undefined;
  afterEach(async () => {
    await stopWatcher?.();
    stopWatcher = undefined;
  });

  it('every waiting call sees the completion, not only the last one', async () => {
    const watcher = await scriptedWatcher();
    stopWatcher = watcher.close;
    const client = await WatcherClient.connect(watcher.path, { pid: 77 }, neverFallback, silent);
    if (!client) throw new Error('no connection');
    const first = client.waitForCompletion(BUILD);
    const second = client.waitForCompletion(BUILD);
    (await watcher.connection()).write(complete(BUILD));
    await expect(Promise.all([first, second])).resolves.toMatchObject([{ status: 'SUCCEEDED' }, { status: 'SUCCEEDED' }]);
    await client.finish(100);
  });

  it('an abort ends the wait while the build runs', async () => {
    const watcher = await scriptedWatcher();
    stopWatcher = watcher.close;
    const client = await WatcherClient.connect(watcher.path, { pid: 78 }, neverFallback, silent);
    if (!client) throw new Error('no connection');
    const controller = new AbortController();
    const waiting = client.waitForCompletion(BUILD, { signal: controller.signal });
    await watcher.connection();
    controller.abort(new Error('job cancelled'));
    await expect(waiting).rejects.toThrow('job cancelled');
    await client.finish(1);
  });
});
