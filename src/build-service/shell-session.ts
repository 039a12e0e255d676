import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { shellQuote } from '../util/shell.js';

/**
 * One build's commands as one shell session (buildspec 0.2: "all build commands run in the
 * same instance of the default shell"): variables, exported or not, and the working
 * directory carry over from command to command and phase to phase.
 *
 * How: a small leader shell, started in its own process group, runs each command as a
 * child script, so every process of the build shares the leader's group and one signal
 * reaches them all. Each script first restores the session (exports, unsets, plain
 * variables, cwd), runs the command, and on EXIT dumps the session back (NUL-separated,
 * so any value survives). A command can therefore `exit`, `set -e` or read stdin without
 * breaking the session, which a single long-lived shell reading commands could not offer.
 * Not carried over: shell functions, aliases, arrays (first element only), traps, options;
 * variables whose names are not shell identifiers (dash drops them from the environment).
 */

export interface ShellSessionOptions {
  /** The build's shell: `bash` or `/bin/sh`. */
  shell: string;
  /** The environment the build starts with. */
  env: Record<string, string>;
  cwd: string;
  /** Commands' stdout and stderr are appended here. */
  logPath: string;
  /** A private directory for command scripts and session dumps (they hold variable values). */
  workDir: string;
}

export interface CommandResult {
  /** The command's exit status (128+N when killed by signal N), or null when the session ended under it. */
  exitCode: number | null;
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** Exported names that belong to the shell itself, not to the session. */
const SHELL_OWNED_ENV = new Set(['_', 'PWD', 'OLDPWD', 'SHLVL']);
/**
 * Shell variables that are the shell's own (many read-only in bash: assigning one would
 * abort the restoring script), never carried over as plain variables.
 */
const SHELL_OWNED_VARIABLE =
  /^(BASH.*|EUID|UID|PPID|SHELLOPTS|GROUPS|HISTCMD|LINENO|RANDOM|SRANDOM|SECONDS|FUNCNAME|DIRSTACK|PIPESTATUS|EPOCHREALTIME|EPOCHSECONDS|COMP_.*|_|PWD|OLDPWD|SHLVL|OPTIND|OPTARG|OPTERR|PS[0-9]|IFS|HOSTTYPE|MACHTYPE|OSTYPE|HOSTNAME|HISTFILE|HISTFILESIZE|HISTSIZE|MAILCHECK|COLUMNS|LINES|__cb_.*)$/;

/** Names a restoring script must never assign or unset (read-only in bash, or the shell's to manage). */
function shellManaged(name: string): boolean {
  return !IDENTIFIER.test(name) || SHELL_OWNED_ENV.has(name) || /^(BASH.*|EUID|UID|PPID|SHELLOPTS|GROUPS|FUNCNAME|__cb_.*)$/.test(name);
}

/** Runs each script line it reads, as a child (same process group), and reports its status on fd 3. */
const LEADER_SCRIPT = 'while IFS= read -r __cb_script; do "$1" "$__cb_script" </dev/null 3>&-; echo "$?" >&3; done';

/** Appended to every command script: dump the session when the command's shell exits, keep its status. */
const DUMP_TRAP = `__cb_dump() {
  __cb_rc=$?
  set +e +u +x
  trap - EXIT
  pwd > "$__cb_state.cwd"
  command env -0 > "$__cb_state.env"
  set | command sed -n 's/^\\([A-Za-z_][A-Za-z0-9_]*\\)=.*/\\1/p' | while IFS= read -r __cb_n; do
    eval "__cb_set=\\\${$__cb_n+x}; __cb_v=\\\${$__cb_n-}"
    if [ "$__cb_set" = x ]; then printf '%s\\0%s\\0' "$__cb_n" "$__cb_v"; fi
  done > "$__cb_state.vars"
  exit "$__cb_rc"
}
trap __cb_dump EXIT
`;


export class ShellSession {
  /** The build's process group (the leader's pid). */
  readonly pgid: number;
  /** Resolves when the leader has exited. */
  readonly exited: Promise<void>;
  private readonly leader: ChildProcess;
  private readonly initialEnv: Record<string, string>;
  private exported: Map<string, string>;
  private locals = new Map<string, string>();
  private cwd: string;
  private counter = 0;
  private statusBuffer = '';
  private readonly waiting: ((exitCode: number | null) => void)[] = [];
  private leaderGone = false;
  private busy = false;

  private constructor(private readonly options: ShellSessionOptions) {
    this.initialEnv = { ...options.env };
    this.exported = new Map(Object.entries(options.env));
    this.cwd = options.cwd;
    const logFd = openSync(options.logPath, 'a');
    try {
      this.leader = spawn('/bin/sh', ['-c', LEADER_SCRIPT, 'cbactions-build', options.shell], {
        cwd: options.cwd,
        env: options.env,
        stdio: ['pipe', logFd, logFd, 'pipe'],
        // Its own process group: StopBuild and timeouts signal the whole build at once.
        detached: true,
      });
    } finally {
      closeSync(logFd);
    }
    if (this.leader.pid === undefined) throw new Error(`cannot start the build shell /bin/sh`);
    this.pgid = this.leader.pid;
    const statusPipe = this.leader.stdio[3] as Readable;
    statusPipe.setEncoding('utf8');
    statusPipe.on('data', (chunk: string) => this.onStatus(chunk));
    statusPipe.on('error', () => undefined);
    this.leader.stdin?.on('error', () => undefined);
    this.exited = new Promise((resolve) => {
      this.leader.once('exit', () => {
        this.leaderGone = true;
        for (const waiter of this.waiting.splice(0)) waiter(null);
        resolve();
      });
    });
  }

