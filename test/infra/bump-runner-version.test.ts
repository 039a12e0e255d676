import { execFile } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from './helpers.js';

const run = promisify(execFile);
const SCRIPT = join(ROOT, 'scripts', 'bump-runner-version.mjs');
const X64 = '1'.repeat(64);
const ARM = '2'.repeat(64);

/** A release as GitHub's API returns it (the fields the script reads). */
function release(version: string, options: { arm?: string | null; armDigest?: string } = {}) {
  const arm = options.arm === undefined ? ARM : options.arm;
  return {
    tag_name: `v${version}`,
    body: [
      '## SHA-256 Checksums',
      `- actions-runner-linux-x64-${version}.tar.gz <!-- BEGIN SHA linux-x64 -->${X64}<!-- END SHA linux-x64 -->`,
      ...(arm === null ? [] : [`- actions-runner-linux-arm64-${version}.tar.gz <!-- BEGIN SHA linux-arm64 -->${arm}<!-- END SHA linux-arm64 -->`]),
    ].join('\n'),
    assets: [
      { name: `actions-runner-linux-x64-${version}.tar.gz`, digest: `sha256:${X64}` },
      { name: `actions-runner-linux-arm64-${version}.tar.gz`, ...(options.armDigest === undefined ? {} : { digest: `sha256:${options.armDigest}` }) },
    ],
  };
}

const RELEASES: Record<string, unknown> = {
  '/repos/actions/runner/releases/tags/v2.400.0': release('2.400.0'),
  '/repos/actions/runner/releases/latest': release('2.401.1'),
  '/repos/actions/runner/releases/tags/v2.402.0': release('2.402.0', { arm: null }),
  '/repos/actions/runner/releases/tags/v2.403.0': release('2.403.0', { armDigest: '3'.repeat(64) }),
};

let server: Server;
let api: string;
beforeAll(async () => {
  server = createServer((request, response) => {
    const body = RELEASES[request.url ?? ''];
    if (body === undefined) response.writeHead(404).end('{}');
    else response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  });
  await new Promise<void>((resolveListen) => server.listen(0, '127.0.0.1', resolveListen));
  api = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((resolveClose) => server.close(() => resolveClose())));

/** A copy of docker/'s version and checksum files to bump. */
function dockerDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'bump-'));
  copyFileSync(join(ROOT, 'docker', 'runner-version'), join(dir, 'runner-version'));
  copyFileSync(join(ROOT, 'docker', 'runner-checksums.txt'), join(dir, 'runner-checksums.txt'));
  return dir;
}

async function bump(dir: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [SCRIPT, ...args, '--docker-dir', dir], { env: { ...process.env, GITHUB_API_URL: api, GITHUB_TOKEN: '' } });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failure = error as { code: number; stdout: string; stderr: string };
    return { code: failure.code, stdout: failure.stdout, stderr: failure.stderr };
  }
}

describe('scripts/bump-runner-version.mjs', () => {
  it('writes the version and adds its checksums, keeping the previous version\'s lines', async () => {
    const dir = dockerDir();
    const before = readFileSync(join(dir, 'runner-checksums.txt'), 'utf8');
    const previous = readFileSync(join(dir, 'runner-version'), 'utf8').trim();
    const result = await bump(dir, ['2.400.0']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(readFileSync(join(dir, 'runner-version'), 'utf8')).toBe('2.400.0\n');
    const after = readFileSync(join(dir, 'runner-checksums.txt'), 'utf8');
    expect(after).toContain(`${X64}  actions-runner-linux-x64-2.400.0.tar.gz\n`);
    expect(after).toContain(`${ARM}  actions-runner-linux-arm64-2.400.0.tar.gz\n`);
    for (const line of before.split('\n').filter((text) => /^[0-9a-f]{64} /.test(text))) expect(after).toContain(line);
    expect(after.indexOf('2.400.0')).toBeLessThan(after.indexOf(previous));
  });

  it('is idempotent', async () => {
    const dir = dockerDir();
    await bump(dir, ['2.400.0']);
    const once = readFileSync(join(dir, 'runner-checksums.txt'), 'utf8');
    await bump(dir, ['2.400.0']);
    expect(readFileSync(join(dir, 'runner-checksums.txt'), 'utf8')).toBe(once);
  });

  it('takes the latest release without a version', async () => {
    const dir = dockerDir();
    expect((await bump(dir, [])).code).toBe(0);
    expect(readFileSync(join(dir, 'runner-version'), 'utf8')).toBe('2.401.1\n');
  });

  it('fails, changing nothing, when the release notes lack a checksum', async () => {
    const dir = dockerDir();
    const result = await bump(dir, ['2.402.0']);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('no SHA-256 for linux-arm64');
    expect(readFileSync(join(dir, 'runner-version'), 'utf8')).toBe(readFileSync(join(ROOT, 'docker', 'runner-version'), 'utf8'));
  });

  it('fails when the notes and the asset digest disagree', async () => {
    const dir = dockerDir();
    const result = await bump(dir, ['2.403.0']);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("the asset's digest is 3333");
  });

  it('fails on an unknown release', async () => {
    const result = await bump(dockerDir(), ['9.9.9']);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('404');
  });
});
