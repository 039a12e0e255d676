import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { shellQuote } from '../../src/util/shell.js';
import { FALLBACK_FILE, installWorkerShim, NATIVE_SHIM_MARKER, SHIM_MARKER, shimScript } from '../../src/worker/install.js';
import { buildOnce, cleanupAll } from '../preload/helpers.js';
import { CBACTIONS_BIN } from '../support/runner-root.js';

afterAll(() => cleanupAll());

function runnerRoot(original?: string): string {
  const root = mkdtempSync(join(tmpdir(), 'install-'));
  mkdirSync(join(root, 'bin'));
  if (original !== undefined) {
    writeFileSync(join(root, 'bin', 'Runner.Worker'), original);
    chmodSync(join(root, 'bin', 'Runner.Worker'), 0o755);
  }
  return root;
}

describe('install-worker', () => {
  it('puts the native shim in as Runner.Worker, the script as Runner.Worker.fallback, and keeps the original once', async () => {
    const native = buildOnce().workerShimPath;
    const root = runnerRoot('ELF-original');
    const shim = join(root, 'bin', 'Runner.Worker');
    const fallback = join(root, 'bin', FALLBACK_FILE);
    const first = await installWorkerShim(root, '/usr/bin/node', "/opt/it's here/cbactions", native);
    expect(first).toEqual({ shimPath: shim, fallbackPath: fallback, keptOriginal: `${shim}.orig` });
    const second = await installWorkerShim(root, '/usr/bin/node', '/opt/cbactions', native);
    expect(second.keptOriginal).toBeUndefined();
    expect(readFileSync(`${shim}.orig`, 'utf8')).toBe('ELF-original');
    expect(readFileSync(shim).equals(readFileSync(native))).toBe(true);
    expect(readFileSync(shim, 'latin1')).toContain(NATIVE_SHIM_MARKER);
    expect(readFileSync(fallback, 'utf8')).toBe(shimScript('/usr/bin/node', '/opt/cbactions'));
    expect(readFileSync(fallback, 'utf8')).toContain(SHIM_MARKER);
    expect(readFileSync(fallback, 'utf8')).toContain(`exec '/usr/bin/node' --no-warnings '/opt/cbactions' worker "$@"`);
    for (const file of [shim, fallback]) expect(statSync(file).mode & 0o777, file).toBe(0o755);
    // No temporary file left behind.
    expect(existsSync(`${shim}.cbactions-tmp`) || existsSync(`${fallback}.cbactions-tmp`)).toBe(false);
  });

  it('recognises the script shim of an older install as its own (upgrades it, keeps the real .orig)', async () => {
    const root = runnerRoot(shimScript('/usr/bin/node', '/old/cbactions'));
    writeFileSync(join(root, 'bin', 'Runner.Worker.orig'), 'ELF-original');
    const result = await installWorkerShim(root, '/usr/bin/node', '/new/cbactions', buildOnce().workerShimPath);
    expect(result.keptOriginal).toBeUndefined();
    expect(readFileSync(join(root, 'bin', 'Runner.Worker.orig'), 'utf8')).toBe('ELF-original');
    expect(readFileSync(join(root, 'bin', 'Runner.Worker'), 'latin1')).toContain(NATIVE_SHIM_MARKER);
  });

  it('refuses when the native shim is not built, naming the file and npm run build, and leaves the runner alone', async () => {
    const root = runnerRoot('ELF-original');
    const missing = join(root, 'dist', 'preload', 'worker-shim');
    const refused = installWorkerShim(root, '/n', '/c', missing);
    await expect(refused).rejects.toMatchObject({ code: 'INSTALL_SHIM_NOT_BUILT' });
    await expect(refused).rejects.toThrow(`the native worker shim ${missing} does not exist: run "npm run build"`);
    expect(readFileSync(join(root, 'bin', 'Runner.Worker'), 'utf8')).toBe('ELF-original');
    expect(existsSync(join(root, 'bin', 'Runner.Worker.orig'))).toBe(false);
    expect(existsSync(join(root, 'bin', FALLBACK_FILE))).toBe(false);
  });

  it('refuses a file that is not the cbactions shim as the native shim', async () => {
    const root = runnerRoot();
    const impostor = join(root, 'worker-shim');
    writeFileSync(impostor, '#!/bin/sh\n');
    await expect(installWorkerShim(root, '/n', '/c', impostor)).rejects.toMatchObject({ code: 'INSTALL_SHIM_NOT_BUILT' });
  });

  it('quotes for /bin/sh', () => {
    expect(execFileSync('/bin/sh', ['-c', `printf %s ${shellQuote("a'b $HOME \"c\"")}`]).toString()).toBe("a'b $HOME \"c\"");
  });

  it('refuses a directory that is not a runner installation', async () => {
    await expect(installWorkerShim(mkdtempSync(join(tmpdir(), 'noroot-')), '/n', '/c', buildOnce().workerShimPath)).rejects.toMatchObject({ code: 'INSTALL_NO_BIN' });
  });

  it('works as a command on the built binary: the native shim checks argv, and without a mux runs cbactions worker', () => {
    const root = runnerRoot();
    const out = execFileSync(CBACTIONS_BIN, ['install-worker', root]).toString();
    expect(out).toContain(join(root, 'bin', 'Runner.Worker'));
    expect(out).toContain(join(root, 'bin', FALLBACK_FILE));
    const shim = join(root, 'bin', 'Runner.Worker');
    // Wrong argv: the native shim explains in one stderr line (what the GitHub UI shows), exit 1 as the real worker.
    const usage = spawnSync(shim, ['oops', '3', '4'], { encoding: 'utf8' });
    expect(usage.status).toBe(1);
    expect(usage.stderr).toMatch(/^cbactions: the job could not be started: expected "spawnclient", got "oops" \(WORKER_USAGE\)\n$/);
    // No mux: the fallback script runs `cbactions worker`, which finds no config here.
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, CBACTIONS_CONFIG: join(root, 'no-such-config.yaml'), CBACTIONS_WORKER_LOG: join(root, 'worker.log') };
    const fallback = spawnSync(shim, ['spawnclient', '3', '4'], { encoding: 'utf8', env, stdio: ['ignore', 'pipe', 'pipe', 'pipe', 'pipe'], timeout: 60_000 });
    expect(fallback.stderr).toMatch(/^cbactions: the job could not be started: .*no-such-config\.yaml.*\n$/);
    expect(fallback.status).toBe(2);
  });
});