  static start(options: ShellSessionOptions): ShellSession {
    return new ShellSession(options);
  }

  /** A variable's current value in the session (exported first, then plain). */
  variable(name: string): string | undefined {
    return this.exported.get(name) ?? this.locals.get(name);
  }

  /** Sets an exported variable for the next commands (e.g. CODEBUILD_BUILD_SUCCEEDING). */
  setVariable(name: string, value: string): void {
    this.locals.delete(name);
    this.exported.set(name, value);
  }

  /** Runs one command to its end. Commands run one at a time. */
  async run(command: string): Promise<CommandResult> {
    if (this.busy) throw new Error('a command is already running in this build');
    if (this.leaderGone) return { exitCode: null };
    this.busy = true;
    const n = ++this.counter;
    const script = join(this.options.workDir, `command-${n}.sh`);
    const state = join(this.options.workDir, `command-${n}`);
    try {
      await writeFile(script, `${this.prologue(state)}${command}\n`, { mode: 0o600 });
      // The leader may have been killed while the script was written: nothing would answer.
      if (this.leaderGone) return { exitCode: null };
      const status = new Promise<number | null>((resolve) => this.waiting.push(resolve));
      this.leader.stdin?.write(`${script}\n`);
      const exitCode = await status;
      await this.absorbDump(state);
      return { exitCode };
    } finally {
      this.busy = false;
      await Promise.all([script, `${state}.cwd`, `${state}.env`, `${state}.vars`].map((path) => rm(path, { force: true })));
    }
  }

  /** Lets the leader finish (end of input); its group may still hold background processes. */
  endInput(): void {
    this.leader.stdin?.end();
  }

  get isRunning(): boolean {
    return !this.leaderGone;
  }

  private onStatus(chunk: string): void {
    this.statusBuffer += chunk;
    let newline: number;
    while ((newline = this.statusBuffer.indexOf('\n')) >= 0) {
      const line = this.statusBuffer.slice(0, newline).trim();
      this.statusBuffer = this.statusBuffer.slice(newline + 1);
      const code = Number.parseInt(line, 10);
      this.waiting.shift()?.(Number.isNaN(code) ? null : code);
    }
  }

  /** Shell text that puts the session back as the previous command left it. */
  private prologue(statePath: string): string {
    const lines: string[] = [];
    for (const name of Object.keys(this.initialEnv)) {
      if (!shellManaged(name) && !this.exported.has(name)) lines.push(`unset ${name}`);
    }
    for (const [name, value] of this.exported) {
      if (!shellManaged(name) && this.initialEnv[name] !== value) lines.push(`export ${name}=${shellQuote(value)}`);
    }
    for (const [name, value] of this.locals) lines.push(`${name}=${shellQuote(value)}`);
    lines.push(`cd -- ${shellQuote(this.cwd)} || exit 1`);
    lines.push(`__cb_state=${shellQuote(statePath)}`);
    return `${lines.join('\n')}\n${DUMP_TRAP}`;
  }

  /** Reads what the command's EXIT trap dumped; a command that replaced the trap leaves the session as it was. */
  private async absorbDump(statePath: string): Promise<void> {
    let envText: string;
    let varsText: string;
    let cwdText: string;
    try {
      [envText, varsText, cwdText] = await Promise.all([
        readFile(`${statePath}.env`, 'utf8'),
        readFile(`${statePath}.vars`, 'utf8'),
        readFile(`${statePath}.cwd`, 'utf8'),
      ]);
    } catch {
      return;
    }
    const exported = new Map<string, string>();
    for (const entry of envText.split('\0')) {
      const eq = entry.indexOf('=');
      if (eq <= 0) continue;
      const name = entry.slice(0, eq);
      if (SHELL_OWNED_ENV.has(name) || name.startsWith('__cb_')) continue;
      exported.set(name, entry.slice(eq + 1));
    }
    // Names the shell cannot express (not identifiers) stay as the leader passes them on.
    for (const [name, value] of this.exported) if (!IDENTIFIER.test(name) && !exported.has(name)) exported.set(name, value);
    const locals = new Map<string, string>();
    const parts = varsText.split('\0');
    for (let i = 0; i + 1 < parts.length; i += 2) {
      const name = parts[i] as string;
      if (!IDENTIFIER.test(name) || SHELL_OWNED_VARIABLE.test(name) || exported.has(name) || SHELL_OWNED_ENV.has(name)) continue;
      locals.set(name, parts[i + 1] as string);
    }
    this.exported = exported;
    this.locals = locals;
    const cwd = cwdText.endsWith('\n') ? cwdText.slice(0, -1) : cwdText;
    if (cwd !== '') this.cwd = cwd;
  }
}
