import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parse as parseYaml } from 'yaml';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadConfigFile } from '../../src/config/load.js';
import { cdkAppCommand, cdkArguments } from '../../src/infra/commands.js';
import { parsePoolSpec, parseScope, renderStarterConfig } from '../../src/infra/init.js';
import { RepoFiles } from '../../src/infra/paths.js';
import { ROOT } from './helpers.js';

const execFileAsync = promisify(execFile);
const CBACTIONS = join(ROOT, 'bin', 'cbactions');
const BUNDLE = join(ROOT, RepoFiles.bundle);

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the built binary as an operator would, with stdin not a terminal. */
async function cbactions(args: string[], options: { cwd?: string; bin?: string } = {}): Promise<Run> {
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, [options.bin ?? CBACTIONS, ...args], {
      cwd: options.cwd ?? ROOT,
      env: { ...process.env, CBACTIONS_CONFIG: '' },
      timeout: 120_000,
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failure = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof failure.code === 'number' ? failure.code : -1, stdout: failure.stdout ?? '', stderr: failure.stderr ?? '' };
  }
}

beforeAll(() => {
  for (const file of [join(ROOT, 'dist/src/cli/main.js'), join(ROOT, 'dist/src/infra/commands.js'), BUNDLE]) {
    if (!existsSync(file)) throw new Error(`${file} is missing: run "npm run build" before these process tests`);
  }
});

describe('cbactions init (non-interactive)', () => {
  it('writes a commented config that loads, then `deploy --dry-run` synthesizes it offline', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cbactions-init-'));
    const config = join(dir, 'cbactions.yml');
    const init = await cbactions(['init', '--scope', 'org:octo', '--auth', 'app', '--app-id', '4242', '--pool', 'small=linux,small', '--pool', 'docker', '--output', config]);
    expect(init.stderr).toBe('');
    expect(init.code).toBe(0);
    expect(init.stdout).toContain(`wrote ${config}`);
    const text = readFileSync(config, 'utf8');
    expect(text).toMatch(/^# cbactions configuration/);
    const loaded = await loadConfigFile(config);
    expect(loaded.github.scope).toEqual({ organization: 'octo' });
    expect(loaded.github.auth).toEqual({ app: { appId: 4242, privateKey: { env: 'CBACTIONS_GITHUB_APP_PRIVATE_KEY' } } });
    expect(loaded.pools.map((pool) => [pool.name, pool.labels])).toEqual([
      ['small', ['linux', 'small']],
      ['docker', ['docker']],
    ]);

    const out = join(dir, 'cdk.out');
    const deploy = await cbactions(['deploy', '--config', config, '--dry-run', '--output-dir', out], { cwd: dir });
    expect(deploy.stderr).toBe('');
    expect(deploy.code).toBe(0);
    const templatePath = join(out, 'cbactions.template.json');
    expect(deploy.stdout).toContain(`template: ${templatePath}`);
    expect(deploy.stdout).toContain('dry run: nothing was deployed');
    const template = JSON.parse(readFileSync(templatePath, 'utf8')) as { Resources: Record<string, { Type: string }> };
    expect(Object.values(template.Resources).some((resource) => resource.Type === 'AWS::ECS::Service')).toBe(true);
    expect(existsSync(join(out, 'manifest.json'))).toBe(true);
  });

  it('refuses to overwrite an existing file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cbactions-init-'));
    const config = join(dir, 'cbactions.yml');
    writeFileSync(config, 'mine\n');
    const result = await cbactions(['init', '--scope', 'repo:octo/app', '--auth', 'pat', '--output', config]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('already exists; not overwriting it');
    expect(readFileSync(config, 'utf8')).toBe('mine\n');
  });

  it('without a terminal, a missing --scope is an error that names the flag', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cbactions-init-'));
    const result = await cbactions(['init', '--auth', 'pat', '--output', join(dir, 'x.yml')]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('--scope is required when stdin is not a terminal');
    expect(existsSync(join(dir, 'x.yml'))).toBe(false);
  });

  it('rejects bad flag values by name', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cbactions-init-'));
    for (const [args, message] of [
      [['--scope', 'team:octo', '--auth', 'pat'], '--scope: expected org:NAME'],
      [['--scope', 'org:octo', '--auth', 'ssh'], '--auth: expected app or pat'],
      [['--scope', 'org:octo', '--auth', 'app'], '--app-id is required with --auth app'],
      [['--scope', 'org:octo', '--auth', 'pat', '--pool', 'Big=x'], '--pool "Big=x": name:'],
      [['--scope', 'org:octo', '--auth', 'pat', '--stack-name', '9'], 'deploy.stackName:'],
    ] as const) {
      const result = await cbactions(['init', ...args, '--output', join(dir, 'x.yml')]);
      expect(result.code, args.join(' ')).toBe(2);
      expect(result.stderr).toContain(message);
    }
  });

  it('runs from the single-file bundle too (deploy commands load the compiled tree)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cbactions-init-'));
    const result = await cbactions(['init', '--scope', 'enterprise:acme', '--auth', 'pat', '--output', join(dir, 'c.yml')], { bin: BUNDLE });
    expect(result.code).toBe(0);
    expect((await loadConfigFile(join(dir, 'c.yml'))).github.scope).toEqual({ enterprise: 'acme' });
  });
});

