/**
 * probePreload: does preload.so really isolate config files on this host? The mux runs it
 * once at start and picks preload or the hard-link fallback from the answer. It never
 * throws for a failed probe; it returns a reason a person can act on.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { access, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { describeError } from '../util/errors.js';
import { PRELOAD_PROBE_FILE, preloadEnvironment } from './contract.js';

export interface ProbePreloadOptions {
  /** Absolute path of the library to test. */
  preloadPath: string;
  /** The probe program; defaults to `preload-probe` next to the library (the Makefile puts it there). */
  probePath?: string;
  /**
   * The real shared runner root. When given, the probe also checks (read-only: nothing is
   * written under it) that lookups of `<runnerRoot>/.runner` see a scratch slot's file,
   * so a root reached through symlinks or bind mounts is proven too.
   */
  runnerRoot?: string;
  /** A writable directory for the scratch root and slots (removed afterwards). */
  workDir: string;
  /** Per child process; default 10 s. A probe child that hangs is killed and reported. */
  timeoutMs?: number;
  /** The shell whose redirection is tested; default /bin/sh. */
  shell?: string;
}

export type ProbePreloadResult = { ok: true } | { ok: false; reason: string };

interface ChildResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  spawnError?: Error;
}

/** Thrown inside the probe to stop at the first failed step; turned into {ok:false}. */
class ProbeFailure extends Error {}

const ROOT_DECOY = 'shared-root-file-that-must-stay-untouched\n';

export async function probePreload(options: ProbePreloadOptions): Promise<ProbePreloadResult> {
  const probePath = options.probePath ?? join(dirname(options.preloadPath), PRELOAD_PROBE_FILE);
  let scratch: string | undefined;
  try {
    await checkArtifacts(options.preloadPath, probePath);
    await mkdir(options.workDir, { recursive: true });
    scratch = await mkdtemp(join(options.workDir, 'preload-probe-'));
    await probeScratchRoot(options, probePath, scratch);
    if (options.runnerRoot !== undefined) {
      await probeRealRoot(options, probePath, options.runnerRoot, scratch);
    }
    return { ok: true };
  } catch (error) {
    const reason = error instanceof ProbeFailure ? error.message : `preload probe could not run: ${describeError(error)}`;
    return { ok: false, reason };
  } finally {
    if (scratch !== undefined) {
      await rm(scratch, { recursive: true, force: true }).catch(() => undefined);
    }
  }
}

async function checkArtifacts(preloadPath: string, probePath: string): Promise<void> {
  const library = await stat(preloadPath).catch((error: unknown) => {
    throw new ProbeFailure(`preload library ${preloadPath} is not usable (${describeError(error)}); run "npm run build" (make -C src/preload)`);
  });
  if (!library.isFile()) {
    throw new ProbeFailure(`preload library ${preloadPath} is not a regular file`);
  }
  await access(probePath, fsConstants.X_OK).catch((error: unknown) => {
    throw new ProbeFailure(`preload probe program ${probePath} is not executable (${describeError(error)}); it is built with the library by make -C src/preload`);
  });
}

/** Full read/write cycle against a throwaway root that holds a decoy `.runner`. */
async function probeScratchRoot(options: ProbePreloadOptions, probePath: string, scratch: string): Promise<void> {
  const root = join(scratch, 'root');
  const slot = join(scratch, 'slot');
  await mkdir(join(root, 'bin'), { recursive: true });
  await mkdir(slot);
  const rootRunner = join(root, '.runner');
  const slotRunner = join(slot, '.runner');
  await writeFile(rootRunner, ROOT_DECOY);
  const env = childEnv(options.preloadPath, root, slot);
  const marker = `cbactions-preload-probe-${randomUUID()}`;
  const run = (phase: string, ...extra: string[]) =>
    runProbeStep(options, `${phase} (scratch root)`, probePath, [phase, root, '.runner', ...extra], env, join(root, 'bin'));

  await run('missing');
  await run('write', marker);
  await expectFile(slotRunner, marker, `after "write", the slot directory's .runner (${slotRunner}) does not hold what was written to ${rootRunner}: the write did not land in the slot`);
  await expectFile(rootRunner, ROOT_DECOY, `after "write", the shared root's ${rootRunner} was modified: writes are not redirected`);
  await run('present', marker);
  await run('unlink');
  await expectAbsent(slotRunner, `after "unlink", the slot's ${slotRunner} still exists: unlink is not redirected`);
  await expectFile(rootRunner, ROOT_DECOY, `after "unlink", the shared root's ${rootRunner} was removed or changed: unlink is not redirected`);
  await run('missing');

  // The shell's own open() for redirection, then coreutils cat and rm.
  const shell = options.shell ?? '/bin/sh';
  const shellMarker = `cbactions-preload-shell-${randomUUID()}`;
  const rootCredentials = join(root, '.credentials');
  const slotCredentials = join(slot, '.credentials');
  await runShellStep(options, shell, 'printf "%s" "$2" > "$1/.credentials"', [root, shellMarker], env, root);
  await expectFile(slotCredentials, shellMarker, `${shell} redirection "> ${rootCredentials}" did not write the slot's ${slotCredentials}`);
  await expectAbsent(rootCredentials, `${shell} redirection "> ${rootCredentials}" created the file in the shared root`);
  const catted = await runShellStep(options, shell, 'cat "$1/.credentials" && rm "$1/.credentials"', [root], env, root);
  if (catted !== shellMarker) {
    throw new ProbeFailure(`"cat ${rootCredentials}" under ${options.preloadPath} did not print the slot's file`);
  }
  await expectAbsent(slotCredentials, `"rm ${rootCredentials}" did not remove the slot's ${slotCredentials}`);
}

