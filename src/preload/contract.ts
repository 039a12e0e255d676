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

/**
 * The libc functions `preload.so` interposes: exactly what it exports (test/dotnet checks
 * the built library against this list). Both glibc stat ABIs, the *at variants, the
 * fortified opens, and `syscall` for libuv's direct statx.
 */
export const INTERPOSED_SYMBOLS = [
  'open', 'open64', 'openat', 'openat64', '__open_2', '__open64_2', '__openat_2', '__openat64_2',
  'creat', 'creat64', 'fopen', 'fopen64',
  'stat', 'stat64', 'lstat', 'lstat64', 'fstatat', 'fstatat64', 'statx',
  '__xstat', '__xstat64', '__lxstat', '__lxstat64', '__fxstatat', '__fxstatat64',
  'access', 'faccessat', 'unlink', 'unlinkat', 'remove', 'rename', 'renameat', 'renameat2',
  'truncate', 'truncate64', 'chmod', 'utimensat', 'link', 'linkat', 'syscall',
] as const;

/**
 * Path-taking libc functions that .NET's `libSystem.Native.so` imports (read off the .NET 8
 * and .NET 10 runtime packs, see docs/preload.md) and that `preload.so` deliberately leaves
 * alone, each with the reason it cannot touch a redirected file. test/dotnet fails, naming
 * the symbol, when the runtime imports a path-taking function that is in neither list.
 */
export const UNINTERPOSED_PATH_FUNCTIONS: Readonly<Record<string, string>> = {
  __xmknod: 'makes device nodes, only for System.Formats.Tar extraction; the runner never creates its config files that way',
  mkfifo: 'makes named pipes (tar extraction); the runner never creates its config files that way',
  chdir: 'changes the working directory: names a directory, never one of the redirected files',
  mkdir: 'creates directories; every redirected name is a file',
  rmdir: 'removes directories only (Directory.Delete); every redirected name is a file',
  mkdtemp: 'creates a new directory from a random template (Directory.CreateTempSubdirectory)',
  mkstemps64: 'creates a new temp file with a random suffix (Path.GetTempFileName): never a redirected name',
  opendir: 'lists a directory; the runner opens its config files by name and never lists the root to find them',
  inotify_add_watch: 'FileSystemWatcher on a directory: reports events, reads and writes no file',
  execve: 'starts a program (Process.Start); the config files are data, never executed',
  dlopen: 'loads native libraries (the runtime, NativeLibrary); config files are not libraries',
  readlink: 'reads a symlink target (File.ResolveLinkTarget, the host finding itself); the runner writes its config files as regular files',
  realpath: 'canonicalises a spelling (the host finding its app); opens nothing, and the runner never canonicalises its config files',
  symlink: 'File.CreateSymbolicLink; the runner writes its config files with WriteAllText/WriteAllBytes, never as links',
  pathconf: 'asks a filesystem limit (name length); reads and writes no file',
  statfs64: 'filesystem facts for DriveInfo and the file-system type; no per-file state',
  setmntent: 'opens the mount table (/proc/self/mounts) for DriveInfo; never a runner file',
  shm_open: 'POSIX shared memory names (/dev/shm), not paths under the runner root',
  shm_unlink: 'POSIX shared memory names (/dev/shm), not paths under the runner root',
};

/** Top-level entries of the shared root a per-slot hard-link root never shares. */
export const HARD_LINK_ROOT_SKIPPED_NAMES: readonly string[] = [...REDIRECTED_FILE_NAMES, '_diag', '_work'];

/** File names the Makefile produces (in `dist/preload/` by default). */
export const PRELOAD_LIBRARY_FILE = 'preload.so';
export const PRELOAD_PROBE_FILE = 'preload-probe';
export const LISTENER_LAUNCHER_FILE = 'listener-launcher';
export const WORKER_SHIM_FILE = 'worker-shim';

export interface PreloadArtifacts {
  /** The LD_PRELOAD library. */
  preloadPath: string;
  /** The program `probePreload` runs under the library. */
  probePath: string;
  /** `listener-launcher PARENT_PID PROGRAM ARG...`: runs PROGRAM with a death signal tied to its starter. */
  launcherPath: string;
  /** The native Runner.Worker shim (docs/worker-shim.md) that `install-worker` copies into a runner root. */
  workerShimPath: string;
}

/** The build outputs in `dir` (what `make -C src/preload OUT=dir` writes). */
export function preloadArtifactsIn(dir: string): PreloadArtifacts {
  return {
    preloadPath: join(dir, PRELOAD_LIBRARY_FILE),
    probePath: join(dir, PRELOAD_PROBE_FILE),
    launcherPath: join(dir, LISTENER_LAUNCHER_FILE),
    workerShimPath: join(dir, WORKER_SHIM_FILE),
  };
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
