/**
 * Which libc imports of a native library take a path, and whether preload.so covers each:
 * the check behind "every path-taking import of libSystem.Native.so is interposed or
 * explained" (test/dotnet/imports.test.ts).
 */
import { INTERPOSED_SYMBOLS, UNINTERPOSED_PATH_FUNCTIONS } from '../../src/preload/contract.js';

/**
 * glibc functions that take a path name (open/stat/access/unlink/rename/link/… families).
 * Deliberately wider than what .NET imports today, so a runtime that starts importing one
 * of them is caught.
 */
export const PATH_TAKING_LIBC_FUNCTIONS: ReadonlySet<string> = new Set([
  'open', 'open64', 'openat', 'openat64', '__open_2', '__open64_2', '__openat_2', '__openat64_2', 'openat2',
  'creat', 'creat64', 'fopen', 'fopen64', 'freopen', 'freopen64',
  'stat', 'stat64', 'lstat', 'lstat64', 'fstatat', 'fstatat64', 'statx',
  '__xstat', '__xstat64', '__lxstat', '__lxstat64', '__fxstatat', '__fxstatat64',
  'access', 'faccessat', 'euidaccess', 'eaccess',
  'unlink', 'unlinkat', 'remove', 'rename', 'renameat', 'renameat2',
  'link', 'linkat', 'symlink', 'symlinkat', 'readlink', 'readlinkat', 'realpath', '__realpath_chk', 'canonicalize_file_name',
  'truncate', 'truncate64', 'chmod', 'lchmod', 'fchmodat', 'chown', 'lchown', 'fchownat',
  'utime', 'utimes', 'lutimes', 'futimesat', 'utimensat',
  'mkdir', 'mkdirat', 'rmdir', 'mknod', 'mknodat', '__xmknod', '__xmknodat', 'mkfifo', 'mkfifoat',
  'mkstemp', 'mkstemp64', 'mkstemps', 'mkstemps64', 'mkostemp', 'mkostemp64', 'mkostemps', 'mkostemps64', 'mkdtemp', 'mktemp', 'tmpnam', 'tempnam',
  'opendir', 'scandir', 'scandir64', 'ftw', 'ftw64', 'nftw', 'nftw64', 'fts_open', 'glob', 'glob64',
  'chdir', 'chroot', 'pathconf', 'statfs', 'statfs64', 'statvfs', 'statvfs64', 'setmntent',
  'getxattr', 'lgetxattr', 'setxattr', 'lsetxattr', 'listxattr', 'llistxattr', 'removexattr', 'lremovexattr',
  'execve', 'execv', 'execvp', 'execvpe', 'execl', 'execlp', 'execle', 'posix_spawn', 'posix_spawnp',
  'dlopen', 'inotify_add_watch', 'fanotify_mark', 'name_to_handle_at', 'shm_open', 'shm_unlink',
  'mount', 'umount', 'umount2', 'swapon', 'swapoff', 'acct', 'bindtextdomain',
]);

/**
 * Names that look like file functions but take a descriptor, a handle or nothing: known
 * not to take a path. Anything else whose name looks like a file function must be put in
 * one of the two lists by a person (the check fails on it).
 */
export const NOT_PATH_TAKING_LOOKALIKES: ReadonlySet<string> = new Set([
  '__fxstat', '__fxstat64', 'fstat', 'fstat64', 'fstatfs', 'fstatfs64', 'fstatvfs', 'fstatvfs64',
  'closedir', 'readdir', 'readdir64', 'readdir_r', 'readdir64_r', 'fdopendir', 'dirfd', 'rewinddir',
  'fchmod', 'fchown', 'futimens', 'futimes', 'ftruncate', 'ftruncate64', 'fpathconf',
  'inotify_init', 'inotify_init1', 'inotify_rm_watch', 'getmntent', 'getmntent_r', 'endmntent',
  'posix_fadvise', 'posix_fadvise64', 'getcwd', 'dlclose', 'dlerror', 'dlsym', 'pipe2',
  'epoll_create', 'epoll_create1', 'pthread_create', 'pthread_attr_setdetachstate', 'pthread_setcancelstate', 'timer_create',
]);

