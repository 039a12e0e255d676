/**
 * The fallback when preload.so can't be trusted: give each slot its own runner root made
 * of hard links to the shared installation. Hard links, not symlinks: the runner derives
 * its root from the symlink-resolved path of its entry assembly (RUNNER-PROTOCOL §4), so
 * a symlinked bin/ or Runner.Listener.dll would lead it back to the shared root and its
 * config files. A hard link has no "real" path elsewhere, so the slot root stays the root.
 */
import { lstat, link as fsLink, mkdir, readdir, readlink, realpath, rm, symlink, chmod } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { basename, dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { CbactionsError } from '../util/errors.js';
import { HARD_LINK_ROOT_SKIPPED_NAMES } from './contract.js';

export interface HardLinkRootOptions {
  /** The shared runner installation (the directory holding bin/, externals/, config.sh …). */
  sharedRoot: string;
  /** The slot's own root; created if missing. Must be on the shared root's filesystem. */
  slotRoot: string;
  /** How to make one hard link; defaults to fs.promises.link. Injected by tests to simulate failures. */
  link?: (existingPath: string, newPath: string) => Promise<void>;
}

export interface HardLinkRootResult {
  /** Regular files now hard-linked (already-correct links included). */
  files: number;
  directories: number;
  /** Symlinks inside the installation, recreated with the same target (see mirrorEntry). */
  symlinks: number;
  /** Entries removed from the slot root because the shared root no longer has them. */
  removed: number;
}

const SKIPPED = new Set(HARD_LINK_ROOT_SKIPPED_NAMES);

/**
 * Creates or refreshes `slotRoot` as a mirror of `sharedRoot`: real directories, files
 * hard-linked, the per-runner config files, `_diag` and `_work` left out (and left alone
 * if the slot already has them). Idempotent: links that already point at the shared
 * inode are kept, replaced files are relinked, entries gone from the shared root are
 * removed. Throws CbactionsError `PRELOAD_HARDLINK_EXDEV` when the two roots are on
 * different filesystems, `PRELOAD_HARDLINK_FAILED` for any other link error,
 * `PRELOAD_HARDLINK_INVALID` for unusable arguments.
 */
export async function buildHardLinkRoot(options: HardLinkRootOptions): Promise<HardLinkRootResult> {
  const sharedRoot = resolve(options.sharedRoot);
  const slotRoot = resolve(options.slotRoot);
  const sharedStat = await lstat(sharedRoot).catch((error: unknown) => {
    throw new CbactionsError('PRELOAD_HARDLINK_INVALID', `shared runner root ${sharedRoot} cannot be read: ${codeOf(error)}`, { cause: error });
  });
  if (!sharedStat.isDirectory()) {
    throw new CbactionsError('PRELOAD_HARDLINK_INVALID', `shared runner root ${sharedRoot} is not a directory`);
  }
  // Checked before anything is created: a rejected slot root must leave no trace.
  const [realShared, realSlot] = await Promise.all([realpath(sharedRoot), realpathOfFuturePath(slotRoot)]);
  if (isInside(realSlot, realShared) || isInside(realShared, realSlot)) {
    throw new CbactionsError('PRELOAD_HARDLINK_INVALID', `slot root ${slotRoot} and shared root ${sharedRoot} must not contain each other`);
  }
  await mkdir(slotRoot, { recursive: true, mode: sharedStat.mode & 0o7777 });
  const result: HardLinkRootResult = { files: 0, directories: 0, symlinks: 0, removed: 0 };
  await mirrorDirectory(sharedRoot, slotRoot, true, options.link ?? fsLink, result);
  return result;
}

async function mirrorDirectory(
  source: string,
  target: string,
  top: boolean,
  link: (existingPath: string, newPath: string) => Promise<void>,
  result: HardLinkRootResult,
): Promise<void> {
  const entries = await readdir(source, { withFileTypes: true });
  const kept = new Set<string>();
  for (const entry of entries) {
    if (top && SKIPPED.has(entry.name)) {
      continue;
    }
    kept.add(entry.name);
    await mirrorEntry(join(source, entry.name), join(target, entry.name), link, result);
  }
  for (const name of await readdir(target)) {
    if (kept.has(name) || (top && SKIPPED.has(name))) {
      continue;
    }
    await rm(join(target, name), { recursive: true, force: true });
    result.removed += 1;
  }
}

async function mirrorEntry(
  source: string,
  target: string,
  link: (existingPath: string, newPath: string) => Promise<void>,
  result: HardLinkRootResult,
): Promise<void> {
  const from = await lstat(source);
  const existing = await lstat(target).catch(() => undefined);
  if (from.isDirectory()) {
    if (existing && !existing.isDirectory()) {
      await rm(target, { force: true });
    }
    if (!existing || !existing.isDirectory()) {
      await mkdir(target);
    }
    await chmod(target, from.mode & 0o7777);
    result.directories += 1;
    await mirrorDirectory(source, target, false, link, result);
  } else if (from.isFile()) {
    if (existing && sameInode(existing, from)) {
      result.files += 1;
      return;
    }
    if (existing) {
      await rm(target, { recursive: true, force: true });
    }
    await link(source, target).catch((error: unknown) => {
      throw linkError(error, source, target);
    });
    result.files += 1;
  } else if (from.isSymbolicLink()) {
    // Symlinks that ship inside the installation (e.g. node's bin/npm in externals/) are
    // recreated with the same target: a relative one then resolves inside the slot root,
    // which is what the installation expects. Hard-linking the symlink inode instead
    // would need ownership of it (fs.protected_hardlinks).
    const destination = await readlink(source);
    if (existing?.isSymbolicLink() && (await readlink(target)) === destination) {
      result.symlinks += 1;
      return;
    }
    if (existing) {
      await rm(target, { recursive: true, force: true });
    }
    await symlink(destination, target);
    result.symlinks += 1;
  }
  // Sockets and FIFOs are runtime state, not part of an installation: not mirrored.
}

/** realpath of the deepest existing ancestor, plus the components that do not exist yet. */
async function realpathOfFuturePath(path: string): Promise<string> {
  const missing: string[] = [];
  let current = path;
  for (;;) {
    try {
      return join(await realpath(current), ...missing.reverse());
    } catch (error) {
      const parent = dirname(current);
      if (codeOf(error) !== 'ENOENT' || parent === current) {
        throw error;
      }
      missing.push(basename(current));
      current = parent;
    }
  }
}

function sameInode(a: Stats, b: Stats): boolean {
  return a.dev === b.dev && a.ino === b.ino;
}

function isInside(child: string, parent: string): boolean {
  const rel = relative(parent, child);
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
}

function codeOf(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : String(error);
}

function linkError(error: unknown, source: string, target: string): CbactionsError {
  const code = codeOf(error);
  if (code === 'EXDEV') {
    return new CbactionsError(
      'PRELOAD_HARDLINK_EXDEV',
      `cannot hard-link ${source} to ${target}: EXDEV, the shared runner root and the slot root are on different filesystems; put the slot roots on the filesystem of the shared root`,
      { cause: error },
    );
  }
  return new CbactionsError('PRELOAD_HARDLINK_FAILED', `cannot hard-link ${source} to ${target}: ${code}`, { cause: error });
}
