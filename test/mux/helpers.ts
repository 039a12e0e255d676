/**
 * Shared pieces of the mux tests: a runner installation whose Runner.Listener is the fake
 * listener, configs, and the built `cbactions mux` as a child process with its JSON logs.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { ConfigInput } from '../../src/config/schema.js';
import type { MuxStatus } from '../../src/mux/status-model.js';
import { readProcStat } from '../../src/util/proc.js';
import { exitAfterOutput } from '../support/child-exit.js';
import type { FakeGitHub } from '../support/fake-github.js';
import { CBACTIONS_BIN, PROJECT_ROOT, jobMessage, makeFakeRunnerRoot } from '../support/runner-root.js';

export const FAKE_RUNNER_LISTENER_JS = join(PROJECT_ROOT, 'dist', 'test', 'fixtures', 'fake-runner-listener.js');
export const PRELOAD_SO = join(PROJECT_ROOT, 'dist', 'preload', 'preload.so');

/** The wrapper a runner installation's `bin/Runner.Listener` is, in these tests. */
export function listenerWrapper(): string {
  return `#!/bin/sh\nFAKE_RUNNER_BIN_DIR="$(cd "$(dirname "$0")" && pwd -P)" exec "${process.execPath}" "${FAKE_RUNNER_LISTENER_JS}" "$@"\n`;
}

/**
 * A runner installation: `bin/Runner.Listener` (fake listener), `bin/Runner.Worker` (fake
 * worker, unless the test installs the cbactions shim), and a few files of a real one.
 */
export function makeMuxRunnerRoot(parent = mkdtempSync(join(tmpdir(), 'mux-runner-root-'))): string {
  makeFakeRunnerRoot(parent);
  const bin = join(parent, 'bin');
  writeFileSync(join(bin, 'Runner.Listener'), listenerWrapper());
  chmodSync(join(bin, 'Runner.Listener'), 0o755);
  writeFileSync(join(bin, 'Runner.Listener.dll'), 'not really an assembly\n');
  writeFileSync(join(parent, 'config.sh'), '#!/bin/sh\nexit 0\n');
  mkdirSync(join(parent, 'externals', 'node20', 'bin'), { recursive: true });
  writeFileSync(join(parent, 'externals', 'node20', 'bin', 'node'), '');
  return parent;
}

export interface MuxTestConfig {
  fake: FakeGitHub;
  runnerRoot: string;
  stateDir: string;
  /** `slots` for a fixed pool; `idle`, `max` (and `prepared`, `coolDownSeconds`) for an elastic one. */
  pools: { name: string; labels: string[]; slots?: number; idle?: number; max?: number; prepared?: number; coolDownSeconds?: number }[];
  token?: string;
  scope?: ConfigInput['github']['scope'];
  registration?: 'jit' | 'token';
  mux?: Partial<NonNullable<ConfigInput['mux']>>;
  github?: Partial<ConfigInput['github']>;
}

/** A complete config for the fake GitHub; the PAT comes from the env variable FAKE_GH_TOKEN. */
export function muxConfig(options: MuxTestConfig): ConfigInput {
  return {
    github: {
      url: options.fake.url,
      scope: options.scope ?? { repository: 'octo/repo' },
      namePrefix: 'cbt',
      auth: { token: { env: 'FAKE_GH_TOKEN' } },
      registration: options.registration ?? 'jit',
      ...options.github,
    },
    codebuild: { projectName: 'cbactions-test' },
    payloads: { key: { local: { file: join(options.stateDir, 'key') } }, store: { local: { dir: join(options.stateDir, 'payloads') } } },
    pools: options.pools,
    mux: {
      runnerRoot: options.runnerRoot,
      stateDir: options.stateDir,
      statusHost: '127.0.0.1',
      statusPort: 0,
      installWorkerShim: false,
      drainTimeoutSeconds: 60,
      listenerStopTimeoutSeconds: 5,
      listenerBackoff: { initialMs: 100, maxMs: 1_000, healthyAfterSeconds: 30 },
      ...options.mux,
    },
  };
}

export function writeConfig(dir: string, config: ConfigInput): string {
  const path = join(dir, 'cbactions.json');
  writeFileSync(path, JSON.stringify(config, null, 2));
  return path;
}

export interface LogRecord {
  event?: string;
  level?: string;
  msg?: string;
  [key: string]: unknown;
}

export interface MuxProcess {
  child: ChildProcess;
  logs: LogRecord[];
  /** Lines of stderr that were not JSON. */
  otherOutput: string[];
  statusUrl: string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  status(): Promise<MuxStatus>;
  kill(signal?: NodeJS.Signals): void;
}

