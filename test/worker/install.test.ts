import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { shellQuote } from '../../src/util/shell.js';
import { installWorkerShim, SHIM_MARKER } from '../../src/worker/install.js';
import { CBACTIONS_BIN } from '../support/runner-root.js';

describe('install-worker', () => {
  it('replaces Runner.Worker with an executable shim and keeps the original once', async () => {
    const root = mkdtempSync(join(tmpdir(), 'install-'));
    execFileSync('mkdir', ['-p', join(root, 'bin')]);
    writeFileSync(join(root, 'bin', 'Runner.Worker'), 'ELF-original');
    chmodSync(join(root, 'bin', 'Runner.Worker'), 0o755);
    const first = await installWorkerShim(root, '/usr/bin/node', "/opt/it's here/cbactions");
    expect(first.keptOriginal).toBe(join(root, 'bin', 'Runner.Worker.orig'));
    const second = await installWorkerShim(root, '/usr/bin/node', '/opt/cbactions');
    expect(second.keptOriginal).toBeUndefined();
    expect(readFileSync(join(root, 'bin', 'Runner.Worker.orig'), 'utf8')).toBe('ELF-original');
    const shim = readFileSync(join(root, 'bin', 'Runner.Worker'), 'utf8');
    expect(shim).toContain(SHIM_MARKER);
    expect(shim).toContain(`exec '/usr/bin/node' --no-warnings '/opt/cbactions' worker "$@"`);
    expect(statSync(join(root, 'bin', 'Runner.Worker')).mode & 0o777).toBe(0o755);
  });

  it('quotes for /bin/sh', () => {
    expect(execFileSync('/bin/sh', ['-c', `printf %s ${shellQuote("a'b $HOME \"c\"")}`]).toString()).toBe("a'b $HOME \"c\"");
  });

  it('refuses a directory that is not a runner installation', async () => {
    await expect(installWorkerShim(mkdtempSync(join(tmpdir(), 'noroot-')), '/n', '/c')).rejects.toMatchObject({ code: 'INSTALL_NO_BIN' });
  });

  it('works as a command on the built binary, and the shim runs cbactions worker', () => {
    const root = mkdtempSync(join(tmpdir(), 'install-cli-'));
    execFileSync('mkdir', ['-p', join(root, 'bin')]);
    const out = execFileSync(CBACTIONS_BIN, ['install-worker', root]).toString();
    expect(out).toContain(join(root, 'bin', 'Runner.Worker'));
    // Wrong argv: the worker explains on stderr (what the GitHub UI would show) and exits invalid.
    let status = 0;
    let stderr = '';
    try {
      execFileSync(join(root, 'bin', 'Runner.Worker'), ['oops', '3', '4'], { stdio: 'pipe' });
    } catch (error) {
      status = (error as { status: number }).status;
      stderr = String((error as { stderr: Buffer }).stderr);
    }
    expect(status).toBe(2);
    expect(stderr.trim().split('\n')).toHaveLength(1);
    expect(stderr).toMatch(/^cbactions: the job could not be started: expected "spawnclient"/);
  });
});
