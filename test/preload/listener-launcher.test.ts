import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, expect, it } from 'vitest';
import { readProcStat } from '../../src/util/proc.js';
import { buildOnce } from './helpers.js';

/** Polls /proc (no guessed sleeps): a zombie counts as gone. */
async function waitUntilGone(pid: number, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const state = readProcStat(pid)?.state;
    if (state === undefined || state === 'Z') return;
    if (Date.now() > deadline) throw new Error(`pid ${pid} is still alive (${state}) ${timeoutMs} ms after its starter died`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function waitForCommand(pid: number, name: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let cmdline = '';
    try {
      cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    } catch {
      // not there yet, or gone
    }
    if (cmdline.split('\0')[0] === name) return;
    if (Date.now() > deadline) throw new Error(`pid ${pid} never became ${name} (cmdline ${JSON.stringify(cmdline)})`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('listener-launcher (PR_SET_PDEATHSIG for the listener)', () => {
  it('the program it runs gets SIGKILL when its starter dies by SIGKILL, even in its own session', async () => {
    const { launcherPath } = buildOnce();
    // The starter plays the mux: starts a "listener" through the launcher, detached as the mux does.
    const starter = spawn(
      process.execPath,
      ['-e', `const c = require('node:child_process').spawn(${JSON.stringify(launcherPath)}, [String(process.pid), '/bin/sleep', '1000'], { detached: true, stdio: 'ignore' }); console.log(c.pid); setInterval(() => {}, 1000);`],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const pid = await new Promise<number>((resolve) => createInterface({ input: starter.stdout }).once('line', (line) => resolve(Number(line))));
    try {
      // Exec'ed into the program: prctl has run.
      await waitForCommand(pid, '/bin/sleep');
      expect(readProcStat(pid)?.ppid).toBe(starter.pid);
      starter.kill('SIGKILL');
      await waitUntilGone(pid);
    } finally {
      starter.kill('SIGKILL');
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone, as it should be
      }
    }
  });

  it('when its starter is already gone (the pid it was given is not its parent), it kills itself and never runs the program', () => {
    const { launcherPath } = buildOnce();
    const marker = join(mkdtempSync(join(tmpdir(), 'launcher-')), 'ran');
    const result = spawnSync(launcherPath, [String(process.ppid), '/bin/sh', '-c', `touch ${marker}`]);
    expect(result.signal).toBe('SIGKILL');
    expect(existsSync(marker)).toBe(false);
  });

  it('runs the program with its arguments when the starter lives', () => {
    const { launcherPath } = buildOnce();
    const result = spawnSync(launcherPath, [String(process.pid), '/bin/sh', '-c', 'echo "$0 $1"', 'a b', 'c'], { encoding: 'utf8' });
    expect(result.status).toBe(0);
    expect(result.stdout).toBe('a b c\n');
  });

  it('refuses a malformed parent pid or a missing program with a usage error', () => {
    const { launcherPath } = buildOnce();
    for (const args of [['12x', '/bin/true'], ['-1', '/bin/true'], [String(process.pid)], []]) {
      const result = spawnSync(launcherPath, args, { encoding: 'utf8' });
      expect(result.status).toBe(64);
      expect(result.stderr).toContain('usage: listener-launcher PARENT_PID PROGRAM');
    }
    const missing = spawnSync(launcherPath, [String(process.pid), '/nonexistent/program'], { encoding: 'utf8' });
    expect(missing.status).toBe(127);
    expect(missing.stderr).toContain('cannot run /nonexistent/program');
  });
});
