/**
 * preload.so driven by real C programs, built both ways a binary meets glibc: the old way
 * (__xstat64 & co., what .NET's System.Native and anything built against glibc < 2.33
 * calls) and the new way (stat64, lstat, fstatat, statx as real functions since 2.33).
 */
import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REDIRECTED_FILE_NAMES } from '../../src/preload/contract.js';
import { buildOnce, cleanupAll, compileProgram, exportedSymbols, importedSymbols, makeScratch, under, type Built, type Scratch } from './helpers.js';

let built: Built;
beforeAll(() => {
  built = buildOnce();
});
afterAll(cleanupAll);

const DECOY = 'shared-root-decoy';

interface Fixture {
  scratch: Scratch;
  slot: string;
  runner: string;
  slotRunner: string;
  op: (...args: string[]) => string;
}

function fixture(binary: () => string, options: { cwd?: string } = {}): Fixture {
  const scratch = makeScratch();
  const slot = scratch.slot('a');
  const runner = join(scratch.root, '.runner');
  writeFileSync(runner, DECOY);
  return {
    scratch,
    slot,
    runner,
    slotRunner: join(slot, '.runner'),
    op: (...args: string[]) => under({ root: scratch.root, slot, cwd: options.cwd }, binary(), args).stdout,
  };
}

describe('the test programs import the symbols they claim to (nm -D)', () => {
  it('the old-ABI program imports __xstat64/__lxstat64 and none of the glibc 2.33 stat functions', () => {
    const symbols = importedSymbols(built.fsOpsOld);
    for (const name of ['__xstat64', '__lxstat64', '__xstat', '__lxstat', '__fxstatat', '__fxstatat64', 'open64', 'unlink', 'fopen']) {
      expect(symbols.some((s) => s.startsWith(`${name}@GLIBC_`)), `${name} in ${symbols.join(' ')}`).toBe(true);
    }
    expect(symbols.filter((s) => /^(stat|stat64|lstat|lstat64|fstatat|fstatat64|statx)@/.test(s))).toEqual([]);
  });

  it('the new-ABI program imports stat64/lstat/fstatat@GLIBC_2.33 and statx, and no __xstat*', () => {
    const symbols = importedSymbols(built.fsOpsNew);
    for (const name of ['stat64@GLIBC_2.33', 'lstat@GLIBC_2.33', 'fstatat@GLIBC_2.33', 'stat@GLIBC_2.33', 'statx@GLIBC_2.28']) {
      expect(symbols, name).toContain(name);
    }
    for (const name of ['open64', 'openat', 'access', 'unlink', 'fopen']) {
      expect(symbols.some((s) => s.startsWith(`${name}@GLIBC_`)), name).toBe(true);
    }
    expect(symbols.filter((s) => s.startsWith('__xstat') || s.startsWith('__lxstat') || s.startsWith('__fxstatat'))).toEqual([]);
  });

  it('preload.so exports exactly the interposed functions', () => {
    expect(exportedSymbols(built.preloadPath)).toEqual(
      [
        '__fxstatat', '__fxstatat64', '__lxstat', '__lxstat64', '__open64_2', '__open_2', '__openat64_2', '__openat_2',
        '__xstat', '__xstat64', 'access', 'chmod', 'creat', 'creat64', 'faccessat', 'fopen', 'fopen64', 'fstatat',
        'fstatat64', 'link', 'linkat', 'lstat', 'lstat64', 'open', 'open64', 'openat', 'openat64', 'remove', 'rename', 'renameat',
        'renameat2', 'stat', 'stat64', 'statx', 'syscall', 'truncate', 'truncate64', 'unlink', 'unlinkat', 'utimensat',
      ].sort(),
    );
  });
});

