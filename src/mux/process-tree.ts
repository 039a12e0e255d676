/**
 * Process-group helpers over /proc (Linux, where the mux runs). A listener runs in its own
 * process group, so its worker and anything the worker starts are found, signalled and
 * waited for as one group.
 */
import { readdirSync, readFileSync } from 'node:fs';

export function signalGroup(pgid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw error;
  }
}

interface ProcStat {
  pid: number;
  state: string;
  ppid: number;
  pgrp: number;
}

function readStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // "pid (comm) state ppid pgrp ..."; comm may hold spaces and parentheses.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const ppid = Number(fields[1]);
  const pgrp = Number(fields[2]);
  if (fields[0] === undefined || !Number.isInteger(pgrp)) return undefined;
  return { pid, state: fields[0], ppid, pgrp };
}

function allPids(): number[] {
  try {
    return readdirSync('/proc')
      .filter((entry) => /^\d+$/.test(entry))
      .map(Number);
  } catch {
    return [];
  }
}

/** Live (non-zombie) members of a process group. */
export function liveGroupMembers(pgid: number): number[] {
  const members: number[] = [];
  for (const pid of allPids()) {
    const stat = readStat(pid);
    if (stat && stat.pgrp === pgid && stat.state !== 'Z' && stat.state !== 'X') members.push(pid);
  }
  return members;
}

function cmdline(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((part) => part !== '');
  } catch {
    return [];
  }
}

/**
 * Pids in the listener's group, other than the listener, whose argv has `spawnclient`
 * followed by two fd numbers: how Runner.Listener starts Runner.Worker (RUNNER-PROTOCOL §1).
 * It matches the real worker, our shim after its `exec` (`node … cbactions worker
 * spawnclient R W`) and the fake worker alike.
 */
export function workerProcesses(listenerPid: number): number[] {
  const found: number[] = [];
  for (const pid of liveGroupMembers(listenerPid)) {
    if (pid === listenerPid) continue;
    const argv = cmdline(pid);
    const at = argv.indexOf('spawnclient');
    if (at >= 0 && /^\d+$/.test(argv[at + 1] ?? '') && /^\d+$/.test(argv[at + 2] ?? '')) found.push(pid);
  }
  return found;
}
