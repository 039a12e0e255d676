/** RunnerRegistry over the GitHub REST API (Octokit with retry and throttling). */
import type { GitHubScope } from '../config/schema.js';
import { CbactionsError, describeError } from '../util/errors.js';
import type { GitHubOctokit } from './github-client.js';
import {
  RegistryErrorCode,
  type JitConfigRequest,
  type JitRegistration,
  type RegisteredRunner,
  type RegistrationToken,
  type RequestOptions,
  type RunnerGroup,
  type RunnerRegistry,
} from './runner-registry.js';
import { describeScope, scopeApiPath } from './scope.js';

const PAGE_SIZE = 100;
const MAX_PAGES = 1000;
/** Repositories have no runner groups; GitHub files their runners under the default group, id 1. */
const DEFAULT_RUNNER_GROUP: RunnerGroup = { id: 1, name: 'Default' };

function statusOf(error: unknown): number | undefined {
  const status = (error as { status?: unknown } | null)?.status;
  return typeof status === 'number' ? status : undefined;
}

/** GitHub's own `message` from an error body (never the request, which carries the token). */
function githubMessage(error: unknown): string {
  const data = (error as { response?: { data?: unknown } } | null)?.response?.data;
  const message = typeof data === 'object' && data !== null ? (data as { message?: unknown }).message : undefined;
  return typeof message === 'string' ? message.slice(0, 300) : describeError(error).slice(0, 300);
}

function toError(error: unknown, what: string): CbactionsError {
  if (error instanceof CbactionsError) return error;
  const status = statusOf(error);
  const detail = `${what}: ${status !== undefined ? `HTTP ${status} ` : ''}${githubMessage(error)}`;
  let code: string = RegistryErrorCode.Failed;
  if (status === 401 || status === 403) code = RegistryErrorCode.Auth;
  else if (status === 404) code = RegistryErrorCode.NotFound;
  else if (status === 409) code = RegistryErrorCode.Conflict;
  else if (status === 422 || status === 400) code = RegistryErrorCode.Invalid;
  else if (status === 429) code = RegistryErrorCode.RateLimited;
  return new CbactionsError(code, detail, { cause: error });
}

function parseRunner(value: unknown): RegisteredRunner {
  const runner = (value ?? {}) as Record<string, unknown>;
  if (typeof runner.id !== 'number' || typeof runner.name !== 'string') {
    throw new CbactionsError(RegistryErrorCode.BadResponse, 'GitHub returned a runner without a numeric id and a name');
  }
  const labels = Array.isArray(runner.labels) ? runner.labels.map((label) => (typeof label === 'string' ? label : String((label as { name?: unknown }).name ?? ''))) : [];
  return { id: runner.id, name: runner.name, status: typeof runner.status === 'string' ? runner.status : 'unknown', busy: runner.busy === true, labels };
}

export class OctokitRunnerRegistry implements RunnerRegistry {
  readonly #path: string;

  constructor(
    private readonly octokit: GitHubOctokit,
    private readonly scope: GitHubScope,
  ) {
    this.#path = scopeApiPath(scope);
  }