describe('cbactions deploy / diff / destroy', () => {
  it('an invalid config fails the dry run with exit 2, naming the field', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cbactions-deploy-'));
    const config = join(dir, 'bad.yml');
    const valid = parseYaml(
      renderStarterConfig({ scope: { organization: 'octo' }, auth: { kind: 'pat' }, pools: [{ name: 'default', labels: ['x'] }], projectName: 'cbactions', stackName: 'cbactions' }),
    ) as Record<string, Record<string, unknown>>;
    writeFileSync(config, JSON.stringify({ ...valid, deploy: { ...valid.deploy, memoryMiB: 100 } }));
    const result = await cbactions(['deploy', '--config', config, '--dry-run', '--output-dir', join(dir, 'out')], { cwd: dir });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('deploy.memoryMiB: 100 MiB is not a Fargate memory size');
  });

  it('the dry run warns, naming the role and its grants, when the build role gets broad permissions', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cbactions-deploy-'));
    const config = join(dir, 'admin.yml');
    const valid = parseYaml(
      renderStarterConfig({ scope: { organization: 'octo' }, auth: { kind: 'pat' }, pools: [{ name: 'default', labels: ['x'] }], projectName: 'cbactions', stackName: 'cbactions' }),
    ) as Record<string, Record<string, unknown>>;
    writeFileSync(config, JSON.stringify({ ...valid, deploy: { ...valid.deploy, buildRole: { managedPolicyArns: ['arn:aws:iam::aws:policy/AdministratorAccess'] } } }));
    const result = await cbactions(['deploy', '--config', config, '--dry-run', '--output-dir', join(dir, 'out')], { cwd: dir });
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('dry run: nothing was deployed');
    const warnings = result.stderr.split('\n').filter((line) => line.startsWith('warning: '));
    expect(warnings).toEqual([
      "warning: the project's build role (deploy.buildRole) is granted AdministratorAccess: job code in its builds may use all of that, " +
        "but cbactions' Deny guards in the payload bucket and key policies keep each build to its own payload regardless; " +
        'it can also administer IAM, so job code could create another principal and, with that, change those policies: ' +
        'such a build role is an account administrator (README, "Security")',
    ]);
  });

  it('the dry run warns about an existing policy role and a role no rule runs as; a rule naming no role fails it with exit 2', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cbactions-deploy-'));
    const valid = parseYaml(
      renderStarterConfig({ scope: { organization: 'octo' }, auth: { kind: 'pat' }, pools: [{ name: 'default', labels: ['x'] }], projectName: 'cbactions', stackName: 'cbactions' }),
    ) as Record<string, Record<string, unknown>>;
    const policy = {
      roles: { 'old-deployer': { arn: 'arn:aws:iam::123456789012:role/old-deployer', roleId: 'AROAEXISTINGPOLICY12' } },
      rules: [{ name: 'old', match: { repository: 'acme/old' }, role: 'old-deployer' }],
    };
    const config = join(dir, 'roles.yml');
    writeFileSync(config, JSON.stringify({ ...valid, policy, deploy: { ...valid.deploy, roles: { 'site-deployer': {} } } }));
    const result = await cbactions(['deploy', '--config', config, '--dry-run', '--output-dir', join(dir, 'out')], { cwd: dir });
    expect(result.code).toBe(0);
    const warnings = result.stderr.split('\n').filter((line) => line.startsWith('warning: '));
    expect(warnings).toEqual([
      "warning: role \"old-deployer\" is the existing role arn:aws:iam::123456789012:role/old-deployer (policy.roles.old-deployer), whose grants the stack can't see: " +
        "job code in builds that rules run as it may use whatever it holds, but cbactions' Deny guards in the payload bucket and key policies keep each build to its own payload regardless, " +
        'unless the role can administer IAM (README, "Security")',
      'warning: deploy.roles.site-deployer: no policy rule runs as role "site-deployer"; the stack still makes it a build role the listener task may pass to CodeBuild (add a rule naming it, or remove it)',
    ]);

    const unknown = join(dir, 'unknown-role.yml');
    writeFileSync(unknown, JSON.stringify({ ...valid, policy: { rules: [{ name: 'site', role: 'site-deployr' }] }, deploy: { ...valid.deploy, roles: { 'site-deployer': {} } } }));
    const refused = await cbactions(['deploy', '--config', unknown, '--dry-run', '--output-dir', join(dir, 'out-unknown')], { cwd: dir });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('policy.rules[0].role: rule "site" runs as the role "site-deployr", which is neither in policy.roles nor in deploy.roles (roles: "site-deployer")');
  });

  it('without --config or CBACTIONS_CONFIG it says what to pass', async () => {
    const result = await cbactions(['diff']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('--config FILE (or CBACTIONS_CONFIG)');
  });

  it('runs the CDK CLI on this app, so it can look up what an offline synthesis can not', () => {
    expect(cdkAppCommand('/repo')).toBe(`"${process.execPath}" "/repo/dist/src/infra/main.js"`);
    expect(cdkArguments('deploy', 'APP', '/out', 'cb', { profile: 'ops', requireApproval: 'never' })).toEqual([
      'deploy', '--app', 'APP', '--output', '/out', 'cb', '--profile', 'ops', '--require-approval', 'never',
    ]);
    expect(cdkArguments('diff', 'APP', '/out', 'cb')).toEqual(['diff', '--app', 'APP', '--output', '/out', 'cb']);
    expect(cdkArguments('destroy', 'APP', '/out', 'cb', { force: true })).toEqual(['destroy', '--app', 'APP', '--output', '/out', 'cb', '--force']);
    expect(cdkArguments('bootstrap', 'APP', '/out', 'cb')).toEqual(['bootstrap', '--app', 'APP', '--output', '/out']);
  });
});