describe.each([
  { abi: 'old (__xstat64 family)', binary: () => built.fsOpsOld, statOps: ['stat', 'stat64', 'lstat', 'lstat64'] },
  { abi: 'new (glibc >= 2.33 stat functions)', binary: () => built.fsOpsNew, statOps: ['stat', 'stat64', 'lstat', 'lstat64', 'statx'] },
])('a program built the $abi way', ({ binary, statOps }) => {
  it('creates, truncates, stats, reads and unlinks <root>/.runner in the slot; the root file is untouched', () => {
    const { op, runner, slotRunner, scratch } = fixture(binary);
    const root = scratch.root;

    // Missing in the slot: ENOENT, even though the root has its own .runner.
    for (const statOp of statOps) {
      expect(op(statOp, runner), statOp).toBe('err ENOENT');
    }
    expect(op('fstatat', root, '.runner')).toBe('err ENOENT');
    expect(op('fstatat64', root, '.runner')).toBe('err ENOENT');
    expect(op('access', runner)).toBe('err ENOENT');
    expect(op('read', runner)).toBe('err ENOENT');

    // Create, then truncate by writing a shorter content.
    expect(op('write', runner, 'a-longer-first-version')).toBe('ok');
    expect(op('write', runner, 'slot-a')).toBe('ok');
    expect(readFileSync(slotRunner, 'utf8')).toBe('slot-a');
    expect(readFileSync(runner, 'utf8')).toBe(DECOY);

    for (const statOp of statOps) {
      expect(op(statOp, runner), statOp).toBe('ok size=6');
    }
    expect(op('fstatat', root, '.runner')).toBe('ok size=6');
    expect(op('fstatat64', root, '.runner')).toBe('ok size=6');
    expect(op('access', runner)).toBe('ok');
    expect(op('faccessat', root, '.runner')).toBe('ok');
    expect(op('read', runner)).toBe('ok data=slot-a');
    expect(op('readat', root, '.runner')).toBe('ok data=slot-a');
    expect(op('fread', runner)).toBe('ok data=slot-a');

    expect(op('fwrite', runner, 'via-fopen')).toBe('ok');
    expect(readFileSync(slotRunner, 'utf8')).toBe('via-fopen');
    expect(op('truncate', runner, '3')).toBe('ok');
    expect(readFileSync(slotRunner, 'utf8')).toBe('via');

    expect(op('unlink', runner)).toBe('ok');
    expect(existsSync(slotRunner)).toBe(false);
    expect(readFileSync(runner, 'utf8')).toBe(DECOY);
    expect(op('stat64', runner)).toBe('err ENOENT');
    expect(op('unlink', runner)).toBe('err ENOENT');
  });

  it('redirects writeat/unlinkat/remove relative to a dirfd on the root', () => {
    const { op, runner, slotRunner, scratch } = fixture(binary);
    expect(op('writeat', scratch.root, '.runner', 'at')).toBe('ok');
    expect(readFileSync(slotRunner, 'utf8')).toBe('at');
    expect(op('unlinkat', scratch.root, '.runner')).toBe('ok');
    expect(existsSync(slotRunner)).toBe(false);
    expect(op('write', runner, 'again')).toBe('ok');
    expect(op('remove', runner)).toBe('ok');
    expect(existsSync(slotRunner)).toBe(false);
    expect(readFileSync(runner, 'utf8')).toBe(DECOY);
  });

  it('moves a temp file written in the root into the slot on rename', () => {
    const { op, runner, slotRunner, scratch } = fixture(binary);
    const temp = join(scratch.root, '.runner.tmp');
    expect(op('write', temp, 'renamed-in')).toBe('ok');
    expect(readFileSync(temp, 'utf8')).toBe('renamed-in');
    expect(op('rename', temp, runner)).toBe('ok');
    expect(readFileSync(slotRunner, 'utf8')).toBe('renamed-in');
    expect(existsSync(temp)).toBe(false);
    expect(readFileSync(runner, 'utf8')).toBe(DECOY);
  });

  it('matches every spelling of the root: ./, //, bin/.., cwd-relative, a symlink to the root', () => {
    const { op, slotRunner, scratch } = fixture(binary);
    writeFileSync(slotRunner, 'in-slot');
    const root = scratch.root;
    const link = join(scratch.base, 'root-link');
    symlinkSync(root, link);
    for (const spelling of [`${root}/./.runner`, `${root}//.runner`, `${root}/bin/../.runner`, `${link}/.runner`, `${root}/.runner`]) {
      expect(op('read', spelling), spelling).toBe('ok data=in-slot');
      expect(op('stat64', spelling), spelling).toBe('ok size=7');
    }
    const fromBin = (...args: string[]) => under({ root, slot: join(scratch.base, 'slots', 'a'), cwd: join(root, 'bin') }, binary(), args).stdout;
    expect(fromBin('read', '../.runner')).toBe('ok data=in-slot');
    expect(fromBin('lstat64', '../.runner')).toBe('ok size=7');
    expect(fromBin('fstatat-cwd', '../.runner')).toBe('ok size=7');
    const fromRoot = (...args: string[]) => under({ root, slot: join(scratch.base, 'slots', 'a'), cwd: root }, binary(), args).stdout;
    expect(fromRoot('read', '.runner')).toBe('ok data=in-slot');
    expect(fromRoot('stat', '.runner')).toBe('ok size=7');
  });

  it('matches when CBACTIONS_PRELOAD_ROOT is a symlink to the directory the program uses', () => {
    const scratch = makeScratch();
    const slot = scratch.slot('a');
    const link = join(scratch.base, 'root-link');
    symlinkSync(scratch.root, link);
    expect(under({ root: link, slot }, binary(), ['write', join(scratch.root, '.credentials'), 'creds']).stdout).toBe('ok');
    expect(readFileSync(join(slot, '.credentials'), 'utf8')).toBe('creds');
    expect(existsSync(join(scratch.root, '.credentials'))).toBe(false);
  });

  it('leaves other paths alone: <root>/config.sh, /etc/hostname, a .runner in another directory, look-alike names', () => {
    const { op, scratch, slot } = fixture(binary);
    const root = scratch.root;
    expect(op('read', join(root, 'config.sh'))).toBe(`ok data=${readFileSync(join(root, 'config.sh'), 'utf8')}`.trim());
    expect(op('read', '/etc/hostname')).toBe(`ok data=${readFileSync('/etc/hostname', 'utf8')}`.trim());

    const elsewhere = join(scratch.base, 'elsewhere');
    mkdirSync(elsewhere);
    writeFileSync(join(elsewhere, '.runner'), 'not-the-root');
    const inElsewhere = (...args: string[]) => under({ root, slot, cwd: elsewhere }, binary(), args).stdout;
    expect(inElsewhere('read', '.runner')).toBe('ok data=not-the-root');
    expect(inElsewhere('write', 'plain-file', 'cwd-data')).toBe('ok');
    expect(readFileSync(join(elsewhere, 'plain-file'), 'utf8')).toBe('cwd-data');

    for (const name of ['.runner.bak', '.runnerx', 'runner', '.setup_info', '.service']) {
      expect(op('write', join(root, name), name)).toBe('ok');
      expect(readFileSync(join(root, name), 'utf8')).toBe(name);
      expect(existsSync(join(slot, name)), name).toBe(false);
    }
    expect(op('write', join(root, 'bin', '.runner'), 'in-bin')).toBe('ok');
    expect(readFileSync(join(root, 'bin', '.runner'), 'utf8')).toBe('in-bin');
    expect(existsSync(join(slot, '.runner'))).toBe(false);
    expect(op('stat', join(root, 'bin', 'missing'))).toBe('err ENOENT');
  });

  it('keeps errno: untouched on success, the real error on failure', () => {
    const { op, runner, slotRunner, scratch } = fixture(binary);
    writeFileSync(slotRunner, 'x');
    expect(op('errno-kept', runner)).toBe('ok errno_after=EILSEQ');
    expect(op('errno-kept', join(scratch.root, 'config.sh'))).toBe('ok errno_after=EILSEQ');
    expect(op('stat64', join(scratch.root, '.credentials'))).toBe('err ENOENT');
    // Only the last component is matched: this path goes through the root's own file.
    expect(op('stat64', `${runner}/child`)).toBe('err ENOTDIR');
    expect(op('read', join(scratch.root, 'config.sh', '.runner'))).toBe('err ENOTDIR');
  });

  it('answers ENOENT when the slot directory does not exist (nothing falls back to the root)', () => {
    const scratch = makeScratch();
    writeFileSync(join(scratch.root, '.runner'), DECOY);
    const slot = join(scratch.base, 'no-such-slot');
    const op = (...args: string[]) => under({ root: scratch.root, slot }, binary(), args).stdout;
    expect(op('stat64', join(scratch.root, '.runner'))).toBe('err ENOENT');
    expect(op('write', join(scratch.root, '.runner'), 'x')).toBe('err ENOENT');
    expect(readFileSync(join(scratch.root, '.runner'), 'utf8')).toBe(DECOY);
  });
});

