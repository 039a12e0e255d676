/**
 * The GitHub edge of the mux, as narrow as the mux needs it. One scope (repository,
 * organization or enterprise) per registry; the Octokit adapter is `OctokitRunnerRegistry`.
 */
export interface RegisteredRunner {
  id: number;
  name: string;
  /** `online` or `offline` as GitHub reports it. */
  status: string;
  busy: boolean;
  labels: string[];
}

export interface JitConfigRequest {
  name: string;
  labels: string[];
  runnerGroupId: number;
  workFolder: string;
}

export interface JitRegistration {
  runner: RegisteredRunner;
  /** Secret: holds the runner's RSA private key. Never log it. */
  encodedJitConfig: string;
}

export interface RegistrationToken {
  /** Secret: lets its holder register runners until it expires. */
  token: string;
  expiresAt: string;
}

export interface RunnerGroup {
  id: number;
  name: string;
}

export interface RequestOptions {
  signal?: AbortSignal;
}

export interface RunnerRegistry {
  generateJitConfig(request: JitConfigRequest, options?: RequestOptions): Promise<JitRegistration>;
  createRegistrationToken(options?: RequestOptions): Promise<RegistrationToken>;
  /** Every runner of the scope (all pages). */
  listRunners(options?: RequestOptions): Promise<RegisteredRunner[]>;
  /** Resolves to false when the runner was already gone (404). */
  deleteRunner(id: number, options?: RequestOptions): Promise<boolean>;
  /** A runner group by name or id. Repository scope has only the default group (id 1). */
  findRunnerGroup(nameOrId: string | number, options?: RequestOptions): Promise<RunnerGroup>;
}

export const RegistryErrorCode = {
  Auth: 'GITHUB_AUTH',
  NotFound: 'GITHUB_NOT_FOUND',
  Conflict: 'GITHUB_CONFLICT',
  Invalid: 'GITHUB_INVALID_REQUEST',
  RateLimited: 'GITHUB_RATE_LIMITED',
  Failed: 'GITHUB_REQUEST_FAILED',
  Aborted: 'GITHUB_REQUEST_ABORTED',
  BadResponse: 'GITHUB_BAD_RESPONSE',
  RunnerGroupNotFound: 'GITHUB_RUNNER_GROUP_NOT_FOUND',
  InstallationNotFound: 'GITHUB_INSTALLATION_NOT_FOUND',
} as const;