/** Read-only: the real root's own `.runner` (if any) must be hidden behind a scratch slot. */
async function probeRealRoot(options: ProbePreloadOptions, probePath: string, runnerRoot: string, scratch: string): Promise<void> {
  const slot = join(scratch, 'real-root-slot');
  await mkdir(slot);
  const env = childEnv(options.preloadPath, runnerRoot, slot);
  const marker = `cbactions-preload-probe-${randomUUID()}`;
  await runProbeStep(options, 'missing (runner root)', probePath, ['missing', runnerRoot, '.runner'], env, runnerRoot);
  await writeFile(join(slot, '.runner'), marker);
  await runProbeStep(options, 'present (runner root)', probePath, ['present', runnerRoot, '.runner', marker], env, runnerRoot);
}

// A fixed system PATH (the shell step needs cat and rm): nothing from the mux's own
// environment leaks into, or changes, the probe.
const PROBE_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

function childEnv(preloadPath: string, root: string, slot: string): NodeJS.ProcessEnv {
  return {
    PATH: PROBE_PATH,
    LC_ALL: 'C',
    ...preloadEnvironment({ preloadPath, runnerRoot: root, slotDir: slot }),
  };
}

async function runProbeStep(options: ProbePreloadOptions, step: string, file: string, args: string[], env: NodeJS.ProcessEnv, cwd: string): Promise<void> {
  const result = await runChild(file, args, env, cwd, options.timeoutMs ?? 10_000);
  if (result.code === 0 && result.stdout.startsWith('ok ')) {
    return;
  }
  throw new ProbeFailure(`preload probe step "${step}" failed with ${options.preloadPath}: ${describeChild(file, result)}`);
}

async function runShellStep(options: ProbePreloadOptions, shell: string, script: string, args: string[], env: NodeJS.ProcessEnv, cwd: string): Promise<string> {
  const result = await runChild(shell, ['-c', script, 'preload-probe', ...args], env, cwd, options.timeoutMs ?? 10_000);
  if (result.code !== 0) {
    throw new ProbeFailure(`preload probe shell step \`${script}\` failed with ${options.preloadPath}: ${describeChild(shell, result)}`);
  }
  return result.stdout;
}

/** One line that says how a child ended, including ld.so's complaint when the library did not load. */
function describeChild(file: string, result: ChildResult): string {
  const parts: string[] = [];
  if (result.spawnError) {
    parts.push(`cannot run ${file}: ${describeError(result.spawnError)}`);
  } else if (result.signal) {
    parts.push(`${file} was killed by ${result.signal}`);
  } else {
    parts.push(`${file} exited ${String(result.code)}`);
  }
  const failLine = result.stdout.split('\n').find((line) => line.startsWith('FAIL'));
  if (failLine) {
    parts.push(failLine);
  }
  const loaderLine = result.stderr.split('\n').find((line) => line.includes('LD_PRELOAD'));
  if (loaderLine) {
    parts.push(`the dynamic loader said: ${loaderLine.trim()}`);
  } else if (!failLine && result.stderr.trim()) {
    parts.push(`stderr: ${result.stderr.trim().split('\n')[0] ?? ''}`);
  }
  return parts.join('; ');
}

function runChild(file: string, args: string[], env: NodeJS.ProcessEnv, cwd: string, timeoutMs: number): Promise<ChildResult> {
  return new Promise((resolvePromise) => {
    const child = spawn(file, args, { env, cwd, stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs, killSignal: 'SIGKILL' });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', (spawnError) => resolvePromise({ code: null, signal: null, stdout, stderr, spawnError }));
    child.on('close', (code, signal) => resolvePromise({ code, signal, stdout, stderr }));
  });
}

async function expectFile(path: string, expected: string, message: string): Promise<void> {
  const actual = await readFile(path, 'utf8').catch(() => undefined);
  if (actual !== expected) {
    throw new ProbeFailure(message);
  }
}

async function expectAbsent(path: string, message: string): Promise<void> {
  const present = await stat(path).then(
    () => true,
    () => false,
  );
  if (present) {
    throw new ProbeFailure(message);
  }
}
