/**
 * Process groups over /proc (Linux): a build's commands, or a listener with its worker,
 * run as one group, found, signalled and waited for together.
 */
import { readdirSync } from 'node:fs';
import { sleep } from './backoff.js';
import { readProcStat } from './proc.js';

/** Sends `signal` to every process of group `pgid`; false when the group is already gone. */
export function signalGroup(pgid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw error;
  }
}

/**
 * Live (non-zombie) members of a process group. Zombies count as gone: an orphan's zombie
 * waits for PID 1 to reap it, and in a container PID 1 may never do so. Reads /proc
 * (Linux); elsewhere falls back to kill(-pgid, 0), which counts zombies as alive.
 */
export function liveGroupMembers(pgid: number): number[] {
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    try {
      process.kill(-pgid, 0);
      return [pgid];
    } catch {
      return [];
    }
  }
  const members: number[] = [];
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readProcStat(Number(entry));
    if (stat && stat.pgrp === pgid && stat.state !== 'Z' && stat.state !== 'X') members.push(Number(entry));
  }
  return members;
}

export { readProcStat } from './proc.js';

/** Waits until the group has no live member; true if it emptied within `timeoutMs`. */
export async function waitGroupGone(pgid: number, timeoutMs: number, pollMs = 50): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (liveGroupMembers(pgid).length === 0) return true;
    if (Date.now() >= deadline) return false;
    await sleep(Math.min(pollMs, Math.max(1, deadline - Date.now())));
  }
}

/** SIGTERM to the group, up to `graceMs` for it to go, then SIGKILL; resolves once it is gone (bounded). */
export async function terminateGroup(pgid: number, graceMs: number): Promise<void> {
  if (!signalGroup(pgid, 'SIGTERM')) return;
  if (await waitGroupGone(pgid, graceMs)) return;
  await killGroup(pgid);
}

/** SIGKILL to the group, then a bounded wait for the kernel to finish it off. */
export async function killGroup(pgid: number): Promise<void> {
  if (!signalGroup(pgid, 'SIGKILL')) return;
  await waitGroupGone(pgid, 5_000);
}
