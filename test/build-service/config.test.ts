import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadBuildServiceConfig, resolveBuildServiceConfig } from '../../src/build-service/config.js';
import { isCbactionsError } from '../../src/util/errors.js';

function invalid(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    if (isCbactionsError(error, 'CONFIG_INVALID')) return error.message;
    throw error;
  }
  throw new Error('expected the configuration to be refused');
}

describe('build-service configuration', () => {
  it('defaults to one project from --project/--buildspec relative to the cwd', () => {
    const config = resolveBuildServiceConfig({ file: undefined, configDir: undefined, flags: {}, cwd: '/work/x' });
    expect(config).toMatchObject({
      host: '127.0.0.1',
      port: 0,
      stateDir: undefined,
      region: 'us-east-1',
      accountId: '000000000000',
      minuteMs: 60_000,
      stopGraceMs: 10_000,
      concurrentBuildLimit: undefined,
      assumeServiceRole: false,
      baseDir: '/work/x',
    });
    expect(config.projects).toEqual([
      expect.objectContaining({ name: 'cbactions', buildspec: '/work/x/buildspec.yml', timeoutInMinutes: 60, queuedTimeoutInMinutes: 480, environmentType: 'LINUX_CONTAINER' }),
    ]);
    const named = resolveBuildServiceConfig({ file: undefined, configDir: undefined, flags: { project: 'proj', buildspec: 'spec/b.yml', stateDir: 'st' }, cwd: '/w' });
    expect(named.projects[0]).toMatchObject({ name: 'proj', buildspec: '/w/spec/b.yml' });
    expect(named.stateDir).toBe('/w/st');
  });

  it('resolves file paths against the config file and lets flags win', () => {
    const config = resolveBuildServiceConfig({
      file: {
        port: 9999,
        stateDir: 'state',
        minuteMs: 10,
        faults: { throttle: { count: 1 } },
        projects: [
          { name: 'one', buildspec: 'a.yml', environmentVariables: { N: 1 }, serviceRole: 'arn:aws:iam::123456789012:role/r' },
          { name: 'two', buildspec: '/abs/b.yml' },
        ],
      },
      configDir: '/etc/cb',
      flags: { port: '0', minuteMs: '20', project: 'two', buildspec: 'c.yml', assumeServiceRole: 'true', faults: '{"accountLimit":{"count":1}}' },
      cwd: '/cwd',
    });
    expect(config.port).toBe(0);
    expect(config.minuteMs).toBe(20);
    expect(config.stateDir).toBe('/etc/cb/state');
    expect(config.assumeServiceRole).toBe(true);
    expect(config.faults).toEqual({ accountLimit: { count: 1, limit: 1 } });
    expect(config.projects.map((project) => [project.name, project.buildspec])).toEqual([
      ['one', '/etc/cb/a.yml'],
      ['two', '/cwd/c.yml'],
    ]);
    expect(config.projects[0]?.environmentVariables).toEqual({ N: '1' });
  });

  it('names every invalid field', () => {
    const message = invalid(() =>
      resolveBuildServiceConfig({
        file: { port: 70000, accountId: '12', bogus: 1, projects: [{ name: 'aa', timeoutInMinutes: 3, environmentVariables: { CODEBUILD_X: 'y' } }, { name: 'aa' }, { name: 'x' }] },
        configDir: '/c',
        flags: {},
        cwd: '/c',
      }),
    );
    expect(message).toContain('port:');
    expect(message).toContain('accountId:');
    expect(message).toContain('bogus');
    expect(message).toContain('projects[0].timeoutInMinutes:');
    expect(message).toContain('projects[0].environmentVariables.CODEBUILD_X: names starting with CODEBUILD_ are reserved');
    expect(message).toContain('projects[1].name: project name "aa" is already used by projects[0]');
    expect(message).toContain('projects[2].name: expected a CodeBuild project name');
    expect(invalid(() => resolveBuildServiceConfig({ file: undefined, configDir: undefined, flags: { port: 'eighty' }, cwd: '/' }))).toContain('port:');
    expect(invalid(() => resolveBuildServiceConfig({ file: undefined, configDir: undefined, flags: { assumeServiceRole: 'yes' }, cwd: '/' }))).toContain('assumeServiceRole:');
    expect(invalid(() => resolveBuildServiceConfig({ file: undefined, configDir: undefined, flags: { faults: '{' }, cwd: '/' }))).toContain('faults:');
    expect(invalid(() => resolveBuildServiceConfig({ file: undefined, configDir: undefined, flags: { faults: '{"throttle":{}}' }, cwd: '/' }))).toContain('faults.throttle.count');
  });

  it('reads a YAML file and reports unreadable and malformed ones', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cbactions-bs-config-'));
    writeFileSync(join(dir, 'ok.yaml'), 'region: eu-west-1\nprojects:\n  - name: proj\n    buildspec: b.yml\n');
    const config = await loadBuildServiceConfig({ config: 'ok.yaml' }, dir);
    expect(config.region).toBe('eu-west-1');
    expect(config.projects[0]?.buildspec).toBe(join(dir, 'b.yml'));
    await expect(loadBuildServiceConfig({ config: 'missing.yaml' }, dir)).rejects.toMatchObject({ code: 'CONFIG_UNREADABLE' });
    writeFileSync(join(dir, 'bad.yaml'), 'projects: [\n');
    await expect(loadBuildServiceConfig({ config: 'bad.yaml' }, dir)).rejects.toMatchObject({ code: 'CONFIG_SYNTAX' });
  });

  it('places the credentials file (file field relative to the file, flag to the cwd) and checks profile and allowed hosts', () => {
    const defaults = resolveBuildServiceConfig({ file: undefined, configDir: undefined, flags: {}, cwd: '/w' });
    expect(defaults).toMatchObject({ credentialsFile: undefined, credentialsProfile: 'cbactions-local', allowedHosts: [] });
    const fromFile = resolveBuildServiceConfig({ file: { credentialsFile: 'keys/creds', credentialsProfile: 'builds.local', allowedHosts: ['host.docker.internal', 'box:8080', '[fd00::1]'] }, configDir: '/etc/cb', flags: {}, cwd: '/w' });
    expect(fromFile).toMatchObject({ credentialsFile: '/etc/cb/keys/creds', credentialsProfile: 'builds.local', allowedHosts: ['host.docker.internal', 'box:8080', '[fd00::1]'] });
    expect(resolveBuildServiceConfig({ file: { credentialsFile: 'keys/creds' }, configDir: '/etc/cb', flags: { credentialsFile: 'here' }, cwd: '/w' }).credentialsFile).toBe('/w/here');
    const message = invalid(() => resolveBuildServiceConfig({ file: { credentialsProfile: 'a profile', allowedHosts: ['http://evil.example', 'fd00::1'] }, configDir: '/etc/cb', flags: {}, cwd: '/w' }));
    expect(message).toContain('credentialsProfile: expected a profile name');
    expect(message).toContain('allowedHosts[0]: expected a host name or [IPv6 address]');
    expect(message).toContain('allowedHosts[1]: expected a host name or [IPv6 address]');
  });
});
