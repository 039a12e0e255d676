import { existsSync } from 'node:fs';
import { chmod, copyFile, lstat, open, rename, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { builtPreloadArtifacts } from '../preload/contract.js';
import { CbactionsError } from '../util/errors.js';
import { PACKAGE_ROOT } from '../util/package-root.js';
import { shellQuote } from '../util/shell.js';

/** In the script shim (today `Runner.Worker.fallback`, before the native shim `Runner.Worker` itself). */
export const SHIM_MARKER = '# cbactions Runner.Worker shim';

/**
 * The script that runs `cbactions worker` for a job: `Runner.Worker.fallback`, which the
 * native shim execs when no mux takes the job (docs/worker-shim.md). It keeps the argv and
 * inherited fds, so it `exec`s cbactions directly. `--no-warnings`: the listener shows the
 * worker's stderr to users on failure, so only cbactions' one-line reason may appear there.
 */
export function shimScript(nodePath: string, cliPath: string): string {
  return [
    '#!/bin/sh',
    SHIM_MARKER,
    '# Installed by `cbactions install-worker` as Runner.Worker.fallback: the native Runner.Worker',
    '# shim runs it when no mux takes the job, and cbactions runs the job in an AWS CodeBuild build.',
    `exec ${shellQuote(nodePath)} --no-warnings ${shellQuote(cliPath)} worker "$@"`,
    '',
  ].join('\n');
}

/** Compiled into `src/preload/worker-shim.c`: how an installed native shim is recognised. */
export const NATIVE_SHIM_MARKER = 'cbactions native Runner.Worker shim';

/** Next to `Runner.Worker`: what the native shim execs when no mux takes the job. */
export const FALLBACK_FILE = 'Runner.Worker.fallback';

/** Our markers sit well inside this (the script's second line; the native shim is ~20 KB). */
const MARKER_SEARCH_BYTES = 1024 * 1024;

export interface InstallResult {
  shimPath: string;
  /** The script shim the native one falls back to (docs/worker-shim.md). */
  fallbackPath: string;
  /** Where the original Runner.Worker was kept, when there was one. */
  keptOriginal?: string;
}

async function readHead(path: string): Promise<string | undefined> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch {
    return undefined;
  }
  try {
    const buffer = Buffer.alloc(MARKER_SEARCH_BYTES);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
    return buffer.subarray(0, bytesRead).toString('latin1');
  } finally {
    await handle.close();
  }
}

/** True for what an install-worker put there: the native shim or the (older) script shim. */
function isOurShim(head: string): boolean {
  return head.includes(NATIVE_SHIM_MARKER) || head.includes(SHIM_MARKER);
}

/**
 * Installs the native shim (`nativeShimPath`, built by `npm run build` into
 * `dist/preload/worker-shim`) as `bin/Runner.Worker` and the script shim as
 * `bin/Runner.Worker.fallback`; idempotent. The runner's own Runner.Worker is kept as
 * Runner.Worker.orig. Each file is written under a temporary name and renamed, so a listener
 * starting a job meanwhile runs either the old file or the new one, never half of one.
 */
export async function installWorkerShim(runnerRoot: string, nodePath: string, cliPath: string, nativeShimPath: string): Promise<InstallResult> {
  const bin = join(resolve(runnerRoot), 'bin');
  try {
    if (!(await lstat(bin)).isDirectory()) throw new Error('not a directory');
  } catch (error) {
    throw new CbactionsError('INSTALL_NO_BIN', `${bin} is not a directory: is ${runnerRoot} a runner installation?`, { cause: error });
  }
  const nativeHead = await readHead(nativeShimPath);
  if (nativeHead === undefined) {
    throw new CbactionsError('INSTALL_SHIM_NOT_BUILT', `the native worker shim ${nativeShimPath} does not exist: run "npm run build" (it compiles src/preload/worker-shim.c)`);
  }
  if (!nativeHead.includes(NATIVE_SHIM_MARKER)) {
    throw new CbactionsError('INSTALL_SHIM_NOT_BUILT', `${nativeShimPath} is not the cbactions worker shim (no "${NATIVE_SHIM_MARKER}" in it): run "npm run build"`);
  }
  const shimPath = join(bin, 'Runner.Worker');
  const fallbackPath = join(bin, FALLBACK_FILE);
  const result: InstallResult = { shimPath, fallbackPath };

  const fallbackTemporary = `${fallbackPath}.cbactions-tmp`;
  await writeFile(fallbackTemporary, shimScript(nodePath, cliPath), { mode: 0o755 });
  await chmod(fallbackTemporary, 0o755);
  const shimTemporary = `${shimPath}.cbactions-tmp`;
  await copyFile(nativeShimPath, shimTemporary);
  await chmod(shimTemporary, 0o755);

  const existing = await readHead(shimPath);
  if (existing !== undefined && !isOurShim(existing)) {
    result.keptOriginal = `${shimPath}.orig`;
    await rename(shimPath, result.keptOriginal);
  }
  // The fallback first: a native shim is never in place without the script it falls back to.
  await rename(fallbackTemporary, fallbackPath);
  await rename(shimTemporary, shimPath);
  return result;
}

/**
 * What the shim runs. The single-file bundle loads in about half the CPU time of the
 * module tree (the listener starts one worker per job, and the SDK is hundreds of files),
 * so a checkout uses `dist/bundle/cbactions.mjs` when `npm run build` made it; the images
 * carry the bundle behind `bin/cbactions` already.
 */
export function workerEntry(packageRoot: string = PACKAGE_ROOT): string {
  const bundle = join(packageRoot, 'dist', 'bundle', 'cbactions.mjs');
  return existsSync(bundle) ? bundle : join(packageRoot, 'bin', 'cbactions');
}

export async function runInstallWorkerCommand(runnerRoot: string): Promise<number> {
  const result = await installWorkerShim(runnerRoot, process.execPath, workerEntry(), builtPreloadArtifacts().workerShimPath);
  process.stdout.write(
    `installed ${result.shimPath} (falls back to ${result.fallbackPath} without a mux)${result.keptOriginal ? ` (the runner's worker is kept as ${result.keptOriginal})` : ''}\n`,
  );
  return 0;
}
