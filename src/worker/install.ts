import { existsSync } from 'node:fs';
import { chmod, lstat, readFile, rename, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { CbactionsError } from '../util/errors.js';

export const SHIM_MARKER = '# cbactions Runner.Worker shim';

import { shellQuote } from '../util/shell.js';
import { PACKAGE_ROOT } from '../util/package-root.js';

/**
 * The file Runner.Listener executes for every job. It must stay at `<bin>/Runner.Worker`
 * (the name is a constant in the listener) and keep the argv and inherited fds, so it
 * `exec`s cbactions directly. `--no-warnings`: the listener shows the worker's stderr to
 * users on failure, so only cbactions' one-line reason may appear there.
 */
export function shimScript(nodePath: string, cliPath: string): string {
  return [
    '#!/bin/sh',
    SHIM_MARKER,
    '# Installed by `cbactions install-worker`: Runner.Listener starts this file for each job,',
    '# and cbactions runs the job in an AWS CodeBuild build.',
    `exec ${shellQuote(nodePath)} --no-warnings ${shellQuote(cliPath)} worker "$@"`,
    '',
  ].join('\n');
}

export interface InstallResult {
  shimPath: string;
  /** Where the original Runner.Worker was kept, when there was one. */
  keptOriginal?: string;
}

/** Installs the shim; idempotent. The runner's own Runner.Worker is kept as Runner.Worker.orig. */
export async function installWorkerShim(runnerRoot: string, nodePath: string, cliPath: string): Promise<InstallResult> {
  const bin = join(resolve(runnerRoot), 'bin');
  try {
    if (!(await lstat(bin)).isDirectory()) throw new Error('not a directory');
  } catch (error) {
    throw new CbactionsError('INSTALL_NO_BIN', `${bin} is not a directory: is ${runnerRoot} a runner installation?`, { cause: error });
  }
  const shimPath = join(bin, 'Runner.Worker');
  const result: InstallResult = { shimPath };
  let existing: string | undefined;
  try {
    existing = (await readFile(shimPath)).subarray(0, 4096).toString('latin1');
  } catch {
    existing = undefined;
  }
  if (existing !== undefined && !existing.includes(SHIM_MARKER)) {
    result.keptOriginal = `${shimPath}.orig`;
    await rename(shimPath, result.keptOriginal);
  }
  const temporary = `${shimPath}.cbactions-tmp`;
  await writeFile(temporary, shimScript(nodePath, cliPath), { mode: 0o755 });
  await chmod(temporary, 0o755);
  await rename(temporary, shimPath);
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
  const result = await installWorkerShim(runnerRoot, process.execPath, workerEntry());
  process.stdout.write(`installed ${result.shimPath}${result.keptOriginal ? ` (the runner's worker is kept as ${result.keptOriginal})` : ''}\n`);
  return 0;
}
