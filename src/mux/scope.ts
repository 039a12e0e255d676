/**
 * Where a scope lives on GitHub: REST path, API base URL, and the URL `config.sh --url`
 * takes. GitHub.com's API is api.github.com; GitHub Enterprise Server's is `<url>/api/v3`.
 */
import type { GitHubScope } from '../config/schema.js';

export function isGitHubDotCom(url: string): boolean {
  const host = new URL(url).hostname.toLowerCase();
  return host === 'github.com' || host === 'www.github.com';
}

export function apiBaseUrl(url: string): string {
  if (isGitHubDotCom(url)) return 'https://api.github.com';
  return `${url.replace(/\/+$/, '')}/api/v3`;
}

/** `/repos/o/r`, `/orgs/o` or `/enterprises/e`: the prefix of the scope's runner endpoints. */
export function scopeApiPath(scope: GitHubScope): string {
  if ('repository' in scope) return `/repos/${scope.repository}`;
  if ('organization' in scope) return `/orgs/${scope.organization}`;
  return `/enterprises/${scope.enterprise}`;
}

/** The URL the runner is configured against (`config.sh --url`). */
export function scopeWebUrl(url: string, scope: GitHubScope): string {
  const base = url.replace(/\/+$/, '');
  if ('repository' in scope) return `${base}/${scope.repository}`;
  if ('organization' in scope) return `${base}/${scope.organization}`;
  return `${base}/enterprises/${scope.enterprise}`;
}

export function describeScope(scope: GitHubScope): string {
  if ('repository' in scope) return `repository ${scope.repository}`;
  if ('organization' in scope) return `organization ${scope.organization}`;
  return `enterprise ${scope.enterprise}`;
}