describe('init helpers', () => {
  it('parses scopes and pools', () => {
    expect(parseScope('org:octo')).toEqual({ organization: 'octo' });
    expect(parseScope('repo:octo/app')).toEqual({ repository: 'octo/app' });
    expect(parseScope('enterprise:acme')).toEqual({ enterprise: 'acme' });
    expect(() => parseScope('repo:octo')).toThrow(/--scope/);
    expect(parsePoolSpec('gpu=gpu, linux')).toEqual({ name: 'gpu', labels: ['gpu', 'linux'] });
    expect(parsePoolSpec('small')).toEqual({ name: 'small', labels: ['small'] });
  });
});

describe('image layout', () => {
  it('the bundle at dist/src/cli/main.js of an /opt/cbactions-like tree installs the tree\'s native shim, falling back to that tree\'s bin/cbactions', async () => {
    // What docker/*.Dockerfile lay out: package.json (type module), bin/cbactions, the bundle.
    const install = mkdtempSync(join(tmpdir(), 'image-layout-'));
    mkdirSync(join(install, 'bin'));
    mkdirSync(join(install, 'dist', 'src', 'cli'), { recursive: true });
    mkdirSync(join(install, 'src', 'preload'), { recursive: true });
    copyFileSync(join(ROOT, 'docker', 'image-package.json'), join(install, 'package.json'));
    copyFileSync(CBACTIONS, join(install, 'bin', 'cbactions'));
    copyFileSync(BUNDLE, join(install, 'dist', 'src', 'cli', 'main.js'));
    const runner = mkdtempSync(join(tmpdir(), 'image-runner-'));
    mkdirSync(join(runner, 'bin'));
    writeFileSync(join(runner, 'bin', 'Runner.Worker'), 'real worker\n');

    // Without dist/preload/worker-shim (the image's preload stage) it says what is missing.
    const unbuilt = await cbactions(['install-worker', runner], { bin: join(install, 'bin', 'cbactions') });
    expect(unbuilt.code).not.toBe(0);
    expect(unbuilt.stderr).toContain(`the native worker shim ${join(install, 'dist', 'preload', 'worker-shim')} does not exist: run "npm run build"`);
    expect(readFileSync(join(runner, 'bin', 'Runner.Worker'), 'utf8')).toBe('real worker\n');

    mkdirSync(join(install, 'dist', 'preload'));
    copyFileSync(join(ROOT, 'dist', 'preload', 'worker-shim'), join(install, 'dist', 'preload', 'worker-shim'));
    const result = await cbactions(['install-worker', runner], { bin: join(install, 'bin', 'cbactions') });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(readFileSync(join(runner, 'bin', 'Runner.Worker')).equals(readFileSync(join(install, 'dist', 'preload', 'worker-shim')))).toBe(true);
    const fallback = readFileSync(join(runner, 'bin', 'Runner.Worker.fallback'), 'utf8');
    expect(fallback).toContain(`'${join(install, 'bin', 'cbactions')}' worker "$@"`);
    expect(readFileSync(join(runner, 'bin', 'Runner.Worker.orig'), 'utf8')).toBe('real worker\n');

    // And the deploy commands say what is missing instead of crashing the binary.
    const deploy = await cbactions(['deploy', '--config', '/nonexistent.yml', '--dry-run'], { bin: join(install, 'bin', 'cbactions') });
    expect(deploy.code).not.toBe(0);
    expect(deploy.stderr).toContain('this command runs from a cbactions checkout');
  });
});
