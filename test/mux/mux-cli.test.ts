/** `cbactions mux` refusing to start: each failure exits with its code and names what to fix. */
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startFakeGitHub, type FakeGitHub } from '../support/fake-github.js';
import { CBACTIONS_BIN } from '../support/runner-root.js';
import { makeMuxRunnerRoot, muxConfig, writeConfig, type LogRecord } from './helpers.js';

function runMux(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; records: LogRecord[]; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CBACTIONS_BIN, 'mux', ...args], { env: { ...process.env, CBACTIONS_CONFIG: '', ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      const records = stderr
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line) as LogRecord);
      resolve({ code, records, stderr });
    });
  });
}

describe('cbactions mux: start-up failures', () => {
  let fake: FakeGitHub | undefined;
  afterEach(async () => {
    await fake?.stop();
    fake = undefined;
  });

  it('without a config file: exit 2', async () => {
    const result = await runMux([]);
    expect(result.code).toBe(2);
    expect(result.records.find((record) => record.event === 'mux.usage')?.error).toMatch(/--config FILE is required \(or CBACTIONS_CONFIG\)/);
  });

  it('an invalid config: exit 2, every problem named by its field', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mux-cli-'));
    const path = join(dir, 'bad.yml');
    writeFileSync(path, 'github:\n  scope: { organization: "has space" }\n  auth: { token: { env: T } }\ncodebuild: { projectName: p1 }\npayloads: { key: { local: { file: k } }, store: { local: { dir: d } } }\npools: [{ name: linux, labels: [x] }]\nmux: { isolation: chroot }\n');
    const result = await runMux(['--config', path]);
    expect(result.code).toBe(2);
    const message = String(result.records.find((record) => record.event === 'mux.failed')?.error);
    expect(message).toContain('github.scope');
    expect(message).toContain('mux.isolation');
  });

  it('the config named by CBACTIONS_CONFIG, with a token GitHub refuses: exit 1, naming the call, not the token', async () => {
    fake = await startFakeGitHub({ tokens: ['ghp_the_right_one'] });
    const dir = mkdtempSync(join(tmpdir(), 'mux-cli-'));
    const path = writeConfig(dir, muxConfig({ fake, runnerRoot: makeMuxRunnerRoot(join(dir, 'runner')), stateDir: join(dir, 'state'), scope: { organization: 'octo' }, pools: [{ name: 'p', labels: ['p'], slots: 1 }], mux: { isolation: 'hardlink' } }));
    const result = await runMux([], { CBACTIONS_CONFIG: path, FAKE_GH_TOKEN: 'ghp_wrong_one' });
    expect(result.code).toBe(1);
    const failure = result.records.find((record) => record.event === 'mux.failed');
    expect(failure).toMatchObject({ code: 'GITHUB_AUTH' });
    expect(String(failure?.error)).toMatch(/list runner groups of organization octo: HTTP 401/);
    expect(result.stderr).not.toContain('ghp_wrong_one');
  });

  it('an unknown runner group: exit 2, naming github.runnerGroup', async () => {
    fake = await startFakeGitHub({ tokens: ['ghp_fake_test_token'] });
    const dir = mkdtempSync(join(tmpdir(), 'mux-cli-'));
    const path = writeConfig(dir, muxConfig({ fake, runnerRoot: makeMuxRunnerRoot(join(dir, 'runner')), stateDir: join(dir, 'state'), scope: { organization: 'octo' }, github: { runnerGroup: 'missing' }, pools: [{ name: 'p', labels: ['p'], slots: 1 }], mux: { isolation: 'hardlink' } }));
    const result = await runMux(['--config', path], { FAKE_GH_TOKEN: 'ghp_fake_test_token' });
    expect(result.code).toBe(2);
    expect(String(result.records.find((record) => record.event === 'mux.failed')?.error)).toMatch(/^github\.runnerGroup: no runner group "missing" in organization octo; it has: Default \(1\)$/);
    expect(fake.runners.size).toBe(0);
  });
});