const running = new Set<ChildProcess>();

/** Starts the built `cbactions mux`, own process group, and waits for its `mux-started` line. */
export async function startMux(configPath: string, env: NodeJS.ProcessEnv = {}, readyTimeoutMs = 30_000): Promise<MuxProcess> {
  const child = spawn(process.execPath, [CBACTIONS_BIN, 'mux', '--config', configPath], {
    env: { ...process.env, FAKE_GH_TOKEN: 'ghp_fake_test_token', CBACTIONS_LOG_LEVEL: 'debug', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  running.add(child);
  const logs: LogRecord[] = [];
  const otherOutput: string[] = [];
  child.once('exit', () => running.delete(child));
  // Its last log lines (mux.drain-finished, a start-up error) are read before `exited` resolves.
  const exited = exitAfterOutput(child);
  let onStarted: ((url: string) => void) | undefined;
  let timer: NodeJS.Timeout | undefined;
  const dump = () => `logs:\n${logs.map((record) => JSON.stringify(record)).join('\n')}\n${otherOutput.join('\n')}`;
  const started = new Promise<string>((resolve, reject) => {
    onStarted = resolve;
    timer = setTimeout(() => reject(new Error(`mux did not start within ${readyTimeoutMs} ms; ${dump()}`)), readyTimeoutMs);
    void exited.then(({ code, signal }) => reject(new Error(`mux exited (${code ?? signal}) before it started; ${dump()}`)));
  }).finally(() => clearTimeout(timer));
  createInterface({ input: child.stderr as NodeJS.ReadableStream }).on('line', (line) => {
    let record: LogRecord;
    try {
      record = JSON.parse(line) as LogRecord;
    } catch {
      otherOutput.push(line);
      return;
    }
    logs.push(record);
    if (record.event === 'mux.started' && typeof record.statusUrl === 'string') onStarted?.(record.statusUrl);
  });
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => otherOutput.push(line));
  const statusUrl = await started;
  return {
    child,
    logs,
    otherOutput,
    statusUrl,
    exited,
    status: async () => {
      const response = await fetch(`${statusUrl}/status`);
      return (await response.json()) as MuxStatus;
    },
    kill: (signal = 'SIGTERM') => {
      if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) process.kill(child.pid, signal);
    },
  };
}

/** Kills every mux this file started (its whole group) and every listener the fake saw. */
export async function killEverything(fakes: (FakeGitHub | undefined)[]): Promise<void> {
  for (const child of running) {
    try {
      if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  for (const fake of fakes) {
    for (const session of fake?.sessions.values() ?? []) {
      if (session.pid === undefined) continue;
      try {
        process.kill(-session.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }
  await Promise.all(
    [...running].map(
      (child) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) resolve();
          else child.once('exit', () => resolve());
        }),
    ),
  );
}

/** Polls `probe` until it returns something other than undefined, null or false. */
export async function waitFor<T>(what: string, probe: () => T | undefined | null | false | Promise<T | undefined | null | false>, timeoutMs = 60_000, intervalMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== null && value !== false) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${lastError ? ` (last error: ${String(lastError)})` : ''}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** A job body for the fake worker with a recognisable display name. */
export function namedJob(displayName: string, options: Parameters<typeof jobMessage>[0] = {}): string {
  const message = JSON.parse(jobMessage({ jobId: displayName.replace(/[^A-Za-z0-9_.-]/g, '_'), ...options })) as Record<string, unknown>;
  message.jobDisplayName = displayName;
  return JSON.stringify(message);
}

export function eventsNamed(logs: LogRecord[], event: string): LogRecord[] {
  return logs.filter((record) => record.event === event);
}

/**
 * Whether a child of `parentPid` (the listener) catches SIGTERM, i.e. the worker it started is
 * far enough along that a signal to the group is a cancel, not a kill. From /proc, Linux only.
 */
export function childCatchesSigterm(parentPid: number): boolean {
  const SIGTERM_BIT = 1n << 14n;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    if (readProcStat(Number(entry))?.ppid !== parentPid) continue;
    try {
      const caught = /^SigCgt:\s*([0-9a-f]+)$/m.exec(readFileSync(`/proc/${entry}/status`, 'utf8'))?.[1];
      if (caught !== undefined && (BigInt(`0x${caught}`) & SIGTERM_BIT) !== 0n) return true;
    } catch {
      // The process ended while we looked.
    }
  }
  return false;
}
