/**
 * Shared by the .NET probe tests: the probe built by globalSetup, running it (under
 * preload.so or not), and comparing directory trees byte for byte.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { accessSync, constants, lstatSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, relative } from 'node:path';
import { createInterface } from 'node:readline';
import { inject } from 'vitest';
import { PRELOAD_SRC } from '../preload/helpers.js';
import { PROBE_NAME, type ProbeBuild } from './probe-build.js';

const temporary: string[] = [];
const running = new Set<ChildProcess>();

/** A fresh temp dir, removed by {@link removeTemporary}. */
export function temporaryDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), `cbactions-dotnet-${prefix}-`));
  temporary.push(dir);
  return dir;
}

/** Ends probes a failed test left waiting, then removes the temp dirs. */
export function removeTemporary(): void {
  for (const child of running) {
    child.kill('SIGKILL');
  }
  running.clear();
  for (const dir of temporary.splice(0)) {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The build from globalSetup; throws its error when there is none (the test fails, never skips). */
export function probeBuild(): ProbeBuild {
  const result = inject('dotnetProbe');
  if (!result.ok) {
    throw new Error(`the .NET probe could not be built, so the .NET tests cannot run: ${result.error}`);
  }
  return result.build;
}

export interface Runtime {
  name: 'net8' | 'net10';
  /** The publish directory (what a runner's bin/ holds). */
  dir: string;
  /** The apphost. */
  exe: string;
}

export function runtimes(): Runtime[] {
  const build = probeBuild();
  return [
    { name: 'net8', dir: build.net8, exe: join(build.net8, PROBE_NAME) },
    { name: 'net10', dir: build.net10, exe: join(build.net10, PROBE_NAME) },
  ];
}

/** The SDK's install dir, so the framework-dependent apphost finds its runtime wherever dotnet lives. */
function dotnetRoot(): string {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const candidate = join(dir, 'dotnet');
    try {
      accessSync(candidate, constants.X_OK);
      return dirname(realpathSync(candidate));
    } catch {
      // not in this PATH entry
    }
  }
  throw new Error('"dotnet" is not on PATH');
}

/** A minimal, explicit environment for a probe, plus `extra` (undefined removes a variable). */
export function probeEnvironment(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    LC_ALL: 'C',
    HOME: process.env.HOME ?? tmpdir(),
    TMPDIR: tmpdir(),
    DOTNET_ROOT: dotnetRoot(),
    DOTNET_CLI_TELEMETRY_OPTOUT: '1',
    DOTNET_NOLOGO: '1',
    DOTNET_SKIP_FIRST_TIME_EXPERIENCE: '1',
  };
  for (const [key, value] of Object.entries(extra)) {
    if (value === undefined) {
      delete env[key];
    } else {
      env[key] = value;
    }
  }
  return env;
}

/** One line of the probe's output (see Program.cs). */
export interface ProbeLine {
  op: string;
  ok: boolean;
  value?: unknown;
  error?: string;
  hresult?: number;
}

function parseLines(stdout: string): ProbeLine[] {
  return stdout
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as ProbeLine);
}

export interface ProbeRunOptions {
  env: NodeJS.ProcessEnv;
  cwd: string;
}

/** Runs the probe to the end; throws with its stderr unless it exits 0. */
export function runProbe(exe: string, args: string[], options: ProbeRunOptions): ProbeLine[] {
  const result = spawnSync(exe, args, { env: options.env, cwd: options.cwd, encoding: 'utf8', timeout: 120_000 });
  if (result.error) {
    throw result.error;
  }
  if (result.status !== 0) {
    throw new Error(`${exe} ${args.join(' ')} exited ${String(result.status)} (signal ${String(result.signal)}): ${result.stderr}${result.stdout}`);
  }
  return parseLines(result.stdout);
}

/** A probe left running: read its lines as they come, answer its "wait" commands. */
export interface RunningProbe {
  /** Resolves with the first line (counting from the start) that matches. */
  lineMatching(predicate: (line: ProbeLine) => boolean, what: string): Promise<ProbeLine>;
  /** Releases one "wait" command. */
  proceed(): void;
  /** Resolves with every line once the probe exited 0; rejects otherwise. */
  finished: Promise<ProbeLine[]>;
}

