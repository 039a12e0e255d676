/**
 * Shared by the preload tests: builds preload.so (with the real Makefile, into a temp
 * dir so concurrent `npm run build` runs never race with us), compiles the C fixtures,
 * and runs programs under LD_PRELOAD. gcc and make are required: without them the tests
 * fail with a message saying so (never skip: CI must not go green without them).
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { preloadEnvironment, preloadArtifactsIn } from '../../src/preload/contract.js';

export const REPO_ROOT = resolve(import.meta.dirname, '../..');
export const PRELOAD_SRC = join(REPO_ROOT, 'src', 'preload');
const FIXTURES = join(import.meta.dirname, 'fixtures');

export interface Built {
  dir: string;
  preloadPath: string;
  probePath: string;
  launcherPath: string;
  workerShimPath: string;
  /** fs-ops built the glibc >= 2.33 way (stat64, lstat, fstatat, statx …). */
  fsOpsNew: string;
  /** fs-ops built the glibc < 2.33 way (__xstat64, __lxstat64 …). */
  fsOpsOld: string;
}

export function requireTool(tool: string): void {
  const probe = spawnSync(tool, ['--version'], { encoding: 'utf8' });
  if (probe.error || probe.status !== 0) {
    throw new Error(
      `the preload tests need "${tool}" on PATH to build preload.so and their C test programs, and it is missing ` +
        `(${probe.error?.message ?? `exit ${String(probe.status)}`}); install it (Debian: apt-get install gcc make)`,
    );
  }
}

function run(file: string, args: string[], what: string): void {
  const result = spawnSync(file, args, { encoding: 'utf8' });
  if (result.error || result.status !== 0) {
    throw new Error(`${what} failed: ${result.error?.message ?? ''}${result.stderr}${result.stdout}`);
  }
}

let built: Built | undefined;
const cleanups: string[] = [];

/** Builds everything once per test file (vitest runs each file in its own fork). */
export function buildOnce(): Built {
  if (built) {
    return built;
  }
  requireTool('gcc');
  requireTool('make');
  const dir = mkdtempSync(join(tmpdir(), 'cbactions-preload-build-'));
  cleanups.push(dir);
  run('make', ['-s', '-C', PRELOAD_SRC, `OUT=${dir}`], 'make -C src/preload');
  const fsOpsNew = join(dir, 'fs-ops-new');
  const fsOpsOld = join(dir, 'fs-ops-old');
  run('gcc', ['-O2', '-Wall', '-Wextra', '-Werror', '-o', fsOpsNew, join(FIXTURES, 'fs-ops.c')], 'gcc fs-ops (new ABI)');
  run('gcc', ['-O2', '-Wall', '-Wextra', '-Werror', '-DOLD_GLIBC_ABI', '-o', fsOpsOld, join(FIXTURES, 'fs-ops.c')], 'gcc fs-ops (old ABI)');
  built = { dir, ...preloadArtifactsIn(dir), fsOpsNew, fsOpsOld };
  return built;
}

/** Compiles a fixture (or inline source) into a shared library in the build dir. */
export function compileLibrary(name: string, source: { file: string } | { code: string }): string {
  const { dir } = buildOnce();
  let file: string;
  if ('file' in source) {
    file = join(FIXTURES, source.file);
  } else {
    file = join(dir, `${name}.c`);
    writeFileSync(file, source.code);
  }
  const out = join(dir, `${name}.so`);
  run('gcc', ['-shared', '-fPIC', '-O2', '-o', out, file, '-ldl'], `gcc ${name}.so`);
  return out;
}

/** Compiles an inline C program into the build dir. */
export function compileProgram(name: string, code: string, flags: string[] = []): string {
  const { dir } = buildOnce();
  const file = join(dir, `${name}.c`);
  writeFileSync(file, code);
  const out = join(dir, name);
  run('gcc', ['-O2', '-Wall', '-Werror', ...flags, '-o', out, file], `gcc ${name}`);
  return out;
}

/** Imported symbols with versions, as `nm -D --with-symbol-versions` prints them (U lines). */
export function importedSymbols(binary: string): string[] {
  const result = spawnSync('nm', ['-D', '--with-symbol-versions', '--undefined-only', binary], { encoding: 'utf8' });
  if (result.status !== 0) {
    throw new Error(`nm -D ${binary} failed: ${result.stderr}`);
  }
  return result.stdout
    .split('\n')
    .map((line) => line.trim().split(/\s+/).pop() ?? '')
    .filter((symbol) => symbol !== '');
}

export function exportedSymbols(library: string): string[] {
  const result = spawnSync('nm', ['-D', '--defined-only', library], { encoding: 'utf8' });
  if (result.status !== 0) {
    throw new Error(`nm -D ${library} failed: ${result.stderr}`);
  }
  return result.stdout
    .split('\n')
    .map((line) => line.trim().split(/\s+/))
    .filter((parts) => parts.length === 3 && parts[1] === 'T')
    .map((parts) => parts[2] ?? '')
    .sort();
}

export interface Scratch {
  base: string;
  /** A runner root with bin/ and a config.sh, like an unpacked runner tarball. */
  root: string;
  /** Creates (if needed) and returns slot directory `name`. */
  slot(name: string): string;
}

export function makeScratch(): Scratch {
  const base = mkdtempSync(join(tmpdir(), 'cbactions-preload-'));
  cleanups.push(base);
  const root = join(base, 'root');
  mkdirSync(join(root, 'bin'), { recursive: true });
  writeFileSync(join(root, 'config.sh'), '#!/bin/sh\necho configure\n');
  return {
    base,
    root,
    slot(name: string): string {
      const dir = join(base, 'slots', name);
      mkdirSync(dir, { recursive: true });
      return dir;
    },
  };
}

export function cleanupAll(): void {
  for (const dir of cleanups.splice(0)) {
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface UnderOptions {
  root: string;
  slot: string;
  cwd?: string;
  /** Another library instead of preload.so. */
  preloadPath?: string;
  /** Replaces or adds variables (undefined removes one). */
  env?: Record<string, string | undefined>;
}

export function envUnder(options: UnderOptions): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    LC_ALL: 'C',
    ...preloadEnvironment({ preloadPath: options.preloadPath ?? buildOnce().preloadPath, runnerRoot: options.root, slotDir: options.slot }),
  };
  for (const [key, value] of Object.entries(options.env ?? {})) {
    if (value === undefined) {
      delete env[key];
    } else {
      env[key] = value;
    }
  }
  return env;
}

export interface RunResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a program under LD_PRELOAD and returns its trimmed stdout (throws on exit status != 0 unless allowed). */
export function under(options: UnderOptions, file: string, args: string[], allowFailure = false): RunResult {
  const result = spawnSync(file, args, { env: envUnder(options), cwd: options.cwd ?? options.root, encoding: 'utf8', timeout: 30_000 });
  if (result.error) {
    throw result.error;
  }
  const out = { status: result.status, stdout: result.stdout.trim(), stderr: result.stderr.trim() };
  if (!allowFailure && result.status !== 0) {
    throw new Error(`${file} ${args.join(' ')} exited ${String(result.status)}: ${out.stderr} ${out.stdout}`);
  }
  return out;
}

export function underAsync(options: UnderOptions, file: string, args: string[]): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(file, args, { env: envUnder(options), cwd: options.cwd ?? options.root, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (status) => resolvePromise({ status, stdout: stdout.trim(), stderr: stderr.trim() }));
  });
}
