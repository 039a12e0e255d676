/**
 * The listener's process group (Linux, where the mux runs): its worker and anything the
 * worker starts are found, signalled and waited for as one group.
 */
import { readFileSync } from 'node:fs';
import { liveGroupMembers } from '../util/process-group.js';

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
