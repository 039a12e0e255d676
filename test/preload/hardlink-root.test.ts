/**
 * buildHardLinkRoot: a per-slot runner root of real directories and hard links (same
 * inodes as the shared installation), without the per-runner files, refreshed in place.
 */
import { type Stats, chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, statSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { HARD_LINK_ROOT_SKIPPED_NAMES, REDIRECTED_FILE_NAMES } from '../../src/preload/contract.js';
import { buildHardLinkRoot } from '../../src/preload/hardlink-root.js';
import { isCbactionsError } from '../../src/util/errors.js';

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) {
    rmSync(dir, { recursive: true, force: true });
  }
});

function tempDir(parent = tmpdir()): string {
  const dir = mkdtempSync(join(parent, 'cbactions-hardlink-'));
  dirs.push(dir);
  return dir;
}

/** A small runner installation, with the per-runner files a configured shared root could hold. */
function sharedInstallation(parent: string): string {
  const root = join(parent, 'shared');
  mkdirSync(join(root, 'bin'), { recursive: true });
  mkdirSync(join(root, 'externals', 'node20', 'bin'), { recursive: true });
  mkdirSync(join(root, 'externals', 'node20', 'lib'), { recursive: true });
  mkdirSync(join(root, '_diag'));
  mkdirSync(join(root, '_work', '_temp'), { recursive: true });
  writeFileSync(join(root, 'bin', 'Runner.Listener'), '#!/bin/sh\necho listener\n');
  writeFileSync(join(root, 'bin', 'Runner.Listener.dll'), 'MZ fake assembly');
  writeFileSync(join(root, 'bin', 'Runner.Worker'), '#!/bin/sh\nexec cbactions worker "$@"\n');
  chmodSync(join(root, 'bin', 'Runner.Listener'), 0o755);
  chmodSync(join(root, 'bin', 'Runner.Worker'), 0o755);
  writeFileSync(join(root, 'externals', 'node20', 'lib', 'npm-cli.js'), 'npm');
  writeFileSync(join(root, 'config.sh'), '#!/bin/sh\n');
  writeFileSync(join(root, 'run.sh'), '#!/bin/sh\n');
  writeFileSync(join(root, '.setup_info'), '[]');
  writeFileSync(join(root, '_diag', 'Runner_1.log'), 'log');
  for (const name of REDIRECTED_FILE_NAMES) {
    writeFileSync(join(root, name), `shared ${name}`);
  }
  return root;
}

/** Every path under dir, relative, with its lstat. */
function walk(dir: string, base = dir): Map<string, Stats> {
  const out = new Map<string, Stats>();
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    const st = lstatSync(path);
    out.set(relative(base, path), st);
    if (st.isDirectory()) {
      for (const [key, value] of walk(path, base)) {
        out.set(key, value);
      }
    }
  }
  return out;
}

