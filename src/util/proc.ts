import { readFileSync } from 'node:fs';

export interface ProcStat {
  pid: number;
  /** R, S, D, Z, T, …: Z (zombie) counts as gone for callers that wait for exits. */
  state: string;
  ppid: number;
  pgrp: number;
  /** Field 22, clock ticks after boot: with the pid, names a process for good (pids are reused). */
  startTime: string | undefined;
}

/** A pid's state, parent and process group from /proc/<pid>/stat, or undefined if it is gone. */
export function readProcStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const ppid = Number(fields[1]);
  const pgrp = Number(fields[2]);
  if (fields[0] === undefined || !Number.isInteger(pgrp) || !Number.isInteger(ppid)) return undefined;
  // starttime is the 20th field after comm.
  const startTime = fields[19] !== undefined && /^\d+$/.test(fields[19]) ? fields[19] : undefined;
  return { pid, state: fields[0], ppid, pgrp, startTime };
}
