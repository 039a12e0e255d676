/**
 * The hard-link fallback under the real .NET host: the runner's root is the parent of its
 * entry assembly's directory, and the host resolves that path through symlinks. So a slot
 * root of hard links is its own root, and a symlinked bin/ (or assembly) leads back to the
 * shared one. Then the listener's file calls over four hard-link slot roots at once,
 * without LD_PRELOAD, each finding its files from where its entry assembly is.
 */
import { existsSync, linkSync, lstatSync, mkdirSync, readdirSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildHardLinkRoot } from '../../src/preload/hardlink-root.js';
import { outcomes, probeEnvironment, removeTemporary, runProbe, runtimes, startProbe, temporaryDir, treeSnapshot, type Runtime } from './helpers.js';
import { PROBE_NAME } from './probe-build.js';
import { filesAfterScript, LISTENER_FILES, listenerScript } from './listener-script.js';

afterAll(removeTemporary);

/** A shared runner root whose bin/ is the published probe (hard links to the build, so no copy). */
function sharedInstallation(runtime: Runtime): { base: string; shared: string } {
  const base = realpathSync(temporaryDir('hardlink'));
  const shared = join(base, 'shared');
  mkdirSync(join(shared, 'bin'), { recursive: true });
  for (const name of readdirSync(runtime.dir)) {
    linkSync(join(runtime.dir, name), join(shared, 'bin', name));
  }
  writeFileSync(join(shared, 'config.sh'), '#!/bin/sh\n');
  for (const name of ['.runner', '.credentials', '.credentials_rsaparams']) {
    writeFileSync(join(shared, name), `shared ${name}\n`);
  }
  return { base, shared };
}

interface Located {
  baseDirectory: string;
  processPath: string;
  entryAssembly: string;
  runnerRoot: string;
}

function locate(exe: string, cwd: string): Located {
  const [line] = runProbe(exe, ['paths'], { env: probeEnvironment(), cwd });
  expect(line?.ok).toBe(true);
  return line?.value as Located;
}

describe.each(runtimes())('the $name apphost', (runtime: Runtime) => {
  it('in a hard-link slot root resolves to the slot root', async () => {
    const { base, shared } = sharedInstallation(runtime);
    const slot = join(base, 'slot');
    await buildHardLinkRoot({ sharedRoot: shared, slotRoot: slot });
    expect(lstatSync(join(slot, 'bin', `${PROBE_NAME}.dll`)).ino).toBe(lstatSync(join(shared, 'bin', `${PROBE_NAME}.dll`)).ino);
    expect(locate(join(slot, 'bin', PROBE_NAME), slot)).toMatchObject({
      baseDirectory: `${slot}/bin/`,
      processPath: join(slot, 'bin', PROBE_NAME),
      entryAssembly: join(slot, 'bin', `${PROBE_NAME}.dll`),
      runnerRoot: slot,
    });
  });

  it('behind a symlinked bin/ resolves to the link target: the shared root', () => {
    const { base, shared } = sharedInstallation(runtime);
    const slot = join(base, 'slot');
    mkdirSync(slot);
    symlinkSync(join(shared, 'bin'), join(slot, 'bin'));
    expect(locate(join(slot, 'bin', PROBE_NAME), slot)).toMatchObject({
      baseDirectory: `${shared}/bin/`,
      entryAssembly: join(shared, 'bin', `${PROBE_NAME}.dll`),
      runnerRoot: shared,
    });
  });

  it('in a bin/ of symlinked files resolves to the link targets: the shared root', () => {
    const { base, shared } = sharedInstallation(runtime);
    const slot = join(base, 'slot');
    mkdirSync(join(slot, 'bin'), { recursive: true });
    for (const name of readdirSync(join(shared, 'bin'))) {
      symlinkSync(join(shared, 'bin', name), join(slot, 'bin', name));
    }
    expect(locate(join(slot, 'bin', PROBE_NAME), slot)).toMatchObject({
      baseDirectory: `${shared}/bin/`,
      entryAssembly: join(shared, 'bin', `${PROBE_NAME}.dll`),
      runnerRoot: shared,
    });
  });

  it('with only its assembly symlinked resolves the assembly to the shared root', async () => {
    const { base, shared } = sharedInstallation(runtime);
    const slot = join(base, 'slot');
    await buildHardLinkRoot({ sharedRoot: shared, slotRoot: slot });
    const dll = join(slot, 'bin', `${PROBE_NAME}.dll`);
    rmSync(dll);
    symlinkSync(join(shared, 'bin', `${PROBE_NAME}.dll`), dll);
    expect(locate(join(slot, 'bin', PROBE_NAME), slot)).toMatchObject({
      baseDirectory: `${shared}/bin/`,
      // The apphost itself is the slot's hard link; the runtime follows the assembly's link.
      processPath: join(slot, 'bin', PROBE_NAME),
      entryAssembly: join(shared, 'bin', `${PROBE_NAME}.dll`),
      runnerRoot: shared,
    });
  });

  it('four listeners in four hard-link slot roots, no LD_PRELOAD: each finds and keeps its own files; the shared root is byte-identical after', async () => {
    const { base, shared } = sharedInstallation(runtime);
    const before = treeSnapshot(shared);
    const slots = ['a', 'b', 'c', 'd'].map((name) => join(base, 'slots', name));
    for (const slot of slots) {
      await buildHardLinkRoot({ sharedRoot: shared, slotRoot: slot });
    }
    // "@root" = what the runner computes from its entry assembly, not a path we hand it.
    const probes = slots.map((slot, i) => startProbe(join(slot, 'bin', PROBE_NAME), listenerScript(i, '@root').args, { env: probeEnvironment(), cwd: join(slot, 'bin') }));
    await Promise.all(probes.map((probe, i) => probe.lineMatching((line) => line.op === 'echo' && line.value === 'holding', `probe ${i} to hold its lock`)));
    for (const probe of probes) {
      probe.proceed();
    }
    const results = await Promise.all(probes.map((probe) => probe.finished));
    results.forEach((lines, i) => {
      const slot = slots[i] as string;
      expect(outcomes(lines), `probe ${i}`).toEqual(listenerScript(i, '@root').expected);
      expect(Object.fromEntries(LISTENER_FILES.map((name) => [name, existsSync(join(slot, name)) ? readFileSync(join(slot, name), 'utf8') : null])), `slot ${i}`).toEqual(filesAfterScript(i));
    });
    expect(treeSnapshot(shared)).toEqual(before);
  }, 180_000);
});
