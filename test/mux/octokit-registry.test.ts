/** The Octokit adapter of RunnerRegistry and the client factory, against the fake GitHub. */
import { generateKeyPairSync } from 'node:crypto';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { GitHubAuth, GitHubScope } from '../../src/config/schema.js';
import { createGitHubClient } from '../../src/mux/github-client.js';
import { decodeJitConfig } from '../../src/mux/jit-config.js';
import { OctokitRunnerRegistry } from '../../src/mux/octokit-registry.js';
import { RegistryErrorCode } from '../../src/mux/runner-registry.js';
import { apiBaseUrl, scopeApiPath, scopeWebUrl } from '../../src/mux/scope.js';
import { isCbactionsError } from '../../src/util/errors.js';
import { startFakeGitHub, type FakeGitHub, type FakeGitHubOptions } from '../support/fake-github.js';

const silent = pino({ level: 'silent' });
const TOKEN = 'ghp_registry_test';
const { privateKey: APP_KEY, publicKey: APP_PUBLIC } = generateKeyPairSync('rsa', {
  modulusLength: 2048,
  privateKeyEncoding: { type: 'pkcs1', format: 'pem' },
  publicKeyEncoding: { type: 'spki', format: 'pem' },
});
const OTHER_KEY = generateKeyPairSync('rsa', { modulusLength: 2048, privateKeyEncoding: { type: 'pkcs1', format: 'pem' }, publicKeyEncoding: { type: 'spki', format: 'pem' } }).privateKey;

async function codeOf(promise: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await promise;
  } catch (error) {
    return { code: isCbactionsError(error) ? error.code : `not a CbactionsError: ${String(error)}`, message: (error as Error).message };
  }
  throw new Error('expected a rejection');
}