describe('a _FORTIFY_SOURCE build', () => {
  it('is redirected through __open_2 / __openat_2 (flags not known at compile time)', () => {
    const program = compileProgram(
      'fortified',
      `#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
    (void)argc;
    int flags = atoi(argv[2]);
    int fd = argv[3][0] == 'a' ? openat(AT_FDCWD, argv[1], flags) : open(argv[1], flags);
    char buf[64];
    ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
    if (n < 0) { perror("read"); return 1; }
    buf[n] = 0;
    printf("%s", buf);
    return 0;
}
`,
      ['-D_FORTIFY_SOURCE=2'],
    );
    const symbols = importedSymbols(program);
    expect(symbols.some((s) => s.startsWith('__open_2@'))).toBe(true);
    expect(symbols.some((s) => s.startsWith('__openat_2@'))).toBe(true);
    const scratch = makeScratch();
    const slot = scratch.slot('a');
    writeFileSync(join(scratch.root, '.runner'), DECOY);
    writeFileSync(join(slot, '.runner'), 'fortified-read');
    const runner = join(scratch.root, '.runner');
    expect(under({ root: scratch.root, slot }, program, [runner, '0', 'open']).stdout).toBe('fortified-read');
    expect(under({ root: scratch.root, slot }, program, [runner, '0', 'at']).stdout).toBe('fortified-read');
  });
});

