import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';

/**
 * A `moto_server` (Python AWS emulator) on 127.0.0.1 for adapter tests. It fails loudly
 * when moto is missing: a test that silently skipped AWS emulation would prove nothing.
 */
export interface Moto {
  /** `http://127.0.0.1:<port>` — pass it as every SDK client's `endpoint`. */
  readonly endpoint: string;
  readonly region: string;
  /** Dummy credentials moto accepts (it does not check signatures). */
  readonly credentials: { accessKeyId: string; secretAccessKey: string };
  /** Client config for any `@aws-sdk/client-*` constructor (add `forcePathStyle: true` for S3). */
  clientConfig(): { endpoint: string; region: string; credentials: { accessKeyId: string; secretAccessKey: string } };
  /** Forgets every resource (`POST /moto-api/reset`). */
  reset(): Promise<void>;
  /** Stops the server: SIGTERM to its process group, SIGKILL after a bounded wait. */
  stop(): Promise<void>;
}

export interface StartMotoOptions {
  /** Executable name or path; default `moto_server` from PATH. */
  command?: string;
  /** How long to wait for the first answer; python start-up is slow on a cold cache. */
  readyTimeoutMs?: number;
}

const REGION = 'us-east-1';
const CREDENTIALS = { accessKeyId: 'testing', secretAccessKey: 'testing' };

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => (port > 0 ? resolve(port) : reject(new Error('could not find a free TCP port'))));
    });
  });
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function waitForExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.off('exit', onExit);
      resolve(false);
    }, ms);
    const onExit = () => {
      clearTimeout(timer);
      resolve(true);
    };
    child.once('exit', onExit);
  });
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // Already gone.
  }
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  killGroup(child, 'SIGTERM');
  if (await waitForExit(child, 5_000)) return;
  killGroup(child, 'SIGKILL');
  await waitForExit(child, 5_000);
}

async function startOnce(command: string, port: number, readyTimeoutMs: number): Promise<{ child: ChildProcess; endpoint: string }> {
  const endpoint = `http://127.0.0.1:${port}`;
  // Own process group, so stop() also ends whatever a pyenv shim or wrapper started.
  const child = spawn(command, ['-H', '127.0.0.1', '-p', String(port)], {
    detached: true,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-4_000);
  });
  let spawnError: NodeJS.ErrnoException | undefined;
  child.once('error', (error: NodeJS.ErrnoException) => {
    spawnError = error;
  });

  const deadline = Date.now() + readyTimeoutMs;
  for (;;) {
    if (spawnError !== undefined) {
      if (spawnError.code === 'ENOENT') {
        throw new Error(
          `moto_server is not installed (no "${command}" on PATH). The AWS adapter tests need it: ` +
            `install it with \`pip install "moto[server]"\`. These tests never skip.`,
          { cause: spawnError },
        );
      }
      throw new Error(`could not start ${command}: ${spawnError.message}`, { cause: spawnError });
    }
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${command} exited (${child.exitCode ?? child.signalCode}) before answering on ${endpoint}; its stderr ended with:\n${stderr}`);
    }
    try {
      const response = await fetch(`${endpoint}/moto-api/data.json`, { signal: AbortSignal.timeout(2_000) });
      await response.arrayBuffer();
      if (response.ok) return { child, endpoint };
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) {
      await stopChild(child);
      throw new Error(`${command} did not answer on ${endpoint} within ${readyTimeoutMs} ms; its stderr ended with:\n${stderr}`);
    }
    await delay(100);
  }
}

/** Starts `moto_server` on a free port and waits until it answers. Throws when it can't. */
export async function startMoto(options: StartMotoOptions = {}): Promise<Moto> {
  const command = options.command ?? 'moto_server';
  const readyTimeoutMs = options.readyTimeoutMs ?? 45_000;
  let lastError: unknown;
  // The free port can be taken between probing and binding; try a few.
  for (let attempt = 0; attempt < 3; attempt += 1) {
    const port = await freePort();
    let started: { child: ChildProcess; endpoint: string };
    try {
      started = await startOnce(command, port, readyTimeoutMs);
    } catch (error) {
      lastError = error;
      if (error instanceof Error && /not installed|could not start/.test(error.message)) throw error;
      continue;
    }
    const { child, endpoint } = started;
    return {
      endpoint,
      region: REGION,
      credentials: { ...CREDENTIALS },
      clientConfig: () => ({ endpoint, region: REGION, credentials: { ...CREDENTIALS } }),
      async reset() {
        const response = await fetch(`${endpoint}/moto-api/reset`, { method: 'POST' });
        await response.arrayBuffer();
        if (!response.ok) throw new Error(`moto reset failed: HTTP ${response.status}`);
      },
      stop: () => stopChild(child),
    };
  }
  throw lastError instanceof Error ? lastError : new Error(`could not start ${command}`);
}
