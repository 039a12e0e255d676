/**
 * The contract between the mux and `preload.so`: environment variable names, the files
 * that are per listener, and where the build puts the artifacts. The C side
 * (`src/preload/preload.c`) has the same list; test/preload checks every name behaves.
 */
import { existsSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CbactionsError } from '../util/errors.js';

/**
 * Absolute path of the shared runner root whose config files are redirected. Read once,
 * when the process starts (the library's constructor): set it before exec, changing it
 * later in the process has no effect. Unset, empty or relative = the library does nothing.
 */
export const PRELOAD_ROOT_ENV = 'CBACTIONS_PRELOAD_ROOT';

/**
 * Absolute path of the slot directory that receives the redirected files (same file
 * names, flat). Read once at process start like {@link PRELOAD_ROOT_ENV}. The library
 * does not create it: a missing slot directory makes opens fail with ENOENT.
 */
export const PRELOAD_SLOT_DIR_ENV = 'CBACTIONS_PRELOAD_SLOT_DIR';

/**
 * Files in the runner root that belong to one runner registration. Names from
 * actions/runner `HostContext.GetConfigFile` (`.runner`, `.credentials`,
 * `.credentials_rsaparams`, `.runner_migrated`, `.credentials_migrated`) plus `.env` and
 * `.path`, which the listener reads at startup. `.credentials_rsaparams_migrated` is not
 * in the runner's source; operators report it after upgrades, so it is kept per slot too.
 */
export const REDIRECTED_FILE_NAMES = [
  '.runner',
  '.credentials',
  '.credentials_rsaparams',
  '.env',
  '.path',
  '.runner_migrated',
  '.credentials_migrated',
  '.credentials_rsaparams_migrated',
] as const;
export type RedirectedFileName = (typeof REDIRECTED_FILE_NAMES)[number];

/** Top-level entries of the shared root a per-slot hard-link root never shares. */
export const HARD_LINK_ROOT_SKIPPED_NAMES: readonly string[] = [...REDIRECTED_FILE_NAMES, '_diag', '_work'];

/** File names the Makefile produces (in `dist/preload/` by default). */
export const PRELOAD_LIBRARY_FILE = 'preload.so';
export const PRELOAD_PROBE_FILE = 'preload-probe';
export const LISTENER_LAUNCHER_FILE = 'listener-launcher';

export interface PreloadArtifacts {
  /** The LD_PRELOAD library. */
  preloadPath: string;
  /** The program `probePreload` runs under the library. */
  probePath: string;
  /** `listener-launcher PARENT_PID PROGRAM ARG...`: runs PROGRAM with a death signal tied to its starter. */
  launcherPath: string;
}

/** The build outputs in `dir` (what `make -C src/preload OUT=dir` writes). */
export function preloadArtifactsIn(dir: string): PreloadArtifacts {
  return { preloadPath: join(dir, PRELOAD_LIBRARY_FILE), probePath: join(dir, PRELOAD_PROBE_FILE), launcherPath: join(dir, LISTENER_LAUNCHER_FILE) };
}

/**
 * Where `npm run build` put the artifacts: `<package>/dist/preload/`. The package root is
 * found by walking up from this module, so it works from `src/` (tests) and `dist/src/`.
 */
export function builtPreloadArtifacts(fromUrl: string = import.meta.url): PreloadArtifacts {
  let dir = dirname(fileURLToPath(fromUrl));
  for (;;) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'src', 'preload'))) {
      return preloadArtifactsIn(join(dir, 'dist', 'preload'));
    }
    const parent = dirname(dir);
    if (parent === dir) {
      throw new CbactionsError('PRELOAD_NOT_BUILT', `cannot find the cbactions package root above ${fileURLToPath(fromUrl)}; run "npm run build"`);
    }
    dir = parent;
  }
}

export interface PreloadEnvironmentOptions {
  preloadPath: string;
  runnerRoot: string;
  slotDir: string;
  /** An LD_PRELOAD already in effect; kept, after ours. */
  inheritedLdPreload?: string;
}

/**
 * The variables a listener needs (merge them into its environment before spawning it).
 * `UV_USE_IO_URING=0`: libuv (Node, so `cbactions worker` under the listener) can run
 * async fs operations through io_uring when that is enabled, and io_uring submits paths
 * to the kernel without any libc call an LD_PRELOAD library could see.
 */
export function preloadEnvironment(options: PreloadEnvironmentOptions): Record<string, string> {
  const { preloadPath, runnerRoot, slotDir } = options;
  for (const [field, value] of [['preloadPath', preloadPath], ['runnerRoot', runnerRoot], ['slotDir', slotDir]] as const) {
    if (!isAbsolute(value)) {
      throw new CbactionsError('PRELOAD_INVALID_PATH', `${field} must be an absolute path, got "${value}"`);
    }
  }
  // ld.so splits LD_PRELOAD on spaces and colons; such a path would load something else.
  if (/[\s:]/.test(preloadPath)) {
    throw new CbactionsError('PRELOAD_INVALID_PATH', `preloadPath "${preloadPath}" contains a space or colon, which LD_PRELOAD cannot express`);
  }
  const inherited = options.inheritedLdPreload?.trim();
  return {
    LD_PRELOAD: inherited ? `${preloadPath} ${inherited}` : preloadPath,
    [PRELOAD_ROOT_ENV]: runnerRoot,
    [PRELOAD_SLOT_DIR_ENV]: slotDir,
    UV_USE_IO_URING: '0',
  };
}
