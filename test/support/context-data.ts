/**
 * Job message context as the runner serializes it (actions/runner
 * PipelineContextDataJsonConverter): strings, booleans and numbers bare, arrays as
 * `{"t":1,"a":[…]}`, dictionaries as `{"t":2,"d":[{"k":…,"v":…}]}`.
 */
export function contextTree(value: unknown): unknown {
  if (value === null || value === undefined) return null;
  if (typeof value === 'string' || typeof value === 'boolean' || typeof value === 'number') return value;
  if (Array.isArray(value)) return value.length === 0 ? { t: 1 } : { t: 1, a: value.map(contextTree) };
  const entries = Object.entries(value as Record<string, unknown>);
  return entries.length === 0 ? { t: 2 } : { t: 2, d: entries.map(([k, v]) => ({ k, v: contextTree(v) })) };
}

/** A `github` context for a job of `repository` (plus whatever `extra` adds or replaces). */
export function githubContext(repository: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const [owner] = repository.split('/');
  return {
    repository,
    repository_owner: owner,
    event_name: 'push',
    ref: 'refs/heads/main',
    workflow_ref: `${repository}/.github/workflows/ci.yml@refs/heads/main`,
    actor: 'octocat',
    token: 'ghs_context-token-never-read',
    event: { ref: 'refs/heads/main', repository: { full_name: repository } },
    ...extra,
  };
}

/** The `github` context of a pull request from `head` (owner/name) to `repository`. */
export function pullRequestContext(repository: string, head: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return githubContext(repository, {
    event_name: 'pull_request',
    ref: 'refs/pull/7/merge',
    actor: 'contributor',
    event: {
      number: 7,
      pull_request: {
        head: { ref: 'feature', repo: { full_name: head, fork: head.toLowerCase() !== repository.toLowerCase() } },
        base: { ref: 'main', repo: { full_name: repository, fork: false } },
      },
    },
    ...extra,
  });
}
