import { DockerIgnoreStrategy } from 'aws-cdk-lib';
import { validate } from 'dockerfile-utils';
import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DOCKER_CONTEXT_EXCLUDE } from '../../src/infra/images.js';
import { RepoFiles } from '../../src/infra/paths.js';
import { ROOT } from './helpers.js';

const run = promisify(execFile);
const DOCKERFILES = [RepoFiles.listenerDockerfile, RepoFiles.buildDockerfile];
const SCRIPTS = ['docker/install-runner.sh', 'docker/start-dockerd.sh', 'docker/listener-entrypoint.sh'];

/** `COPY [--flags] src… dest` sources, without `--from` copies (those come from a stage). */
function copySources(dockerfile: string): string[] {
  const joined = dockerfile.replace(/\\\n/g, ' ');
  const sources: string[] = [];
  for (const line of joined.split('\n')) {
    const match = /^\s*COPY\s+(.*)$/i.exec(line);
    if (!match?.[1]) continue;
    const words = match[1].trim().split(/\s+/);
    if (words.some((word) => word.startsWith('--from'))) continue;
    const paths = words.filter((word) => !word.startsWith('--'));
    sources.push(...paths.slice(0, -1));
  }
  return sources;
}

describe('Dockerfiles', () => {
  for (const file of DOCKERFILES) {
    describe(file, () => {
      const text = readFileSync(join(ROOT, file), 'utf8');

      it('passes dockerfile-utils validation with no problems', () => {
        expect(validate(text)).toEqual([]);
      });

      it('copies only files that exist after `npm run build`', () => {
        const sources = copySources(text);
        expect(sources).toContain('dist/bundle/cbactions.mjs');
        const missing = sources.filter((source) => !existsSync(join(ROOT, source)));
        expect(missing, `missing (run "npm run build" first): ${missing.join(', ')}`).toEqual([]);
      });

      it('copies only files the build context lets through (CDK asset and .dockerignore alike)', () => {
        const strategy = new DockerIgnoreStrategy(ROOT, [...DOCKER_CONTEXT_EXCLUDE]);
        for (const source of copySources(text)) expect(strategy.ignores(join(ROOT, source)), source).toBe(false);
        expect(strategy.ignores(join(ROOT, 'node_modules/aws-cdk-lib/package.json'))).toBe(true);
        expect(strategy.ignores(join(ROOT, 'src/seal/envelope.ts'))).toBe(true);
        const ignoreFile = readFileSync(join(ROOT, `${file}.dockerignore`), 'utf8')
          .split('\n')
          .filter((line) => line.trim() !== '' && !line.startsWith('#'));
        expect(ignoreFile).toEqual([...DOCKER_CONTEXT_EXCLUDE]);
      });

      it('takes the runner version from the RUNNER_VERSION build argument, with no default', () => {
        expect(text).toMatch(/^ARG RUNNER_VERSION$/m);
        expect(text).toContain('install-runner.sh "${RUNNER_VERSION}" /actions-runner');
        expect(text).toContain('CBACTIONS_RUNNER_VERSION=${RUNNER_VERSION}');
      });

      it('runs Node.js 22', () => {
        expect(text).toMatch(/^ARG NODE_IMAGE=node:22-/m);
      });
    });
  }

  it('the listener image compiles preload.so with the Makefile, installs the worker shim and drops root', () => {
    const text = readFileSync(join(ROOT, RepoFiles.listenerDockerfile), 'utf8');
    expect(text).toContain('make -C src/preload OUT=/out');
    expect(text).toContain('cbactions install-worker /actions-runner');
    // install-worker copies the native shim from dist/preload: it must be there by then.
    expect(text.indexOf('COPY --from=preload /out/ /opt/cbactions/dist/preload/')).toBeGreaterThan(0);
    expect(text.indexOf('COPY --from=preload /out/ /opt/cbactions/dist/preload/')).toBeLessThan(text.indexOf('cbactions install-worker /actions-runner'));
    expect(text).toMatch(/^USER runner$/m);
  });

  it('the listener image copies every C source the preload Makefile builds (preload.so, probe, listener launcher, worker shim), in both stages', () => {
    const text = readFileSync(join(ROOT, RepoFiles.listenerDockerfile), 'utf8');
    const copies = text.split('\n').filter((line) => line.startsWith('COPY src/preload/Makefile'));
    expect(copies).toHaveLength(2);
    const sources = readdirSync(join(ROOT, 'src', 'preload')).filter((name) => name.endsWith('.c'));
    expect(sources).toContain('listener-launcher.c');
    expect(sources).toContain('worker-shim.c');
    for (const line of copies) for (const source of sources) expect(line, source).toContain(`src/preload/${source}`);
  });

  it('the build image has Docker and the start-dockerd script, and keeps the real Runner.Worker', () => {
    const text = readFileSync(join(ROOT, RepoFiles.buildDockerfile), 'utf8');
    expect(text).toContain('docker-ce');
    expect(text).toContain('COPY docker/start-dockerd.sh /usr/local/bin/cbactions-start-dockerd');
    expect(text).not.toContain('install-worker');
  });

  it('every script is valid sh and executable', () => {
    for (const script of SCRIPTS) {
      execFileSync('sh', ['-n', join(ROOT, script)]);
      expect(readFileSync(join(ROOT, script), 'utf8').startsWith('#!/bin/sh\n'), script).toBe(true);
      execFileSync('test', ['-x', join(ROOT, script)]);
    }
  });
});