describe('the file list', () => {
  it.each(REDIRECTED_FILE_NAMES.map((name) => [name]))('redirects %s', (name) => {
    const scratch = makeScratch();
    const slot = scratch.slot('a');
    const path = join(scratch.root, name);
    expect(under({ root: scratch.root, slot }, built.fsOpsNew, ['write', path, `content of ${name}`]).stdout).toBe('ok');
    expect(readFileSync(join(slot, name), 'utf8')).toBe(`content of ${name}`);
    expect(existsSync(path)).toBe(false);
    expect(under({ root: scratch.root, slot }, built.fsOpsOld, ['stat64', path]).stdout).toBe(`ok size=${`content of ${name}`.length}`);
  });
});

describe('the environment contract', () => {
  it.each([
    ['CBACTIONS_PRELOAD_ROOT unset', { CBACTIONS_PRELOAD_ROOT: undefined }],
    ['CBACTIONS_PRELOAD_ROOT empty', { CBACTIONS_PRELOAD_ROOT: '' }],
    ['CBACTIONS_PRELOAD_ROOT relative', { CBACTIONS_PRELOAD_ROOT: 'root' }],
    ['CBACTIONS_PRELOAD_SLOT_DIR unset', { CBACTIONS_PRELOAD_SLOT_DIR: undefined }],
    ['CBACTIONS_PRELOAD_SLOT_DIR relative', { CBACTIONS_PRELOAD_SLOT_DIR: 'slots/a' }],
  ])('passes every call through when %s', (_label, env) => {
    const scratch = makeScratch();
    const slot = scratch.slot('a');
    const runner = join(scratch.root, '.runner');
    const result = under({ root: scratch.root, slot, cwd: scratch.base, env }, built.fsOpsNew, ['write', runner, 'unredirected']);
    expect(result.stdout).toBe('ok');
    expect(readFileSync(runner, 'utf8')).toBe('unredirected');
    expect(existsSync(join(slot, '.runner'))).toBe(false);
  });

  it('accepts a slot directory given with a trailing slash', () => {
    const scratch = makeScratch();
    const slot = scratch.slot('a');
    expect(under({ root: scratch.root, slot: `${slot}/` }, built.fsOpsNew, ['write', join(scratch.root, '.runner'), 'trailing']).stdout).toBe('ok');
    expect(readFileSync(join(slot, '.runner'), 'utf8')).toBe('trailing');
  });
});
