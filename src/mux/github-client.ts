/**
 * Builds the Octokit the registry uses: GitHub.com or GHES base URL, the retry and
 * throttling plugins, and either a PAT or GitHub App auth. With an App and no
 * installation id in the config, the installation is looked up from the scope.
 */
import { Octokit } from '@octokit/core';
import { createAppAuth } from '@octokit/auth-app';
import { retry } from '@octokit/plugin-retry';
import { throttling } from '@octokit/plugin-throttling';
import type { GitHubAuth, GitHubScope } from '../config/schema.js';
import { CbactionsError, describeError } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { RegistryErrorCode } from './runner-registry.js';
import { apiBaseUrl, describeScope } from './scope.js';
import { readSecret, type SecretReaders } from './secret-source.js';

export const GitHubOctokit = Octokit.plugin(retry, throttling);
export type GitHubOctokit = InstanceType<typeof GitHubOctokit>;

export interface GitHubClientOptions {
  /** `github.url` from the config. */
  url: string;
  scope: GitHubScope;
  auth: GitHubAuth;
  secrets: SecretReaders;
  logger: Logger;
  /** Retries of 5xx/network errors, and the base of their delay (plugin-retry: base × n²). */
  retries?: number;
  retryAfterBaseValueMs?: number;
  /** How many times a rate-limited request is retried after waiting (plugin-throttling). */
  rateLimitRetries?: number;
}

const USER_AGENT = 'cbactions-mux';

function commonOptions(options: GitHubClientOptions) {
  const { logger } = options;
  const rateLimitRetries = options.rateLimitRetries ?? 2;
  return {
    baseUrl: apiBaseUrl(options.url),
    userAgent: USER_AGENT,
    // Octokit's own log lines go through pino, without the request options (which hold headers).
    log: {
      debug: () => undefined,
      info: () => undefined,
      warn: (message: string) => logger.warn({ event: 'mux.github-client-warning', detail: message.slice(0, 300) }),
      error: (message: string) => logger.error({ event: 'mux.github-client-error', detail: message.slice(0, 300) }),
    },
    // 409 (a runner with that name exists) joins plugin-retry's list of answers a retry cannot change.
    retry: { retries: options.retries ?? 3, retryAfterBaseValue: options.retryAfterBaseValueMs ?? 1000, doNotRetry: [400, 401, 403, 404, 409, 410, 422, 451] },
    throttle: {
      onRateLimit: (retryAfter: number, request: { method: string; url: string }, _octokit: unknown, retryCount: number) => {
        logger.warn({ event: 'mux.github-rate-limited', method: request.method, url: request.url, retryAfterSeconds: retryAfter, retryCount });
        return retryCount < rateLimitRetries;
      },
      onSecondaryRateLimit: (retryAfter: number, request: { method: string; url: string }, _octokit: unknown, retryCount: number) => {
        logger.warn({ event: 'mux.github-secondary-rate-limited', method: request.method, url: request.url, retryAfterSeconds: retryAfter, retryCount });
        return retryCount < rateLimitRetries;
      },
    },
  };
}

/** Creates the authenticated client for the scope. Reads the secrets once. */
export async function createGitHubClient(options: GitHubClientOptions): Promise<GitHubOctokit> {
  const common = commonOptions(options);
  if ('token' in options.auth) {
    const token = await readSecret(options.auth.token, 'github.auth.token', options.secrets);
    return new GitHubOctokit({ ...common, auth: token });
  }
  const { app } = options.auth;
  const privateKey = await readSecret(app.privateKey, 'github.auth.app.privateKey', options.secrets);
  const appId = Number(app.appId);
  let installationId = app.installationId === undefined ? undefined : Number(app.installationId);
  if (installationId === undefined) {
    const appClient = new GitHubOctokit({ ...common, authStrategy: createAppAuth, auth: { appId, privateKey } });
    installationId = await findInstallation(appClient, options.scope);
    options.logger.info({ event: 'mux.github-installation-found', appId, installationId, scope: describeScope(options.scope) });
  }
  return new GitHubOctokit({ ...common, authStrategy: createAppAuth, auth: { appId, privateKey, installationId } });
}

function statusOf(error: unknown): number | undefined {
  const status = (error as { status?: unknown } | null)?.status;
  return typeof status === 'number' ? status : undefined;
}

/** The App's installation on the configured repository, organization or enterprise. */
export async function findInstallation(appClient: GitHubOctokit, scope: GitHubScope): Promise<number> {
  try {
    if ('repository' in scope) {
      const [owner, repo] = scope.repository.split('/');
      const { data } = await appClient.request('GET /repos/{owner}/{repo}/installation', { owner: owner ?? '', repo: repo ?? '' });
      return data.id;
    }
    if ('organization' in scope) {
      const { data } = await appClient.request('GET /orgs/{org}/installation', { org: scope.organization });
      return data.id;
    }
    const wanted = scope.enterprise.toLowerCase();
    for (let page = 1; page <= 100; page++) {
      const { data } = await appClient.request('GET /app/installations', { per_page: 100, page });
      for (const installation of data) {
        const account = (installation.account ?? {}) as { slug?: string; login?: string };
        const name = (account.slug ?? account.login ?? '').toLowerCase();
        if (installation.target_type === 'Enterprise' && name === wanted) return installation.id;
      }
      if (data.length < 100) break;
    }
  } catch (error) {
    const status = statusOf(error);
    if (status === 404) {
      throw new CbactionsError(RegistryErrorCode.InstallationNotFound, `github.auth.app.installationId: the GitHub App is not installed on ${describeScope(scope)} (HTTP 404); install it or set installationId`, { cause: error });
    }
    if (status === 401 || status === 403) {
      throw new CbactionsError(RegistryErrorCode.Auth, `github.auth.app: GitHub refused the App's JWT (HTTP ${status}); check appId and privateKey`, { cause: error });
    }
    throw new CbactionsError(RegistryErrorCode.Failed, `github.auth.app.installationId: cannot look up the installation on ${describeScope(scope)}: ${describeError(error)}`, { cause: error });
  }
  throw new CbactionsError(RegistryErrorCode.InstallationNotFound, `github.auth.app.installationId: the GitHub App is not installed on ${describeScope(scope)}; install it or set installationId`);
}
