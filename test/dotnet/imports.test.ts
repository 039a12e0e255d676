/**
 * The runtime's own imports, read off the shipped binary: every path-taking libc function
 * that .NET's libSystem.Native.so imports (the .NET 8 runtime pack the probe was
 * published with, and the SDK's newer shared runtime) is interposed by the preload.so we
 * build, or explained in the preload contract. docs/preload.md carries the real lists.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { INTERPOSED_SYMBOLS, UNINTERPOSED_PATH_FUNCTIONS } from '../../src/preload/contract.js';
import { buildOnce, cleanupAll, exportedSymbols, importedSymbols, REPO_ROOT, requireTool, type Built } from '../preload/helpers.js';
import { checkImports, docsBlock } from './libc-imports.js';
import { buildPreloadWithout, probeEnvironment, removeTemporary, runProbe, runtimes, type Runtime } from './helpers.js';

const DOCS = join(REPO_ROOT, 'docs', 'preload.md');

let preload: Built;
beforeAll(() => {
  requireTool('nm');
  preload = buildOnce();
});
afterAll(() => {
  cleanupAll();
  removeTemporary();
});

/** The libSystem.Native.so this runtime's probe actually loads (its runtime directory). */
function systemNative(runtime: Runtime): { library: string; version: string } {
  const [line] = runProbe(runtime.exe, ['paths'], { env: probeEnvironment(), cwd: runtime.dir });
  const value = line?.value as { runtimeDirectory: string; frameworkDescription: string };
  return { library: join(value.runtimeDirectory, 'libSystem.Native.so'), version: value.frameworkDescription };
}

function documentedBlock(runtime: string): string {
  const text = readFileSync(DOCS, 'utf8');
  const start = `<!-- imports:${runtime} -->\n`;
  const end = `\n<!-- /imports:${runtime} -->`;
  const from = text.indexOf(start);
  const to = text.indexOf(end, from);
  if (from < 0 || to < 0) {
    throw new Error(`${DOCS} has no ${start.trim()} … ${end.trim()} block`);
  }
  return text.slice(from + start.length, to);
}

describe('preload.so against the contract', () => {
  it('exports exactly INTERPOSED_SYMBOLS', () => {
    expect(exportedSymbols(preload.preloadPath)).toEqual([...INTERPOSED_SYMBOLS].sort());
  });

  it('explains no function it also interposes', () => {
    expect(Object.keys(UNINTERPOSED_PATH_FUNCTIONS).filter((name) => (INTERPOSED_SYMBOLS as readonly string[]).includes(name))).toEqual([]);
  });
});

describe.each(runtimes())('libSystem.Native.so of the $name probe', (runtime) => {
  it('imports no path-taking libc function that preload.so neither interposes nor explains', () => {
    const { library } = systemNative(runtime);
    const { problems, verdicts } = checkImports(importedSymbols(library), exportedSymbols(preload.preloadPath));
    expect(problems.map((p) => p.problem)).toEqual([]);
    // The stat and open entry points the runtime really uses are among the interposed ones.
    expect(verdicts.filter((v) => v.kind === 'interposed').map((v) => v.symbol)).toEqual(expect.arrayContaining(['open64', '__xstat64', '__lxstat64', 'unlink']));
  });

  it('is documented in docs/preload.md with its real import list', () => {
    const { library, version } = systemNative(runtime);
    const expected = docsBlock(importedSymbols(library), exportedSymbols(preload.preloadPath));
    expect(documentedBlock(runtime.name), `docs/preload.md is out of date for ${version}; the block should read:\n${expected}`).toBe(expected);
  });
});

describe('a preload.so built without interposers .NET 8 imports', () => {
  it('is caught, naming each missing symbol', () => {
    const [net8] = runtimes();
    const imports = importedSymbols(systemNative(net8 as Runtime).library);
    const needed = checkImports(imports, exportedSymbols(preload.preloadPath))
      .verdicts.filter((v) => v.kind === 'interposed')
      .map((v) => v.symbol);
    const variant = buildPreloadWithout(needed);
    const { problems } = checkImports(imports, exportedSymbols(variant));
    expect(problems.map((p) => p.symbol)).toEqual(needed);
    expect(problems[0]?.problem).toMatch(/is in INTERPOSED_SYMBOLS, but this preload.so does not export it/);
  });

  it('an unexplained path-taking import fails naming it', () => {
    const { problems } = checkImports(['lchown@GLIBC_2.2.5', 'open64@GLIBC_2.2.5', 'fstatvfs64@GLIBC_2.2.5', 'fancy_openat9@GLIBC_9'], [...INTERPOSED_SYMBOLS]);
    expect(problems).toEqual([
      { symbol: 'fancy_openat9', problem: expect.stringMatching(/^fancy_openat9 looks like a file function and is unclassified/) },
      { symbol: 'lchown', problem: expect.stringMatching(/^lchown takes a path and is neither interposed by preload.so nor explained/) },
    ]);
  });
});
