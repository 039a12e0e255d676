/**
 * Where one slot's listener runs and where its registration files live.
 * - preload: the shared root's `bin/Runner.Listener`; files in `<stateDir>/slots/<slot>`,
 *   which preload.so substitutes for `<root>/.runner` etc.
 * - hardlink: `<stateDir>/roots/<slot>` mirrors the shared root with hard links; its own
 *   `.runner` etc. live in it.
 */
import { chmod, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { preloadEnvironment, PRELOAD_ROOT_ENV, PRELOAD_SLOT_DIR_ENV, REDIRECTED_FILE_NAMES } from '../preload/contract.js';
import { buildHardLinkRoot } from '../preload/hardlink-root.js';
import type { IsolationChoice } from './isolation.js';
import type { RegistrationFiles } from './jit-config.js';

export interface SlotLayout {
  slotId: string;
  /** The runner root as this slot's listener sees it. */
  root: string;
  listenerPath: string;
  /** Where `.runner`, `.credentials`, `.credentials_rsaparams` really are for this slot. */
  configDir: string;
  /** Variables added to the listener's environment for isolation. */
  env: Record<string, string>;
}

export interface PrepareSlotOptions {
  slotId: string;
  /** The shared runner installation, symlinks resolved. */
  runnerRoot: string;
  stateDir: string;
  isolation: IsolationChoice;
  inheritedLdPreload?: string;
}

export async function prepareSlotLayout(options: PrepareSlotOptions): Promise<SlotLayout> {
  const { slotId, runnerRoot, stateDir, isolation } = options;
  if (isolation.kind === 'preload') {
    const configDir = join(stateDir, 'slots', slotId);
    await mkdir(configDir, { recursive: true, mode: 0o700 });
    await chmod(configDir, 0o700);
    const env = preloadEnvironment({ preloadPath: isolation.preloadPath, runnerRoot, slotDir: configDir, inheritedLdPreload: options.inheritedLdPreload });
    return { slotId, root: runnerRoot, listenerPath: join(runnerRoot, 'bin', 'Runner.Listener'), configDir, env };
  }
  const root = join(stateDir, 'roots', slotId);
  await buildHardLinkRoot({ sharedRoot: runnerRoot, slotRoot: root });
  return { slotId, root, listenerPath: join(root, 'bin', 'Runner.Listener'), configDir: root, env: {} };
}

/** Names of the preload variables, so a hard-link slot never inherits a stray redirection. */
export const ISOLATION_ENV_NAMES = [PRELOAD_ROOT_ENV, PRELOAD_SLOT_DIR_ENV] as const;

/** Removes every per-runner file (the previous registration's), so `configure` starts clean. */
export async function clearRegistrationFiles(configDir: string): Promise<void> {
  await Promise.all(REDIRECTED_FILE_NAMES.map((name) => rm(join(configDir, name), { force: true })));
}

/** Writes the registration's files, owner-only: `.credentials_rsaparams` is the runner's private key. */
export async function writeRegistrationFiles(configDir: string, files: RegistrationFiles): Promise<void> {
  for (const [name, bytes] of files) {
    const path = join(configDir, name);
    await writeFile(path, bytes, { mode: 0o600 });
    await chmod(path, 0o600);
  }
}

/** The registration files `configure` wrote, read back. */
export async function readRegistrationFiles(configDir: string): Promise<RegistrationFiles> {
  const files: RegistrationFiles = new Map();
  for (const name of ['.runner', '.credentials', '.credentials_rsaparams']) {
    try {
      files.set(name, await readFile(join(configDir, name)));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
  }
  return files;
}
