/**
 * probePreload against the real preload.so (must pass here) and against libraries that
 * must fail it: a missing file, a non-ELF file, an empty (no-op) library, and a library
 * that forgot the pre-2.33 __xstat64 family the runner's .NET actually calls.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { probePreload } from '../../src/preload/probe.js';
import { buildOnce, cleanupAll, compileLibrary, importedSymbols, makeScratch, type Built } from './helpers.js';

let built: Built;
beforeAll(() => {
  built = buildOnce();
});
afterAll(cleanupAll);

describe('probePreload', () => {
  it('runs a probe program that calls both stat families (nm -D)', () => {
    const symbols = importedSymbols(built.probePath);
    for (const prefix of ['__xstat64@GLIBC_', '__lxstat64@GLIBC_', '__fxstatat64@GLIBC_', 'stat64@GLIBC_2.33', 'lstat64@GLIBC_2.33', 'fstatat64@GLIBC_2.33', 'statx@GLIBC_', 'open64@GLIBC_', 'openat@GLIBC_', 'fopen@GLIBC_', 'unlink@GLIBC_', 'access@GLIBC_']) {
      expect(symbols.some((s) => s.startsWith(prefix)), prefix).toBe(true);
    }
  });

  it('succeeds with the real preload.so and removes its scratch files', async () => {
    const scratch = makeScratch();
    const workDir = join(scratch.base, 'work');
    const result = await probePreload({ preloadPath: built.preloadPath, workDir });
    expect(result).toEqual({ ok: true });
    expect(readdirSync(workDir)).toEqual([]);
  });

  it('also proves a real runner root read-only: its own .runner is hidden and left untouched', async () => {
    const scratch = makeScratch();
    const realRunner = join(scratch.root, '.runner');
    writeFileSync(realRunner, '{"agentName":"the-shared-root-must-not-be-read"}');
    const result = await probePreload({ preloadPath: built.preloadPath, workDir: join(scratch.base, 'work'), runnerRoot: scratch.root });
    expect(result).toEqual({ ok: true });
    expect(readFileSync(realRunner, 'utf8')).toBe('{"agentName":"the-shared-root-must-not-be-read"}');
    expect(readdirSync(scratch.root).sort()).toEqual(['.runner', 'bin', 'config.sh']);
  });

  it('succeeds for a runner root reached through a symlink', async () => {
    const scratch = makeScratch();
    const link = join(scratch.base, 'actions-runner');
    symlinkSync(scratch.root, link);
    expect(await probePreload({ preloadPath: built.preloadPath, workDir: join(scratch.base, 'work'), runnerRoot: link })).toEqual({ ok: true });
  });

  it('fails, naming the path, when the library does not exist', async () => {
    const scratch = makeScratch();
    const missing = join(scratch.base, 'nowhere', 'preload.so');
    const result = await probePreload({ preloadPath: missing, probePath: built.probePath, workDir: join(scratch.base, 'work') });
    expect(result.ok).toBe(false);
    expect(!result.ok && result.reason).toMatch(/preload library .*nowhere\/preload\.so is not usable \(ENOENT/);
  });

  it('fails when the probe program is missing', async () => {
    const scratch = makeScratch();
    const result = await probePreload({ preloadPath: built.preloadPath, probePath: join(scratch.base, 'no-probe'), workDir: join(scratch.base, 'work') });
    expect(!result.ok && result.reason).toMatch(/preload probe program .*no-probe is not executable/);
  });

  it('fails with the dynamic loader\'s message for a file that is not a shared library', async () => {
    const scratch = makeScratch();
    const bogus = join(scratch.base, 'bogus.so');
    writeFileSync(bogus, 'this is not an ELF file\n');
    const result = await probePreload({ preloadPath: bogus, probePath: built.probePath, workDir: join(scratch.base, 'work') });
    expect(result.ok).toBe(false);
    const reason = !result.ok ? result.reason : '';
    expect(reason).toContain('step "missing (scratch root)" failed');
    expect(reason).toContain('FAIL stat64');
    expect(reason).toContain('the dynamic loader said:');
    expect(reason).toContain('cannot be preloaded');
  });

  it('fails for an empty (no-op) library, saying the root\'s file was visible', async () => {
    const scratch = makeScratch();
    const empty = compileLibrary('empty', { code: '/* interposes nothing */\nint cbactions_empty_library;\n' });
    const result = await probePreload({ preloadPath: empty, probePath: built.probePath, workDir: join(scratch.base, 'work') });
    expect(result.ok).toBe(false);
    expect(!result.ok && result.reason).toMatch(/step "missing \(scratch root\)" failed .*FAIL stat64 .*\/root\/\.runner: expected ENOENT from the empty slot directory, but a file of \d+ bytes was found/);
    expect(readdirSync(join(scratch.base, 'work'))).toEqual([]);
  });

  it('fails for a library that handles stat64 but not the pre-2.33 __xstat64 the runner calls', async () => {
    const scratch = makeScratch();
    const newOnly = compileLibrary('new-only', { file: 'new-only-preload.c' });
    const result = await probePreload({ preloadPath: newOnly, probePath: built.probePath, workDir: join(scratch.base, 'work') });
    expect(result.ok).toBe(false);
    expect(!result.ok && result.reason).toMatch(/FAIL __xstat64 .*\/root\/\.runner: expected ENOENT/);
  });

  it('reports a workDir it cannot use instead of throwing', async () => {
    const scratch = makeScratch();
    const file = join(scratch.base, 'a-file');
    writeFileSync(file, '');
    const result = await probePreload({ preloadPath: built.preloadPath, workDir: join(file, 'sub') });
    expect(result.ok).toBe(false);
    expect(!result.ok && result.reason).toMatch(/preload probe could not run: (ENOTDIR|EEXIST)/);
  });

  it('never writes into a given runner root even when the library is a no-op', async () => {
    const scratch = makeScratch();
    mkdirSync(join(scratch.root, 'externals'));
    const empty = compileLibrary('empty2', { code: 'int cbactions_empty_library2;\n' });
    const result = await probePreload({ preloadPath: empty, probePath: built.probePath, workDir: join(scratch.base, 'work'), runnerRoot: scratch.root });
    expect(result.ok).toBe(false);
    expect(existsSync(join(scratch.root, '.runner'))).toBe(false);
    expect(readdirSync(scratch.root).sort()).toEqual(['bin', 'config.sh', 'externals']);
  });
});
