/**
 * preload.so under the real .NET runtime: probes that make the listener's file calls, on
 * .NET 8 (self-contained, the runner's runtime) and the SDK's newer runtime. Several at
 * once over one shared root, each with its own slot directory.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { preloadEnvironment } from '../../src/preload/contract.js';
import { buildOnce, cleanupAll, type Built } from '../preload/helpers.js';
import { buildPreloadWithout, outcomes, probeEnvironment, removeTemporary, runProbe, runtimes, startProbe, temporaryDir, treeSnapshot, type Runtime } from './helpers.js';
import { filesAfterScript, LISTENER_FILES, listenerScript } from './listener-script.js';

let preload: Built;
beforeAll(() => {
  preload = buildOnce();
});
afterAll(() => {
  cleanupAll();
  removeTemporary();
});

const PROBES = 4;

/** A shared runner root that already holds registration files of its own (which no slot may see). */
function sharedRoot(): { base: string; root: string } {
  const base = temporaryDir('redirect');
  const root = join(base, 'root');
  mkdirSync(join(root, 'bin'), { recursive: true });
  writeFileSync(join(root, 'config.sh'), '#!/bin/sh\necho configure\n');
  writeFileSync(join(root, 'bin', 'Runner.Worker'), '#!/bin/sh\n');
  for (const name of ['.runner', '.credentials', '.credentials_rsaparams', '.env']) {
    writeFileSync(join(root, name), `shared ${name}\n`);
  }
  return { base, root };
}

function slotDir(base: string, name: string): string {
  const dir = join(base, 'slots', name);
  mkdirSync(dir, { recursive: true });
  return dir;
}

function underPreload(root: string, slot: string, preloadPath = preload.preloadPath): NodeJS.ProcessEnv {
  return probeEnvironment(preloadEnvironment({ preloadPath, runnerRoot: root, slotDir: slot }));
}

function slotFiles(dir: string): Record<string, string | null> {
  return Object.fromEntries(LISTENER_FILES.map((name) => [name, existsSync(join(dir, name)) ? readFileSync(join(dir, name), 'utf8') : null]));
}