describe('runner version and checksums', () => {
  const version = readFileSync(join(ROOT, RepoFiles.runnerVersion), 'utf8').trim();
  const lines = readFileSync(join(ROOT, RepoFiles.runnerChecksums), 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '' && !line.startsWith('#'));

  it('is sha256sum format, one line per tarball', () => {
    for (const line of lines) expect(line).toMatch(/^[0-9a-f]{64} {2}actions-runner-linux-(x64|arm64)-\d+\.\d+\.\d+\.tar\.gz$/);
  });

  it('has both architectures of the pinned version', () => {
    expect(version).toMatch(/^\d+\.\d+\.\d+$/);
    for (const arch of ['x64', 'arm64']) expect(lines.some((line) => line.endsWith(`  actions-runner-linux-${arch}-${version}.tar.gz`)), arch).toBe(true);
  });
});

describe('install-runner.sh', () => {
  let server: Server;
  let base: string;
  let work: string;
  let tarball: Buffer;
  let requests: string[];

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'install-runner-'));
    mkdirSync(join(work, 'content', 'bin'), { recursive: true });
    writeFileSync(join(work, 'content', 'bin', 'Runner.Listener'), 'fake listener\n');
    execFileSync('tar', ['-czf', join(work, 'runner.tar.gz'), '-C', join(work, 'content'), '.']);
    tarball = readFileSync(join(work, 'runner.tar.gz'));
    requests = [];
    server = createServer((request, response) => {
      requests.push(request.url ?? '');
      if (request.url === '/v9.8.7/actions-runner-linux-x64-9.8.7.tar.gz') response.end(tarball);
      else response.writeHead(404).end();
    });
    await new Promise<void>((resolveListen) => server.listen(0, '127.0.0.1', resolveListen));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((resolveClose) => server.close(() => resolveClose())));

  function checksums(name: string, sum: string): string {
    const path = join(work, `sums-${Math.random().toString(36).slice(2)}.txt`);
    writeFileSync(path, `# comment\n${sum}  ${name}\n`);
    return path;
  }

  async function install(sums: string, version = '9.8.7'): Promise<{ code: number; stderr: string; dir: string }> {
    const dir = join(work, `runner-${Math.random().toString(36).slice(2)}`);
    try {
      await run(join(ROOT, 'docker/install-runner.sh'), [version, dir, sums], { env: { ...process.env, RUNNER_ARCH: 'x64', RUNNER_DOWNLOAD_BASE: base } });
      return { code: 0, stderr: '', dir };
    } catch (error) {
      const failure = error as { code: number; stderr: string };
      return { code: failure.code, stderr: failure.stderr, dir };
    }
  }

  it('installs a tarball whose SHA-256 matches its line', async () => {
    const sum = createHash('sha256').update(tarball).digest('hex');
    const result = await install(checksums('actions-runner-linux-x64-9.8.7.tar.gz', sum));
    expect(result.code).toBe(0);
    expect(readFileSync(join(result.dir, 'bin', 'Runner.Listener'), 'utf8')).toBe('fake listener\n');
  });

  it('refuses a tarball that does not match, and installs nothing', async () => {
    const result = await install(checksums('actions-runner-linux-x64-9.8.7.tar.gz', 'f'.repeat(64)));
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('does not match its SHA-256');
    expect(existsSync(result.dir)).toBe(false);
  });

  it('fails before downloading when the checksum file has no line for the tarball', async () => {
    const before = requests.length;
    const result = await install(checksums('actions-runner-linux-arm64-9.8.7.tar.gz', 'a'.repeat(64)));
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('no SHA-256 for actions-runner-linux-x64-9.8.7.tar.gz');
    expect(result.stderr).toContain('bump-runner-version');
    expect(requests.length).toBe(before);
  });

  it('refuses a malformed version', async () => {
    const result = await install(checksums('x', 'a'.repeat(64)), '9.8');
    expect(result.code).toBe(2);
  });
});