export function startProbe(exe: string, args: string[], options: ProbeRunOptions): RunningProbe {
  const child = spawn(exe, args, { env: options.env, cwd: options.cwd, stdio: ['pipe', 'pipe', 'pipe'] });
  running.add(child);
  child.on('exit', () => running.delete(child));
  const lines: ProbeLine[] = [];
  const waiters: { predicate: (line: ProbeLine) => boolean; resolve: (line: ProbeLine) => void; reject: (error: Error) => void }[] = [];
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const stdoutClosed = new Promise<void>((resolveClosed) => {
    createInterface({ input: child.stdout })
      .on('line', (text) => {
        if (text.trim() === '') {
          return;
        }
        const line = JSON.parse(text) as ProbeLine;
        lines.push(line);
        for (const waiter of waiters.filter((w) => w.predicate(line))) {
          waiters.splice(waiters.indexOf(waiter), 1);
          waiter.resolve(line);
        }
      })
      .on('close', resolveClosed);
  });
  const finished = new Promise<ProbeLine[]>((resolveFinished, reject) => {
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      void stdoutClosed.then(() => {
        const error = new Error(`${exe} exited ${String(code)} (signal ${String(signal)}) before the line the test waited for: ${stderr}`);
        for (const waiter of waiters.splice(0)) {
          waiter.reject(error);
        }
        if (code === 0) {
          resolveFinished(lines);
        } else {
          reject(new Error(`${exe} ${args.join(' ')} exited ${String(code)} (signal ${String(signal)}): ${stderr}`));
        }
      });
    });
  });
  // Unobserved until the test awaits it; a rejection must not go unhandled meanwhile.
  finished.catch(() => undefined);
  return {
    lineMatching(predicate, what) {
      const seen = lines.find(predicate);
      if (seen) {
        return Promise.resolve(seen);
      }
      return new Promise((resolveLine, reject) => {
        waiters.push({ predicate, resolve: resolveLine, reject: (error) => reject(new Error(`waiting for ${what}: ${error.message}`)) });
      });
    },
    proceed() {
      child.stdin.write('\n');
    },
    finished,
  };
}

/** The value of each successful line, the error type of each failed one. */
export function outcomes(lines: ProbeLine[]): unknown[] {
  return lines.map((line) => (line.ok ? line.value : { error: line.error, hresult: line.hresult }));
}

/** Every entry under `dir`: type, mode, and size, mtime and content hash, symlink target or nothing. */
export function treeSnapshot(dir: string, options: { mtimes?: boolean } = {}): Record<string, string> {
  const mtimes = options.mtimes ?? true;
  const out: Record<string, string> = {};
  const walk = (current: string): void => {
    for (const name of readdirSync(current).sort()) {
      const path = join(current, name);
      const st = lstatSync(path);
      const key = relative(dir, path);
      const mode = (st.mode & 0o7777).toString(8);
      if (st.isDirectory()) {
        out[key] = `dir ${mode}`;
        walk(path);
      } else if (st.isSymbolicLink()) {
        out[key] = `link -> ${readlinkSync(path)}`;
      } else {
        out[key] = `file ${mode} ${st.size} ${mtimes ? st.mtimeMs : '-'} ${createHash('sha256').update(readFileSync(path)).digest('hex')}`;
      }
    }
  };
  walk(dir);
  return out;
}

/** Builds preload.so with the real Makefile into a fresh temp dir, without the named interposers. */
export function buildPreloadWithout(symbols: string[]): string {
  const dir = temporaryDir('preload-without');
  const result = spawnSync('make', ['-s', '-C', PRELOAD_SRC, `OUT=${dir}`, `WITHOUT=${symbols.join(' ')}`, join(dir, 'preload.so')], { encoding: 'utf8' });
  if (result.error || result.status !== 0) {
    throw new Error(`make preload.so WITHOUT=${symbols.join(' ')} failed: ${result.error?.message ?? ''}${result.stderr}${result.stdout}`);
  }
  return join(dir, 'preload.so');
}