describe.each(runtimes())('the $name probe under preload.so', (runtime: Runtime) => {
  it(`${PROBES} concurrent listeners over one shared root: each reads, writes, locks, moves and deletes only its own files; the root is byte-identical after`, async () => {
    const { base, root } = sharedRoot();
    const before = treeSnapshot(root);
    const slots = Array.from({ length: PROBES }, (_, i) => slotDir(base, `slot-${i}`));
    const probes = slots.map((slot, i) => startProbe(runtime.exe, listenerScript(i, root).args, { env: underPreload(root, slot), cwd: join(root, 'bin') }));

    // All four hold an exclusive FileStream on "<root>/.runner" at the same time: four files.
    await Promise.all(probes.map((probe, i) => probe.lineMatching((line) => line.op === 'echo' && line.value === 'holding', `probe ${i} to hold its lock`)));
    // The lock is real and sits on the slot's file: a fifth listener of slot 0 cannot take it,
    // nor can a program that opens slot 0's file directly, while a sixth slot can.
    const [contended] = runProbe(runtime.exe, ['lock', join(root, '.runner')], { env: underPreload(root, slots[0] as string), cwd: root });
    expect(contended).toMatchObject({ ok: false, error: 'IOException' });
    const [direct] = runProbe(runtime.exe, ['lock', join(slots[0] as string, '.runner')], { env: probeEnvironment(), cwd: root });
    expect(direct).toMatchObject({ ok: false, error: 'IOException' });
    const [other] = runProbe(runtime.exe, ['lock', join(root, '.runner')], { env: underPreload(root, slotDir(base, 'slot-other')), cwd: root });
    expect(other).toMatchObject({ ok: true, value: 'locked' });

    for (const probe of probes) {
      probe.proceed();
    }
    const results = await Promise.all(probes.map((probe) => probe.finished));
    results.forEach((lines, i) => {
      expect(outcomes(lines), `probe ${i}`).toEqual(listenerScript(i, root).expected);
      expect(slotFiles(slots[i] as string), `slot ${i}`).toEqual(filesAfterScript(i));
    });
    expect(treeSnapshot(root)).toEqual(before);
  }, 180_000);

  it('File.Replace with a backup (link, then rename) between redirected names stays in the slot', () => {
    const { base, root } = sharedRoot();
    const slot = slotDir(base, 'replace');
    const lines = runProbe(
      runtime.exe,
      ['write-text', join(root, '.runner'), 'old', 'write-text', join(root, '.path'), 'new', 'replace', join(root, '.path'), join(root, '.runner'), join(root, '.runner_migrated')],
      { env: underPreload(root, slot), cwd: root },
    );
    expect(outcomes(lines)).toEqual(['done', 'done', 'done']);
    expect(['.runner', '.runner_migrated', '.path'].map((name) => (existsSync(join(slot, name)) ? readFileSync(join(slot, name), 'utf8') : null))).toEqual(['\ufeffnew', '\ufeffold', null]);
    expect(existsSync(join(root, '.runner_migrated'))).toBe(false);
    expect(readFileSync(join(root, '.runner'), 'utf8')).toBe('shared .runner\n');
  });

  it('a file missing from the slot is missing, even when the shared root has it', () => {
    const { base, root } = sharedRoot();
    const slot = slotDir(base, 'empty');
    const lines = runProbe(runtime.exe, ['exists', join(root, '.env'), 'read-text', join(root, '.env'), 'get-attributes', join(root, '.credentials'), 'delete', join(root, '.runner')], {
      env: underPreload(root, slot),
      cwd: root,
    });
    const missing = { error: 'FileNotFoundException', hresult: -2147024894 };
    expect(outcomes(lines)).toEqual([false, missing, missing, 'done']);
    expect(readFileSync(join(root, '.runner'), 'utf8')).toBe('shared .runner\n');
  });

  it('other spellings of a redirected name land in the slot: relative, dot-dot, doubled slash, a symlink to the root', () => {
    const { base, root } = sharedRoot();
    const slot = slotDir(base, 'spellings');
    const link = join(base, 'root-link');
    symlinkSync(root, link);
    const lines = runProbe(
      runtime.exe,
      ['write-text', '../.runner', 'relative', 'write-text', `${root}/bin/../.credentials`, 'dotdot', 'write-text', `${root}//.env`, 'doubled', 'write-text', `${link}/.path`, 'symlink'],
      { env: underPreload(root, slot), cwd: join(root, 'bin') },
    );
    expect(outcomes(lines)).toEqual(['done', 'done', 'done', 'done']);
    expect(['.runner', '.credentials', '.env', '.path'].map((name) => readFileSync(join(slot, name), 'utf8'))).toEqual(['\ufeffrelative', '\ufeffdotdot', '\ufeffdoubled', '\ufeffsymlink']);
    expect(existsSync(join(root, '.path'))).toBe(false);
    expect(readFileSync(join(root, '.runner'), 'utf8')).toBe('shared .runner\n');
  });

  it('shared paths behave exactly as without the library, exceptions included', () => {
    const script = (root: string): string[] => [
      'read-text', join(root, 'config.sh'),
      'write-text', join(root, 'bin', 'new-file'), 'new',
      'read-bytes', join(root, 'bin', 'new-file'),
      'set-mtime', join(root, 'bin', 'new-file'), '2001-02-03T04:05:06Z',
      'get-mtime', join(root, 'bin', 'new-file'),
      'lock', join(root, 'bin', 'new-file'),
      'lock', join(root, 'bin', 'new-file'),
      'unlock', join(root, 'bin', 'new-file'),
      'delete', join(root, 'bin', 'new-file'),
      // .runner outside the root is not a per-runner file.
      'write-text', join(root, 'bin', '.runner'), 'bin runner',
      'read-text', join(root, 'bin', '.runner'),
      'read-text', join(root, 'missing'),
      'read-text', join(root, 'no-dir', 'file'),
      'read-text', join(root, 'bin'),
      'write-text', join(root, 'config.sh', 'below-a-file'), 'x',
      'delete', join(root, 'missing'),
      'exists', join(root, 'bin'),
      'get-attributes', join(root, 'bin'),
      'move', join(root, 'config.sh'), join(root, 'bin', 'Runner.Worker'),
    ];
    const plain = sharedRoot();
    const withPreload = sharedRoot();
    const slot = slotDir(withPreload.base, 'shared-paths');
    const expected = outcomes(runProbe(runtime.exe, script(plain.root), { env: probeEnvironment(), cwd: plain.root }));
    const actual = outcomes(runProbe(runtime.exe, script(withPreload.root), { env: underPreload(withPreload.root, slot), cwd: withPreload.root }));
    expect(actual).toEqual(expected);
    // The failures are the ones a listener would see, not an artefact of the comparison.
    expect(expected.slice(6, 7)).toEqual([{ error: 'IOException', hresult: 11 }]);
    expect(expected.slice(11, 16).map((o) => (o as { error?: string }).error)).toEqual([
      'FileNotFoundException', 'DirectoryNotFoundException', 'UnauthorizedAccessException', 'DirectoryNotFoundException', undefined,
    ]);
    expect(treeSnapshot(withPreload.root, { mtimes: false })).toEqual(treeSnapshot(plain.root, { mtimes: false }));
    expect(treeSnapshot(slot)).toEqual({});
  });
});

describe('a preload.so built without an interposer the .NET 8 runtime imports', () => {
  it('fails the listener: without __lxstat64, File.Exists misses the slot\'s .runner', () => {
    const [net8] = runtimes() as [Runtime];
    const { base, root } = sharedRoot();
    const slot = slotDir(base, 'variant');
    rmSync(join(root, '.runner'));
    writeFileSync(join(slot, '.runner'), 'slot runner');
    const script = ['exists', join(root, '.runner'), 'info-exists', join(root, '.runner'), 'read-text', join(root, '.runner')];
    expect(outcomes(runProbe(net8.exe, script, { env: underPreload(root, slot), cwd: root }))).toEqual([true, true, 'slot runner']);
    const variant = buildPreloadWithout(['__lxstat64']);
    // File.Exists and FileInfo.Exists go through lstat (__lxstat64), which now reaches libc
    // with the shared root's path, where there is no .runner; only the open still redirects.
    expect(outcomes(runProbe(net8.exe, script, { env: underPreload(root, slot, variant), cwd: root }))).toEqual([false, false, 'slot runner']);
  });
});