describe('listener-entrypoint.sh', () => {
  it('writes CBACTIONS_CONFIG_JSON to CBACTIONS_CONFIG, drops it from the environment and execs cbactions with the arguments', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'listener-entrypoint-'));
    const bin = join(dir, 'bin');
    mkdirSync(bin);
    writeFileSync(
      join(bin, 'cbactions'),
      '#!/bin/sh\nprintf "args=%s\\n" "$*"\nprintf "json=%s\\n" "${CBACTIONS_CONFIG_JSON:-unset}"\nprintf "config=%s\\n" "$CBACTIONS_CONFIG"\ncat "$CBACTIONS_CONFIG"\n',
    );
    chmodSync(join(bin, 'cbactions'), 0o755);
    const config = join(dir, 'etc', 'config.json');
    const { stdout } = await run(join(ROOT, 'docker/listener-entrypoint.sh'), ['mux', '--config', config], {
      env: { PATH: `${bin}:/usr/bin:/bin`, CBACTIONS_CONFIG: config, CBACTIONS_CONFIG_JSON: '{"pools":[1]}' },
    });
    expect(stdout).toBe(`args=mux --config ${config}\njson=unset\nconfig=${config}\n{"pools":[1]}\n`);
    expect((execFileSync('stat', ['-c', '%a', config]).toString().trim())).toBe('600');
  });
});

describe('start-dockerd.sh', () => {
  /** A PATH with the tools the script needs, plus fakes of docker/dockerd when given. */
  function sandbox(fakes: Record<string, string>): string {
    const bin = mkdtempSync(join(tmpdir(), 'dockerd-sandbox-'));
    for (const tool of ['awk', 'sleep', 'tail', 'nohup', 'cat', 'touch', 'test']) {
      const found = execFileSync('sh', ['-c', `command -v ${tool}`]).toString().trim();
      symlinkSync(found, join(bin, tool));
    }
    for (const [name, body] of Object.entries(fakes)) {
      writeFileSync(join(bin, name), `#!/bin/sh\n${body}\n`);
      chmodSync(join(bin, name), 0o755);
    }
    return bin;
  }
  const start = (bin: string) =>
    run('/bin/sh', [join(ROOT, 'docker/start-dockerd.sh')], { env: { PATH: bin, CBACTIONS_DOCKERD_TIMEOUT: '5', CBACTIONS_DOCKERD_LOG: join(bin, 'dockerd.log') } });

  it('does nothing when a daemon already answers', async () => {
    const { stdout } = await start(sandbox({ docker: 'exit 0' }));
    expect(stdout).toContain('already running');
  });

  it('exits 0 without Docker when the image has no dockerd', async () => {
    const { stdout } = await start(sandbox({ docker: 'exit 1' }));
    expect(stdout).toContain('no dockerd');
  });

  it('starts dockerd and waits for it when privileged, or says the build is not privileged', async () => {
    const flag = join(mkdtempSync(join(tmpdir(), 'dockerd-flag-')), 'up');
    const bin = sandbox({ docker: `test -e ${flag}`, dockerd: `touch ${flag}; exec sleep 2` });
    const capEff = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? '0';
    const privileged = ((BigInt(`0x${capEff}`) >> 21n) & 1n) === 1n;
    const { stdout } = await start(bin);
    if (privileged) {
      expect(stdout).toMatch(/dockerd is up after \d+ s/);
      expect(existsSync(flag)).toBe(true);
    } else {
      expect(stdout).toContain('not privileged');
      expect(existsSync(flag)).toBe(false);
    }
  });
});
