/**
 * One Runner.Listener child: own process group, stdout/stderr read line by line, "done"
 * only after `exit` AND stdio `close` (bounded: a worker that outlives a killed listener
 * may hold the pipes open), stop = SIGTERM to the group, bounded wait, SIGKILL.
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { liveGroupMembers, signalGroup } from '../util/process-group.js';
import { workerProcesses } from './process-tree.js';

export interface ListenerExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Set when the executable could not be started at all. */
  spawnError?: string;
}

export interface StartListenerOptions {
  file: string;
  args: string[];
  cwd: string;
  env: NodeJS.ProcessEnv;
  onLine?: (stream: 'stdout' | 'stderr', line: string) => void;
  /** After `exit`, how long to wait for stdio to close; default 2 s. */
  closeGraceMs?: number;
  /**
   * `listener-launcher` (src/preload/listener-launcher.c): when set, the program runs through
   * it and gets SIGKILL when this process dies, even by SIGKILL. Without it a listener of a
   * mux that died hard lives on (own process group) and keeps taking jobs.
   */
  launcher?: string;
}

const KILL_WAIT_MS = 5_000;

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export class ListenerProcess {
  readonly pid: number | undefined;
  readonly done: Promise<ListenerExitInfo>;
  #exited = false;

  private constructor(options: StartListenerOptions) {
    const [file, args] = options.launcher === undefined ? [options.file, options.args] : [options.launcher, [String(process.pid), options.file, ...options.args]];
    const child = spawn(file, args, {
      cwd: options.cwd,
      env: options.env,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.pid = child.pid;
    const onLine = options.onLine ?? (() => undefined);
    for (const [name, stream] of [
      ['stdout', child.stdout],
      ['stderr', child.stderr],
    ] as const) {
      createInterface({ input: stream, crlfDelay: Infinity }).on('line', (line) => onLine(name, line));
    }
    const closeGraceMs = options.closeGraceMs ?? 2_000;
    this.done = new Promise<ListenerExitInfo>((resolve) => {
      let exitInfo: ListenerExitInfo | undefined;
      let closeTimer: NodeJS.Timeout | undefined;
      const finish = () => {
        clearTimeout(closeTimer);
        this.#exited = true;
        resolve(exitInfo ?? { code: null, signal: null });
      };
      child.once('error', (error) => {
        exitInfo = { code: null, signal: null, spawnError: error.message };
        // A spawn failure emits no 'exit'; 'close' still follows.
        closeTimer = setTimeout(finish, closeGraceMs);
      });
      child.once('exit', (code, signal) => {
        exitInfo = { code, signal };
        this.#exited = true;
        closeTimer = setTimeout(finish, closeGraceMs);
      });
      child.once('close', finish);
    });
  }

  static start(options: StartListenerOptions): ListenerProcess {
    return new ListenerProcess(options);
  }

  get exited(): boolean {
    return this.#exited;
  }

  /** A Runner.Worker is running under this listener right now. */
  hasWorker(): boolean {
    if (this.pid === undefined || this.#exited) return false;
    return workerProcesses(this.pid).length > 0;
  }

  /** SIGTERM to the group, up to `graceMs` for the listener to finish, then SIGKILL to the group. */
  async stop(graceMs: number): Promise<ListenerExitInfo> {
    if (this.pid !== undefined && !this.#exited) {
      signalGroup(this.pid, 'SIGTERM');
      const timer = delay(graceMs).then(() => 'timeout' as const);
      const outcome = await Promise.race([this.done.then(() => 'done' as const), timer]);
      if (outcome === 'timeout') signalGroup(this.pid, 'SIGKILL');
    }
    const info = await Promise.race([this.done, delay(KILL_WAIT_MS).then(() => ({ code: null, signal: 'SIGKILL' as NodeJS.Signals }))]);
    // Whatever the listener left in its group (a worker it did not reap) goes too.
    if (this.pid !== undefined && liveGroupMembers(this.pid).length > 0) signalGroup(this.pid, 'SIGKILL');
    return info;
  }
}