describe('buildHardLinkRoot', () => {
  it('hard-links every file (same inode), makes real directories, and leaves out config files, _diag and _work', async () => {
    const base = tempDir();
    const shared = sharedInstallation(base);
    const slot = join(base, 'slots', 'slot-1');
    const result = await buildHardLinkRoot({ sharedRoot: shared, slotRoot: slot });

    const sharedTree = walk(shared);
    const slotTree = walk(slot);
    const expected = [...sharedTree.keys()].filter((path) => !HARD_LINK_ROOT_SKIPPED_NAMES.includes(path.split('/')[0] ?? '')).sort();
    expect([...slotTree.keys()].sort()).toEqual(expected);
    for (const name of [...REDIRECTED_FILE_NAMES, '_diag', '_work']) {
      expect(existsSync(join(slot, name)), name).toBe(false);
    }
    for (const [path, st] of slotTree) {
      const original = sharedTree.get(path);
      expect(st.isSymbolicLink(), path).toBe(false);
      if (original?.isDirectory()) {
        expect(st.isDirectory(), path).toBe(true);
        expect(st.ino, path).not.toBe(original.ino);
        expect(st.mode, path).toBe(original.mode);
      } else {
        expect(st.isFile(), path).toBe(true);
        expect(st.ino, path).toBe(original?.ino);
        expect(st.dev, path).toBe(original?.dev);
      }
    }
    expect(statSync(join(slot, 'bin', 'Runner.Listener')).mode & 0o777).toBe(0o755);
    expect(result).toEqual({ files: 7, directories: 5, symlinks: 0, removed: 0 });
  });

  it('is idempotent and refreshes: new, replaced and deleted files; slot-owned files stay', async () => {
    const base = tempDir();
    const shared = sharedInstallation(base);
    const slot = join(base, 'slot');
    await buildHardLinkRoot({ sharedRoot: shared, slotRoot: slot });
    const firstInode = lstatSync(join(slot, 'config.sh')).ino;

    // The slot's own registration and logs, written later by its listener.
    writeFileSync(join(slot, '.runner'), '{"agentName":"slot"}');
    mkdirSync(join(slot, '_diag'));
    writeFileSync(join(slot, '_diag', 'Runner_2.log'), 'slot log');

    expect(await buildHardLinkRoot({ sharedRoot: shared, slotRoot: slot })).toEqual({ files: 7, directories: 5, symlinks: 0, removed: 0 });
    expect(lstatSync(join(slot, 'config.sh')).ino).toBe(firstInode);

    writeFileSync(join(shared, 'bin', 'new-tool'), 'new');
    writeFileSync(join(shared, 'run.sh.tmp'), '#!/bin/sh\necho v2\n');
    renameSync(join(shared, 'run.sh.tmp'), join(shared, 'run.sh'));
    unlinkSync(join(shared, '.setup_info'));
    rmSync(join(shared, 'externals', 'node20', 'lib'), { recursive: true });

    const refreshed = await buildHardLinkRoot({ sharedRoot: shared, slotRoot: slot });
    expect(refreshed.removed).toBe(2);
    expect(lstatSync(join(slot, 'bin', 'new-tool')).ino).toBe(lstatSync(join(shared, 'bin', 'new-tool')).ino);
    expect(lstatSync(join(slot, 'run.sh')).ino).toBe(lstatSync(join(shared, 'run.sh')).ino);
    expect(readFileSync(join(slot, 'run.sh'), 'utf8')).toContain('v2');
    expect(existsSync(join(slot, '.setup_info'))).toBe(false);
    expect(existsSync(join(slot, 'externals', 'node20', 'lib'))).toBe(false);
    expect(readFileSync(join(slot, '.runner'), 'utf8')).toBe('{"agentName":"slot"}');
    expect(readFileSync(join(slot, '_diag', 'Runner_2.log'), 'utf8')).toBe('slot log');
    expect(readFileSync(join(shared, '.runner'), 'utf8')).toBe('shared .runner');
  });

  it('recreates symlinks that ship inside the installation with the same target', async () => {
    const base = tempDir();
    const shared = sharedInstallation(base);
    symlinkSync('../lib/npm-cli.js', join(shared, 'externals', 'node20', 'bin', 'npm'));
    const slot = join(base, 'slot');
    const result = await buildHardLinkRoot({ sharedRoot: shared, slotRoot: slot });
    expect(result.symlinks).toBe(1);
    expect(readlinkSync(join(slot, 'externals', 'node20', 'bin', 'npm'))).toBe('../lib/npm-cli.js');
    // Relative, so it resolves inside the slot root.
    expect(readFileSync(join(slot, 'externals', 'node20', 'bin', 'npm'), 'utf8')).toBe('npm');
    expect((await buildHardLinkRoot({ sharedRoot: shared, slotRoot: slot })).symlinks).toBe(1);
  });

  it('replaces a slot entry whose type no longer matches', async () => {
    const base = tempDir();
    const shared = sharedInstallation(base);
    const slot = join(base, 'slot');
    mkdirSync(join(slot, 'config.sh'), { recursive: true });
    writeFileSync(join(slot, 'config.sh', 'junk'), 'x');
    writeFileSync(join(slot, 'bin'), 'a file where a directory belongs');
    await buildHardLinkRoot({ sharedRoot: shared, slotRoot: slot });
    expect(lstatSync(join(slot, 'config.sh')).ino).toBe(lstatSync(join(shared, 'config.sh')).ino);
    expect(lstatSync(join(slot, 'bin')).isDirectory()).toBe(true);
  });

  it('says EXDEV, with both paths, when the slot root is on another filesystem', async () => {
    const base = tempDir();
    const shared = sharedInstallation(base);
    // /dev/shm is a tmpfs, distinct from the temp dir's filesystem on this machine; when it
    // is not, the kernel's EXDEV is simulated through the injected link function.
    const crossDevice = existsSync('/dev/shm') && statSync('/dev/shm').dev !== statSync(base).dev;
    const slot = join(crossDevice ? tempDir('/dev/shm') : base, 'slot');
    const exdev = async () => {
      throw Object.assign(new Error('EXDEV: cross-device link not permitted'), { code: 'EXDEV' });
    };
    const error: unknown = await buildHardLinkRoot({ sharedRoot: shared, slotRoot: slot, ...(crossDevice ? {} : { link: exdev }) }).then(
      () => undefined,
      (thrown: unknown) => thrown,
    );
    expect(isCbactionsError(error, 'PRELOAD_HARDLINK_EXDEV')).toBe(true);
    const message = (error as Error).message;
    expect(message).toContain('EXDEV');
    expect(message).toContain(shared);
    expect(message).toContain(slot);
    expect(message).toContain('different filesystems');
  });

  it('names the error code and both paths for other link failures', async () => {
    const base = tempDir();
    const shared = sharedInstallation(base);
    const eperm = async () => {
      throw Object.assign(new Error('EPERM: operation not permitted'), { code: 'EPERM' });
    };
    const error: unknown = await buildHardLinkRoot({ sharedRoot: shared, slotRoot: join(base, 'slot'), link: eperm }).catch((thrown: unknown) => thrown);
    expect(isCbactionsError(error, 'PRELOAD_HARDLINK_FAILED')).toBe(true);
    expect((error as Error).message).toMatch(/cannot hard-link .*\/shared\/.* to .*\/slot\/.*: EPERM/);
  });

  it('refuses a slot root inside the shared root, and a shared root that is not a directory', async () => {
    const base = tempDir();
    const shared = sharedInstallation(base);
    await expect(buildHardLinkRoot({ sharedRoot: shared, slotRoot: join(shared, 'slots', 'x') })).rejects.toMatchObject({ code: 'PRELOAD_HARDLINK_INVALID' });
    expect(existsSync(join(shared, 'slots'))).toBe(false);
    const link = join(base, 'link-into-shared');
    symlinkSync(join(shared, 'bin'), link);
    await expect(buildHardLinkRoot({ sharedRoot: shared, slotRoot: join(link, 'slot') })).rejects.toMatchObject({ code: 'PRELOAD_HARDLINK_INVALID' });
    expect(existsSync(join(shared, 'bin', 'slot'))).toBe(false);
    await expect(buildHardLinkRoot({ sharedRoot: join(shared, 'config.sh'), slotRoot: join(base, 'slot') })).rejects.toMatchObject({ code: 'PRELOAD_HARDLINK_INVALID' });
    await expect(buildHardLinkRoot({ sharedRoot: join(base, 'missing'), slotRoot: join(base, 'slot') })).rejects.toMatchObject({ code: 'PRELOAD_HARDLINK_INVALID' });
  });
});
