/**
 * The built binary refuses, at load, a config that would start builds which can never
 * open their job: exit 2, the field named on stderr, for the mux and for each worker.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { exitAfterOutput } from '../support/child-exit.js';
import { CBACTIONS_BIN } from '../support/runner-root.js';

function s3ConfigWithoutRoleId(): { dir: string; path: string } {
  const dir = mkdtempSync(join(tmpdir(), 'runtime-config-'));
  const path = join(dir, 'cbactions.yml');
  writeFileSync(
    path,
    [
      'github: { scope: { organization: octo }, auth: { token: { env: GITHUB_TOKEN } } }',
      'codebuild: { projectName: cbactions, region: us-east-1 }',
      'payloads: { key: { kms: { keyId: alias/cbactions } }, store: { s3: { bucket: cbactions-payloads } } }',
      'pools: [ { name: default, labels: [cbactions] } ]',
      '',
    ].join('\n'),
  );
  return { dir, path };
}

async function run(args: string[], env: NodeJS.ProcessEnv, extraFds: number): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, [CBACTIONS_BIN, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'ignore', 'pipe', ...Array.from({ length: extraFds }, () => 'pipe' as const)],
  });
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const { code } = await exitAfterOutput(child);
  clearTimeout(timer);
  return { code, stderr };
}

describe('an S3/KMS payload config without role ids fails at load', () => {
  it('cbactions worker: exit 2 and one line naming codebuild.buildRoleId, before any build', async () => {
    const { dir, path } = s3ConfigWithoutRoleId();
    const result = await run(['worker', 'spawnclient', '3', '4'], { CBACTIONS_CONFIG: path, CBACTIONS_POOL: 'default', CBACTIONS_WORKER_LOG: join(dir, 'worker.log'), CBACTIONS_RUNNER_ROOT: dir }, 2);
    expect(result.code).toBe(2);
    // One line: the listener shows it on the failed job.
    const lines = result.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(new RegExp(`^cbactions: the job could not be started: config file ${path} is invalid: codebuild\\.buildRoleId: required: pool "default" runs as the project's service role.*\\(CONFIG_INVALID\\)$`));
  });

  it('cbactions mux: exit 2 and mux.failed naming codebuild.buildRoleId', async () => {
    const { path } = s3ConfigWithoutRoleId();
    const result = await run(['mux', '--config', path], { CBACTIONS_CONFIG: '' }, 0);
    expect(result.code).toBe(2);
    const failure = result.stderr
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as { event?: string; code?: string; error?: string })
      .find((record) => record.event === 'mux.failed');
    expect(failure).toMatchObject({ code: 'CONFIG_INVALID' });
    expect(failure?.error).toMatch(/codebuild\.buildRoleId: required: pool "default" runs as the project's service role/);
  });
});
