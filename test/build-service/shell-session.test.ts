import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ShellSession } from '../../src/build-service/shell-session.js';

// The "one shell session" guarantee, for both shells a buildspec may name.

describe.each(['/bin/sh', 'bash'])('ShellSession with %s', (shell) => {
  function start(): { session: ShellSession; log: () => string; dir: string } {
    const dir = mkdtempSync(join(tmpdir(), 'cbactions-shell-'));
    const logPath = join(dir, 'build.log');
    const session = ShellSession.start({
      shell,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', KEEP: 'kept', DROP: 'dropped' },
      cwd: dir,
      logPath,
      workDir: dir,
    });
    return { session, dir, log: () => readFileSync(logPath, 'utf8') };
  }

  it('carries variables, exports, unsets and the directory from command to command', async () => {
    const { session, log, dir } = start();
    const tricky = `it's "quoted" $HOME \\ and\nnew line`;
    expect((await session.run(`PLAIN=p; export EXPORTED='x'; mkdir -p a/b && cd a; unset DROP`)).exitCode).toBe(0);
    session.setVariable('INJECTED', tricky);
    expect((await session.run('cd b; echo "plain=$PLAIN exported=$EXPORTED keep=$KEEP drop=${DROP-unset}"')).exitCode).toBe(0);
    expect((await session.run('pwd; printf "%s|" "$INJECTED"; env | grep -c "^PLAIN=" || true')).exitCode).toBe(0);
    expect(session.variable('PLAIN')).toBe('p');
    expect(session.variable('EXPORTED')).toBe('x');
    expect(session.variable('DROP')).toBeUndefined();
    expect(session.variable('INJECTED')).toBe(tricky);
    expect(log()).toContain('plain=p exported=x keep=kept drop=unset');
    expect(log()).toContain(`${dir}/a/b\n${tricky}|0\n`);
    session.endInput();
    await session.exited;
  });

  it('reports exit statuses, survives exit and set -e, and gives commands no stdin', async () => {
    const { session, log } = start();
    expect((await session.run('V=before; exit 7')).exitCode).toBe(7);
    expect(session.variable('V')).toBe('before');
    expect((await session.run('set -e; false; echo unreachable')).exitCode).toBe(1);
    expect((await session.run('read line || echo "no stdin"; echo "V=$V"')).exitCode).toBe(0);
    expect((await session.run('this-command-does-not-exist')).exitCode).toBe(127);
    expect(log()).toContain('no stdin\nV=before');
    expect(log()).not.toContain('unreachable');
    session.endInput();
    await session.exited;
  });

  it('runs every command in the leader’s process group', async () => {
    const { session, dir } = start();
    await session.run(`ps -o pgid= -p $$ > "${dir}/pgid"`);
    expect(Number(readFileSync(join(dir, 'pgid'), 'utf8').trim())).toBe(session.pgid);
    session.endInput();
    await session.exited;
  });
});
