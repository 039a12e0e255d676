import { execFile } from 'node:child_process';
import { access, constants } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CbactionsError } from '../util/errors.js';
import type { Logger } from '../util/logger.js';

const run = promisify(execFile);


export interface RunnerInstallOptions {
  runnerRoot: string;
  /** The runner version the listener runs (from the payload). */
  version?: string;
  /** docker/install-runner.sh: verifies the tarball's SHA-256 before unpacking. */
  installer: string;
  checksums: string;
  env: NodeJS.ProcessEnv;
  logger: Logger;
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Makes sure the real Runner.Worker is there. The cbactions images have it; on a stock
 * CodeBuild image the build installs the exact runner version the listener runs, checksum
 * verified against docker/runner-checksums.txt, so users may bring their own images.
 */
export async function ensureRunnerInstalled(options: RunnerInstallOptions): Promise<'present' | 'installed'> {
  const worker = join(options.runnerRoot, 'bin', 'Runner.Worker');
  if (await exists(worker)) return 'present';
  if (options.version === undefined || !/^\d+\.\d+\.\d+$/.test(options.version)) {
    throw new CbactionsError(
      'RUNNER_NOT_INSTALLED',
      `${worker} does not exist and the job names no runner version to install (set CBACTIONS_RUNNER_VERSION on the listener, or use the cbactions build image)`,
    );
  }
  options.logger.info({ event: 'entrypoint.runner-install', version: options.version, root: options.runnerRoot }, 'installing the actions runner');
  try {
    await run(options.installer, [options.version, options.runnerRoot, options.checksums], { env: options.env, timeout: 10 * 60_000, maxBuffer: 1024 * 1024 });
  } catch (error) {
    const stderr = String((error as { stderr?: unknown }).stderr ?? '').trim().split('\n').at(-1) ?? '';
    throw new CbactionsError('RUNNER_INSTALL_FAILED', `could not install actions/runner ${options.version} into ${options.runnerRoot}: ${stderr || (error as Error).message}`, { cause: error });
  }
  if (!(await exists(worker))) {
    throw new CbactionsError('RUNNER_INSTALL_FAILED', `installed actions/runner ${options.version}, but ${worker} is still missing`);
  }
  return 'installed';
}
