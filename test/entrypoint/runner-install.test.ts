import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureRunnerInstalled } from '../../src/entrypoint/runner-install.js';
import { makeFakeRunnerRoot, PROJECT_ROOT } from '../support/runner-root.js';

const silent = pino({ level: 'silent' });
const INSTALLER = join(PROJECT_ROOT, 'docker', 'install-runner.sh');
const VERSION = '9.9.9';
const TARBALL = `actions-runner-linux-x64-${VERSION}.tar.gz`;

/** A stock image without the runner: the entrypoint installs the version the payload names. */
describe('installing the runner on a stock image', () => {
  let dir: string;
  let server: Server;
  let base: string;
  let sha: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'runner-install-'));
    const release = makeFakeRunnerRoot(join(dir, 'release'));
    execFileSync('tar', ['-czf', join(dir, TARBALL), '-C', release, '.']);
    const bytes = readFileSync(join(dir, TARBALL));
    sha = createHash('sha256').update(bytes).digest('hex');
    server = createServer((request, response) => {
      if (request.url === `/v${VERSION}/${TARBALL}`) response.end(bytes);
      else response.writeHead(404).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    base = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  });
  afterAll(() => {
    server?.close();
  });

  function checksums(line: string): string {
    const path = join(mkdtempSync(join(dir, 'sums-')), 'runner-checksums.txt');
    writeFileSync(path, `# test\n${line}\n`);
    return path;
  }

  const env = () => ({ ...process.env, RUNNER_DOWNLOAD_BASE: base, RUNNER_ARCH: 'x64' });

  it('downloads, verifies and unpacks the named version', async () => {
    const root = join(mkdtempSync(join(dir, 'root-')), 'actions-runner');
    const outcome = await ensureRunnerInstalled({ runnerRoot: root, version: VERSION, installer: INSTALLER, checksums: checksums(`${sha}  ${TARBALL}`), env: env(), logger: silent });
    expect(outcome).toBe('installed');
    expect(existsSync(join(root, 'bin', 'Runner.Worker'))).toBe(true);
    expect(await ensureRunnerInstalled({ runnerRoot: root, version: VERSION, installer: INSTALLER, checksums: '/nonexistent', env: env(), logger: silent })).toBe('present');
  });

  it('refuses a tarball whose checksum does not match', async () => {
    const root = join(mkdtempSync(join(dir, 'root-')), 'actions-runner');
    const wrong = createHash('sha256').update('something else').digest('hex');
    await expect(ensureRunnerInstalled({ runnerRoot: root, version: VERSION, installer: INSTALLER, checksums: checksums(`${wrong}  ${TARBALL}`), env: env(), logger: silent })).rejects.toMatchObject({
      code: 'RUNNER_INSTALL_FAILED',
      message: expect.stringContaining('does not match its SHA-256'),
    });
    expect(existsSync(join(root, 'bin'))).toBe(false);
  });

  it('refuses a version without a checksum line', async () => {
    const root = join(mkdtempSync(join(dir, 'root-')), 'actions-runner');
    await expect(ensureRunnerInstalled({ runnerRoot: root, version: VERSION, installer: INSTALLER, checksums: checksums(`${sha}  actions-runner-linux-x64-1.0.0.tar.gz`), env: env(), logger: silent })).rejects.toMatchObject({
      code: 'RUNNER_INSTALL_FAILED',
      message: expect.stringContaining(`no SHA-256 for ${TARBALL}`),
    });
  });

  it('says what is missing when the job names no version', async () => {
    const root = join(mkdtempSync(join(dir, 'root-')), 'actions-runner');
    await expect(ensureRunnerInstalled({ runnerRoot: root, installer: INSTALLER, checksums: '/x', env: env(), logger: silent })).rejects.toMatchObject({ code: 'RUNNER_NOT_INSTALLED' });
  });
});