const LOOKS_LIKE_A_FILE_FUNCTION =
  /open|stat|access|link|rename|remove|chmod|chown|mkdir|rmdir|dir|path|xattr|exec|spawn|trunc|mknod|fifo|utim|mnt|mount|temp|tmp|mks|chroot|watch|creat|shm_|glob|ftw|fts_/;

export type ImportVerdict =
  | { symbol: string; kind: 'interposed' }
  | { symbol: string; kind: 'explained'; reason: string }
  | { symbol: string; kind: 'not-path-taking' };

export interface ImportProblem {
  symbol: string;
  problem: string;
}

/** `open64@GLIBC_2.2.5` -> `open64`. */
export function bareName(versionedSymbol: string): string {
  return versionedSymbol.split('@')[0] ?? versionedSymbol;
}

/**
 * Classifies every import: interposed (listed in the contract AND exported by the library
 * actually built), explained (listed with a reason), or not path-taking. Returns the
 * verdicts and, separately, each import that is none of those, with what is wrong.
 */
export function checkImports(imports: readonly string[], exportedByPreload: readonly string[]): { verdicts: ImportVerdict[]; problems: ImportProblem[] } {
  const interposed = new Set<string>(INTERPOSED_SYMBOLS);
  const exported = new Set(exportedByPreload);
  const verdicts: ImportVerdict[] = [];
  const problems: ImportProblem[] = [];
  for (const symbol of [...new Set(imports.map(bareName))].sort()) {
    const reason = UNINTERPOSED_PATH_FUNCTIONS[symbol];
    if (interposed.has(symbol)) {
      if (exported.has(symbol)) {
        verdicts.push({ symbol, kind: 'interposed' });
      } else {
        problems.push({ symbol, problem: `${symbol} takes a path and is in INTERPOSED_SYMBOLS, but this preload.so does not export it` });
      }
    } else if (reason !== undefined) {
      verdicts.push({ symbol, kind: 'explained', reason });
    } else if (PATH_TAKING_LIBC_FUNCTIONS.has(symbol)) {
      problems.push({ symbol, problem: `${symbol} takes a path and is neither interposed by preload.so nor explained in UNINTERPOSED_PATH_FUNCTIONS (src/preload/contract.ts)` });
    } else if (LOOKS_LIKE_A_FILE_FUNCTION.test(symbol) && !NOT_PATH_TAKING_LOOKALIKES.has(symbol)) {
      problems.push({ symbol, problem: `${symbol} looks like a file function and is unclassified: add it to PATH_TAKING_LIBC_FUNCTIONS or NOT_PATH_TAKING_LOOKALIKES (test/dotnet/libc-imports.ts)` });
    } else {
      verdicts.push({ symbol, kind: 'not-path-taking' });
    }
  }
  return { verdicts, problems };
}

/** Symbols in lines of at most 100 characters, each indented by two spaces. */
function wrapped(symbols: string[]): string[] {
  const lines: string[] = [];
  let line = '';
  for (const symbol of symbols) {
    if (line !== '' && line.length + 1 + symbol.length > 98) {
      lines.push(`  ${line}`);
      line = '';
    }
    line = line === '' ? symbol : `${line} ${symbol}`;
  }
  if (line !== '') {
    lines.push(`  ${line}`);
  }
  return lines;
}

/** The block docs/preload.md holds for a runtime (between its markers): the imports, classified. */
export function docsBlock(imports: string[], exported: string[]): string {
  const { verdicts } = checkImports(imports, exported);
  const versioned = (kind: string): string[] => {
    const names = new Set(verdicts.filter((v) => v.kind === kind).map((v) => v.symbol));
    return imports.filter((s) => names.has(bareName(s))).sort();
  };
  return [
    '```',
    'interposed by preload.so:',
    ...wrapped(versioned('interposed')),
    'path-taking, left alone (reasons: UNINTERPOSED_PATH_FUNCTIONS in src/preload/contract.ts):',
    ...wrapped(versioned('explained')),
    'no path argument:',
    ...wrapped(versioned('not-path-taking')),
    '```',
  ].join('\n');
}