  /**
   * The caller's signal is relayed through a signal of our own, aborted without a reason:
   * fetch then rejects with a plain AbortError, which @octokit/request passes through and
   * plugin-retry does not retry. A signal aborted with a custom reason (as the mux's root
   * signal is) would surface as an HTTP-500-like error and be retried for seconds.
   */
  async #call(method: string, path: string, params: Record<string, unknown>, options: RequestOptions | undefined, what: string): Promise<unknown> {
    const relay = new AbortController();
    const onAbort = () => relay.abort();
    const signal = options?.signal;
    if (signal?.aborted) relay.abort();
    else signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const response = await this.octokit.request(`${method} ${path}`, { ...params, request: { signal: relay.signal } });
      return response.data;
    } catch (error) {
      if (relay.signal.aborted) throw new CbactionsError(RegistryErrorCode.Aborted, `${what}: aborted (the mux is stopping)`, { cause: error });
      throw toError(error, what);
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  async generateJitConfig(request: JitConfigRequest, options?: RequestOptions): Promise<JitRegistration> {
    const data = (await this.#call(
      'POST',
      `${this.#path}/actions/runners/generate-jitconfig`,
      { name: request.name, runner_group_id: request.runnerGroupId, labels: request.labels, work_folder: request.workFolder },
      options,
      `generate a JIT config for runner ${request.name} on ${describeScope(this.scope)}`,
    )) as { runner?: unknown; encoded_jit_config?: unknown };
    if (typeof data?.encoded_jit_config !== 'string') {
      throw new CbactionsError(RegistryErrorCode.BadResponse, `GitHub's generate-jitconfig answer for ${request.name} has no encoded_jit_config`);
    }
    return { runner: parseRunner(data.runner), encodedJitConfig: data.encoded_jit_config };
  }

  async createRegistrationToken(options?: RequestOptions): Promise<RegistrationToken> {
    const data = (await this.#call('POST', `${this.#path}/actions/runners/registration-token`, {}, options, `create a registration token on ${describeScope(this.scope)}`)) as {
      token?: unknown;
      expires_at?: unknown;
    };
    if (typeof data?.token !== 'string') throw new CbactionsError(RegistryErrorCode.BadResponse, 'GitHub returned no registration token');
    return { token: data.token, expiresAt: typeof data.expires_at === 'string' ? data.expires_at : '' };
  }

  async listRunners(options?: RequestOptions): Promise<RegisteredRunner[]> {
    const runners: RegisteredRunner[] = [];
    for (let page = 1; page <= MAX_PAGES; page++) {
      const data = (await this.#call('GET', `${this.#path}/actions/runners`, { per_page: PAGE_SIZE, page }, options, `list runners of ${describeScope(this.scope)}`)) as {
        total_count?: unknown;
        runners?: unknown;
      };
      const batch = Array.isArray(data?.runners) ? data.runners : [];
      runners.push(...batch.map(parseRunner));
      const total = typeof data?.total_count === 'number' ? data.total_count : undefined;
      if (batch.length < PAGE_SIZE || (total !== undefined && runners.length >= total)) break;
    }
    return runners;
  }

  async deleteRunner(id: number, options?: RequestOptions): Promise<boolean> {
    try {
      await this.#call('DELETE', `${this.#path}/actions/runners/{runner_id}`, { runner_id: id }, options, `delete runner ${id} from ${describeScope(this.scope)}`);
      return true;
    } catch (error) {
      if (error instanceof CbactionsError && error.code === RegistryErrorCode.NotFound) return false;
      throw error;
    }
  }

  async findRunnerGroup(nameOrId: string | number, options?: RequestOptions): Promise<RunnerGroup> {
    if ('repository' in this.scope) {
      if (nameOrId === DEFAULT_RUNNER_GROUP.id || (typeof nameOrId === 'string' && nameOrId.toLowerCase() === 'default')) return DEFAULT_RUNNER_GROUP;
      throw new CbactionsError(RegistryErrorCode.RunnerGroupNotFound, `github.runnerGroup: repository runners have no runner groups; remove runnerGroup or use "Default" (got ${JSON.stringify(nameOrId)})`);
    }
    const groups: RunnerGroup[] = [];
    for (let page = 1; page <= MAX_PAGES; page++) {
      const data = (await this.#call('GET', `${this.#path}/actions/runner-groups`, { per_page: PAGE_SIZE, page }, options, `list runner groups of ${describeScope(this.scope)}`)) as {
        runner_groups?: unknown;
      };
      const batch = Array.isArray(data?.runner_groups) ? (data.runner_groups as { id?: unknown; name?: unknown }[]) : [];
      for (const group of batch) {
        if (typeof group.id === 'number' && typeof group.name === 'string') groups.push({ id: group.id, name: group.name });
      }
      if (batch.length < PAGE_SIZE) break;
    }
    const found =
      typeof nameOrId === 'number'
        ? groups.find((group) => group.id === nameOrId)
        : (groups.find((group) => group.name === nameOrId) ?? groups.find((group) => group.name.toLowerCase() === nameOrId.toLowerCase()));
    if (!found) {
      const known = groups.map((group) => `${group.name} (${group.id})`).join(', ') || 'none';
      throw new CbactionsError(RegistryErrorCode.RunnerGroupNotFound, `github.runnerGroup: no runner group ${JSON.stringify(nameOrId)} in ${describeScope(this.scope)}; it has: ${known}`);
    }
    return found;
  }
}