describe('OctokitRunnerRegistry against the fake GitHub', () => {
  let fake: FakeGitHub | undefined;
  afterEach(async () => {
    await fake?.stop();
    fake = undefined;
  });

  async function makeRegistry(scope: GitHubScope, auth: GitHubAuth = { token: { env: 'GH_TOKEN' } }, options: FakeGitHubOptions = {}, env: NodeJS.ProcessEnv = { GH_TOKEN: TOKEN }) {
    fake ??= await startFakeGitHub({ tokens: [TOKEN], ...options });
    const octokit = await createGitHubClient({ url: fake.url, scope, auth, secrets: { env }, logger: silent, retryAfterBaseValueMs: 5 });
    return new OctokitRunnerRegistry(octokit, scope);
  }

  it('generates a JIT config shaped as GitHub returns it', async () => {
    const registry = await makeRegistry({ repository: 'octo/repo' });
    const jit = await registry.generateJitConfig({ name: 'runner-a', labels: ['cbactions', 'linux'], runnerGroupId: 1, workFolder: '_work' });
    expect(jit.runner).toMatchObject({ name: 'runner-a', status: 'offline', busy: false, labels: ['cbactions', 'linux'] });
    const files = decodeJitConfig(jit.encodedJitConfig);
    const settings = JSON.parse(files.get('.runner')?.toString() ?? '{}') as Record<string, unknown>;
    expect(settings).toMatchObject({ agentId: jit.runner.id, agentName: 'runner-a', ephemeral: true });
    expect(settings).not.toHaveProperty('disableUpdate');
    expect(fake?.calls.at(-1)).toMatchObject({ method: 'POST', path: '/repos/octo/repo/actions/runners/generate-jitconfig', status: 201, auth: 'pat' });
    // The same name again is a conflict, not retried.
    const conflict = await codeOf(registry.generateJitConfig({ name: 'runner-a', labels: ['x'], runnerGroupId: 1, workFolder: '_work' }));
    expect(conflict.code).toBe(RegistryErrorCode.Conflict);
    expect(fake?.calls.filter((call) => call.status === 409)).toHaveLength(1);
  });

  it('lists every page of runners and deletes them (404 = already gone)', async () => {
    const registry = await makeRegistry({ organization: 'octo' });
    for (let i = 0; i < 230; i++) fake?.addRunner({ name: `r-${i}`, scope: 'orgs/octo', status: i % 2 ? 'online' : 'offline' });
    fake?.addRunner({ name: 'elsewhere', scope: 'orgs/other' });
    const runners = await registry.listRunners();
    expect(runners).toHaveLength(230);
    expect(runners.filter((runner) => runner.status === 'offline')).toHaveLength(115);
    expect(fake?.calls.filter((call) => call.path.startsWith('/orgs/octo/actions/runners?')).map((call) => call.path)).toEqual([
      '/orgs/octo/actions/runners?per_page=100&page=1',
      '/orgs/octo/actions/runners?per_page=100&page=2',
      '/orgs/octo/actions/runners?per_page=100&page=3',
    ]);
    const first = runners[0]?.id as number;
    expect(await registry.deleteRunner(first)).toBe(true);
    expect(await registry.deleteRunner(first)).toBe(false);
    expect(fake?.runners.has(first)).toBe(false);
  });

  it('creates registration tokens', async () => {
    const registry = await makeRegistry({ enterprise: 'acme' });
    const token = await registry.createRegistrationToken();
    expect(token.token).toMatch(/^AAAA/);
    expect(Date.parse(token.expiresAt)).toBeGreaterThan(Date.now());
    expect(fake?.registrationTokens.get(token.token)?.scope).toBe('enterprises/acme');
  });

  it('retries a 5xx and gives up on a bad token with GITHUB_AUTH, without the token in the message', async () => {
    const good = await makeRegistry({ repository: 'octo/repo' });
    fake?.addFault({ method: 'GET', path: '/actions/runners$', status: 502, count: 2 });
    expect(await good.listRunners()).toEqual([]);
    expect(fake?.calls.filter((call) => call.status === 502)).toHaveLength(2);
    const bad = await makeRegistry({ repository: 'octo/repo' }, { token: { env: 'GH_TOKEN' } }, {}, { GH_TOKEN: 'ghp_wrong' });
    const failure = await codeOf(bad.listRunners());
    expect(failure.code).toBe(RegistryErrorCode.Auth);
    expect(failure.message).toContain('HTTP 401');
    expect(failure.message).not.toContain('ghp_wrong');
    expect(fake?.calls.at(-1)).toMatchObject({ status: 401, auth: 'bad' });
  });

  it('finds runner groups by name or id; repositories have only the default group', async () => {
    const org = await makeRegistry({ organization: 'octo' }, undefined, {
      runnerGroups: { 'orgs/octo': [{ id: 1, name: 'Default' }, ...Array.from({ length: 120 }, (_, i) => ({ id: 10 + i, name: `group-${i}` })), { id: 7, name: 'CodeBuild' }] },
    });
    expect(await org.findRunnerGroup('codebuild')).toEqual({ id: 7, name: 'CodeBuild' });
    expect(await org.findRunnerGroup(115)).toEqual({ id: 115, name: 'group-105' });
    const missing = await codeOf(org.findRunnerGroup('nope'));
    expect(missing.code).toBe(RegistryErrorCode.RunnerGroupNotFound);
    expect(missing.message).toContain('github.runnerGroup');
    const repo = await makeRegistry({ repository: 'octo/repo' });
    expect(await repo.findRunnerGroup('Default')).toEqual({ id: 1, name: 'Default' });
    expect((await codeOf(repo.findRunnerGroup('CodeBuild'))).message).toContain('github.runnerGroup');
  });

  describe('GitHub App auth', () => {
    const app = {
      id: 4242,
      publicKeyPem: APP_PUBLIC,
      installations: [
        { id: 71, account: 'octo/repo', targetType: 'Repository' as const },
        { id: 72, account: 'octo', targetType: 'Organization' as const },
        { id: 73, account: 'acme', targetType: 'Enterprise' as const },
      ],
    };
    const appAuth = (installationId?: number): GitHubAuth => ({ app: { appId: 4242, privateKey: { env: 'APP_KEY' }, ...(installationId ? { installationId } : {}) } });

    it.each([
      [{ repository: 'octo/repo' }, 71, '/repos/octo/repo/installation'],
      [{ organization: 'octo' }, 72, '/orgs/octo/installation'],
      [{ enterprise: 'acme' }, 73, '/app/installations?per_page=100&page=1'],
    ] as [GitHubScope, number, string][])('looks the installation up from the scope %j and uses its token', async (scope, installationId, lookupPath) => {
      const registry = await makeRegistry(scope, appAuth(), { app }, { APP_KEY });
      await registry.listRunners();
      expect(fake?.calls.find((call) => call.path === lookupPath)).toMatchObject({ status: 200, auth: 'jwt' });
      expect(fake?.calls.find((call) => call.path === `/app/installations/${installationId}/access_tokens`)).toMatchObject({ status: 201, auth: 'jwt' });
      expect(fake?.calls.at(-1)).toMatchObject({ status: 200, auth: 'installation' });
      await fake?.stop();
      fake = undefined;
    });

    it('uses a configured installation id without a lookup', async () => {
      const registry = await makeRegistry({ organization: 'octo' }, appAuth(72), { app }, { APP_KEY });
      await registry.createRegistrationToken();
      expect(fake?.calls.map((call) => call.path)).toEqual(['/app/installations/72/access_tokens', '/orgs/octo/actions/runners/registration-token']);
    });

    it('says when the App is not installed on the scope, or its key is wrong', async () => {
      const missing = await codeOf(makeRegistry({ organization: 'nobody' }, appAuth(), { app }, { APP_KEY }));
      expect(missing.code).toBe(RegistryErrorCode.InstallationNotFound);
      expect(missing.message).toContain('github.auth.app.installationId');
      const wrongKey = await codeOf(makeRegistry({ organization: 'octo' }, appAuth(), { app }, { APP_KEY: OTHER_KEY }));
      expect(wrongKey.code).toBe(RegistryErrorCode.Auth);
      expect(wrongKey.message).toContain('github.auth.app');
      expect(wrongKey.message).not.toContain('PRIVATE KEY');
    });
  });
});

describe('scope URLs', () => {
  it('use api.github.com for GitHub.com and /api/v3 for GHES', () => {
    expect(apiBaseUrl('https://github.com')).toBe('https://api.github.com');
    expect(apiBaseUrl('https://ghes.example.com/')).toBe('https://ghes.example.com/api/v3');
    expect(scopeApiPath({ repository: 'o/r' })).toBe('/repos/o/r');
    expect(scopeApiPath({ organization: 'o' })).toBe('/orgs/o');
    expect(scopeApiPath({ enterprise: 'e' })).toBe('/enterprises/e');
    expect(scopeWebUrl('https://ghes.example.com/', { enterprise: 'e' })).toBe('https://ghes.example.com/enterprises/e');
    expect(scopeWebUrl('https://github.com', { repository: 'o/r' })).toBe('https://github.com/o/r');
  });
});
