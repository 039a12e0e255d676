/**
 * A fake of the GitHub REST endpoints the mux uses, plus a fake job broker for the fake
 * Runner.Listener — a real HTTP server on 127.0.0.1.
 *
 * REST (served at `/api/v3/...` as on GHES, and at `/...` too):
 *   POST   /repos/{o}/{r}|/orgs/{org}|/enterprises/{e} /actions/runners/generate-jitconfig
 *   POST   …/actions/runners/registration-token
 *   GET    …/actions/runners?per_page&page          (paginated, Link header)
 *   DELETE …/actions/runners/{id}
 *   GET    /orgs/{org}/actions/runner-groups, /enterprises/{e}/actions/runner-groups
 *   GET    /repos/{o}/{r}/installation, /orgs/{org}/installation, /app/installations  (App JWT)
 *   POST   /app/installations/{id}/access_tokens                                     (App JWT)
 *   POST   /actions/runner-registration     (what `config.sh` calls with a registration token)
 * Every scope endpoint wants `Authorization: token X` / `Bearer X` with a configured PAT or
 * an installation token this fake issued (401 otherwise); App endpoints want an RS256 JWT
 * signed by the test's key with `iss` = the app id.
 *
 * The encoded JIT config is what GitHub returns (RUNNER-PROTOCOL §5): base64 of JSON
 * `{".runner": b64, ".credentials": b64, ".credentials_rsaparams": b64}`. Its `.runner` has
 * `ephemeral: true` and NO `disableUpdate` (configurable), so the mux's enforcement is tested.
 *
 * Broker (the `.runner`'s `serverUrl` is `<origin>/_fake/broker`), used by the fake listener:
 *   POST   /_fake/broker/sessions                 create a session (401 unknown runner, 409 conflict)
 *   DELETE /_fake/broker/sessions/{id}
 *   GET    /_fake/broker/sessions/{id}/message?disableUpdate=true|false   long poll: 200 message | 204
 *   POST   /_fake/broker/jobs/{id}/result         {result, exitCode}
 *   POST   /_fake/broker/agents                   configure: register with the temporary token
 * Runner auth header: `FakeRunner <agentId>:<clientId>:<sha256 hex of .credentials_rsaparams>`.
 *
 * Test control (also methods on the class):
 *   POST /_fake/jobs {labels, body}  GET /_fake/jobs          queue jobs / read results
 *     (the queue: a job goes to one online idle runner whose labels include the job's, the
 *     oldest job first; it stays queued while none polls. A runner given a job is busy until
 *     it reports the result, and DELETE of a busy runner is refused with 422, as on GitHub.)
 *   POST /_fake/instructions {labels?|runner?, kind: exit|update, code?, count?}  (count -1 = forever)
 *   GET  /_fake/runners  /_fake/deleted  /_fake/calls  /_fake/sessions
 *   POST /_fake/faults {method, path (regex), status, count}
 */
import { createHash, createPublicKey, randomBytes, randomUUID, verify, type KeyObject } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeRunner {
  id: number;
  name: string;
  scope: string;
  labels: string[];
  runnerGroupId: number;
  ephemeral: boolean;
  /** Issued credentials: the broker checks the listener presents them. */
  clientId: string;
  rsaParamsSha256: string;
  createdBy: 'jit' | 'configure';
  /** The `disableUpdate` the listener sent on its last poll (undefined: never polled). */
  lastPollDisableUpdate?: boolean;
  /** Set while a listener polls: `online`. */
  lastSeen?: number;
  busy: boolean;
  /** `online`/`offline` forced by the test (stale-registration tests). */
  forcedStatus?: 'online' | 'offline';
}

export interface FakeJob {
  id: number;
  labels: string[];
  body: string;
  displayName: string;
  status: 'queued' | 'assigned' | 'completed';
  /** Epoch ms: queued, handed to a runner. */
  queuedAt: number;
  assignedAt?: number;
  runnerName?: string;
  result?: string;
  exitCode?: number | null;
}

export interface FakeInstruction {
  kind: 'exit' | 'update';
  code?: number;
  labels?: string[];
  runner?: string;
  /** How many runners receive it; -1 = every matching poll, forever. */
  count: number;
}

export interface FakeCall {
  method: string;
  path: string;
  status: number;
  auth: 'pat' | 'installation' | 'jwt' | 'runner' | 'none' | 'bad';
}

export interface FakeInstallation {
  id: number;
  account: string;
  targetType: 'Repository' | 'Organization' | 'Enterprise';
}

export interface FakeGitHubOptions {
  /** Valid personal access tokens. */
  tokens?: string[];
  app?: { id: number; publicKeyPem: string; installations: FakeInstallation[] };
  /** Runner groups of organizations/enterprises, keyed by `orgs/<org>` or `enterprises/<e>`; default `Default` (1). */
  runnerGroups?: Record<string, { id: number; name: string }[]>;
  /** `disableUpdate` in the JIT `.runner`: absent by default. */
  jitDisableUpdate?: boolean;
  /** `ephemeral` in the JIT `.runner`: true by default (as GitHub sends), 'absent' to leave it out. */
  jitEphemeral?: boolean | 'absent';
  /** How long a message poll waits before answering 204. */
  pollWaitMs?: number;
  /** A runner counts as online this long after its last poll. */
  onlineWindowMs?: number;
}

interface Fault {
  method: string;
  path: RegExp;
  status: number;
  count: number;
}

interface Session {
  id: string;
  runnerId: number;
  pid?: number;
  lastPoll: number;
  closed: boolean;
}

type Handler = (request: IncomingMessage, response: ServerResponse, match: RegExpExecArray, body: unknown) => Promise<void> | void;

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function b64(value: string | Buffer): string {
  return Buffer.from(value).toString('base64');
}

function sha256(value: string | Buffer): string {
  return createHash('sha256').update(value).digest('hex');
}

function base64UrlDecode(value: string): Buffer {
  return Buffer.from(value.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
}

function labelsMatch(wanted: readonly string[], runner: readonly string[]): boolean {
  const have = new Set(runner.map((label) => label.toLowerCase()));
  return wanted.every((label) => have.has(label.toLowerCase()));
}

export class FakeGitHub {
  readonly runners = new Map<number, FakeRunner>();
  readonly deleted: { runner: FakeRunner; by: 'api' | 'ephemeral' | 'replace' }[] = [];
  readonly jobs: FakeJob[] = [];
  readonly instructions: FakeInstruction[] = [];
  readonly calls: FakeCall[] = [];
  readonly sessions = new Map<string, Session>();
  readonly registrationTokens = new Map<string, { scope: string; expires: number }>();
  readonly installationTokens = new Map<string, number>();
  readonly faults: Fault[] = [];
  /** The most sessions open at once (checked at each new one): listeners running at the same time. */
  peakSessions = 0;
  #server: Server | undefined;
  #origin = '';
  #nextId = 1000;
  #nextJob = 1;
  #waiters = new Set<() => void>();
  #tempTokens = new Map<string, string>();
  #publicKey: KeyObject | undefined;
  #routes: { method: string; pattern: RegExp; handler: Handler }[] = [];

  constructor(readonly options: FakeGitHubOptions = {}) {
    if (options.app) this.#publicKey = createPublicKey(options.app.publicKeyPem);
    this.#defineRoutes();
  }

  /** `http://127.0.0.1:PORT`: use it as `github.url` (GHES-style, API at /api/v3). */
  get url(): string {
    return this.#origin;
  }

  get apiUrl(): string {
    return `${this.#origin}/api/v3`;
  }

  async start(): Promise<this> {
    this.#server = createServer((request, response) => void this.#handle(request, response));
    await new Promise<void>((resolve) => this.#server?.listen(0, '127.0.0.1', resolve));
    const { port } = this.#server.address() as AddressInfo;
    this.#origin = `http://127.0.0.1:${port}`;
    return this;
  }

  async stop(): Promise<void> {
    for (const wake of this.#waiters) wake();
    const server = this.#server;
    if (!server) return;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  // ---- test control ------------------------------------------------------------------

  queueJob(labels: string[], body: string): FakeJob {
    let displayName = 'job';
    try {
      const parsed = JSON.parse(body) as { jobDisplayName?: unknown };
      if (typeof parsed.jobDisplayName === 'string') displayName = parsed.jobDisplayName;
    } catch {
      /* a body that is not JSON still travels; the fake worker will refuse it */
    }
    const job: FakeJob = { id: this.#nextJob++, labels, body, displayName, status: 'queued', queuedAt: Date.now() };
    this.jobs.push(job);
    this.#wakeAll();
    return job;
  }

  /**
   * What GitHub does once a job's lease is no longer renewed (its listener died): the job ends
   * as abandoned and its runner is no longer busy, so it can be deleted.
   */
  abandon(job: FakeJob): void {
    if (job.status !== 'assigned') return;
    job.status = 'completed';
    job.result = 'Abandoned';
    job.exitCode = null;
    const runner = [...this.runners.values()].find((candidate) => candidate.name === job.runnerName);
    if (runner) runner.busy = false;
  }

  instruct(instruction: Omit<FakeInstruction, 'count'> & { count?: number }): void {
    this.instructions.push({ count: 1, ...instruction });
    this.#wakeAll();
  }

  /** Registers a runner directly (e.g. a stale one from an earlier life of the host). */
  addRunner(fields: { name: string; scope: string; labels?: string[]; status?: 'online' | 'offline' }): FakeRunner {
    const runner: FakeRunner = {
      id: this.#nextId++,
      name: fields.name,
      scope: fields.scope,
      labels: fields.labels ?? ['self-hosted'],
      runnerGroupId: 1,
      ephemeral: true,
      clientId: randomUUID(),
      rsaParamsSha256: '',
      createdBy: 'jit',
      busy: false,
      forcedStatus: fields.status,
    };
    this.runners.set(runner.id, runner);
    return runner;
  }

  addFault(fault: { method: string; path: string | RegExp; status: number; count?: number }): void {
    this.faults.push({ method: fault.method.toUpperCase(), path: typeof fault.path === 'string' ? new RegExp(fault.path) : fault.path, status: fault.status, count: fault.count ?? 1 });
  }

  /** Sessions of listeners that still run: not closed, runner still registered, and busy or polled within the online window. */
  openSessions(): number {
    const now = Date.now();
    return [...this.sessions.values()].filter((session) => {
      const runner = this.runners.get(session.runnerId);
      return !session.closed && runner !== undefined && (runner.busy || now - session.lastPoll < (this.options.onlineWindowMs ?? 5_000));
    }).length;
  }

  runnerStatus(runner: FakeRunner): 'online' | 'offline' {
    if (runner.forcedStatus) return runner.forcedStatus;
    return runner.lastSeen !== undefined && Date.now() - runner.lastSeen < (this.options.onlineWindowMs ?? 5_000) ? 'online' : 'offline';
  }

  // ---- HTTP plumbing -----------------------------------------------------------------

  async #handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? '/', 'http://fake');
    const path = url.pathname.replace(/^\/api\/v3(?=\/)/, '');
    const method = (request.method ?? 'GET').toUpperCase();
    const call: FakeCall = { method, path: path + url.search, status: 0, auth: 'none' };
    (request as IncomingMessage & { fakeCall?: FakeCall; fakeUrl?: URL }).fakeCall = call;
    (request as IncomingMessage & { fakeUrl?: URL }).fakeUrl = url;
    response.on('finish', () => {
      call.status = response.statusCode;
      if (!path.startsWith('/_fake/') || path.startsWith('/_fake/broker/')) this.calls.push(call);
    });
    try {
      const raw = await new Promise<Buffer>((resolve, reject) => {
        const chunks: Buffer[] = [];
        request.on('data', (chunk: Buffer) => chunks.push(chunk));
        request.on('end', () => resolve(Buffer.concat(chunks)));
        request.on('error', reject);
      });
      let body: unknown = undefined;
      if (raw.length > 0) {
        try {
          body = JSON.parse(raw.toString('utf8'));
        } catch {
          throw new HttpError(400, 'Problems parsing JSON');
        }
      }
      const fault = this.faults.find((candidate) => candidate.count !== 0 && candidate.method === method && candidate.path.test(path));
      if (fault) {
        fault.count -= 1;
        throw new HttpError(fault.status, `injected fault ${fault.status}`);
      }
      for (const route of this.#routes) {
        if (route.method !== method) continue;
        const match = route.pattern.exec(path);
        if (match) {
          await route.handler(request, response, match, body);
          return;
        }
      }
      throw new HttpError(404, 'Not Found');
    } catch (error) {
      const status = error instanceof HttpError ? error.status : 500;
      if (!response.headersSent) this.#json(response, status, { message: error instanceof Error ? error.message : String(error), documentation_url: 'https://docs.github.com/rest' });
      else response.end();
    }
  }

  #json(response: ServerResponse, status: number, value: unknown, headers: Record<string, string> = {}): void {
    const text = value === undefined ? '' : JSON.stringify(value);
    response.writeHead(status, { 'content-type': 'application/json; charset=utf-8', ...headers });
    response.end(text);
  }

  #route(method: string, pattern: RegExp, handler: Handler): void {
    this.#routes.push({ method, pattern, handler });
  }

  #wakeAll(): void {
    for (const wake of [...this.#waiters]) wake();
  }

  // ---- auth --------------------------------------------------------------------------

  #callOf(request: IncomingMessage): FakeCall {
    return (request as IncomingMessage & { fakeCall: FakeCall }).fakeCall;
  }

  #credential(request: IncomingMessage): string | undefined {
    const header = request.headers.authorization ?? '';
    const match = /^(?:token|bearer)\s+(\S+)$/i.exec(header);
    return match?.[1];
  }

  /** PAT or installation token; 401 otherwise (GitHub's "Bad credentials"). */
  #requireToken(request: IncomingMessage): void {
    const credential = this.#credential(request);
    const call = this.#callOf(request);
    if (credential !== undefined && (this.options.tokens ?? []).includes(credential)) {
      call.auth = 'pat';
      return;
    }
    if (credential !== undefined && this.installationTokens.has(credential)) {
      call.auth = 'installation';
      return;
    }
    call.auth = credential === undefined ? 'none' : 'bad';
    throw new HttpError(401, 'Bad credentials');
  }

  /** An RS256 JWT signed with the App's key, `iss` = app id, not expired. */
  #requireJwt(request: IncomingMessage): void {
    const call = this.#callOf(request);
    const credential = this.#credential(request);
    const app = this.options.app;
    const parts = credential?.split('.') ?? [];
    if (!app || !this.#publicKey || parts.length !== 3) {
      call.auth = 'bad';
      throw new HttpError(401, 'A JSON web token could not be decoded');
    }
    const [header, payload, signature] = parts as [string, string, string];
    const valid = verify('RSA-SHA256', Buffer.from(`${header}.${payload}`), this.#publicKey, base64UrlDecode(signature));
    let claims: { iss?: unknown; exp?: unknown; iat?: unknown } = {};
    try {
      claims = JSON.parse(base64UrlDecode(payload).toString('utf8')) as typeof claims;
    } catch {
      claims = {};
    }
    const now = Math.floor(Date.now() / 1000);
    if (!valid || String(claims.iss) !== String(app.id) || typeof claims.exp !== 'number' || claims.exp < now) {
      call.auth = 'bad';
      throw new HttpError(401, "'Issuer' claim ('iss') must be an Integer or the JWT is not signed by the App's key");
    }
    call.auth = 'jwt';
  }

  #runnerFromAuth(request: IncomingMessage): FakeRunner {
    const call = this.#callOf(request);
    const match = /^FakeRunner (\d+):([^:]+):([0-9a-f]{64})$/.exec(request.headers.authorization ?? '');
    const runner = match ? this.runners.get(Number(match[1])) : undefined;
    if (!match || !runner || runner.clientId !== match[2] || runner.rsaParamsSha256 !== match[3]) {
      call.auth = 'bad';
      throw new HttpError(401, 'runner credentials are not valid (deleted runner or wrong files)');
    }
    call.auth = 'runner';
    return runner;
  }

  // ---- routes ------------------------------------------------------------------------

  #defineRoutes(): void {
    const scope = '(repos/[^/]+/[^/]+|orgs/[^/]+|enterprises/[^/]+)';
    this.#route('POST', new RegExp(`^/${scope}/actions/runners/generate-jitconfig$`), (request, response, match, body) => {
      this.#requireToken(request);
      this.#jitConfig(response, match[1] as string, body);
    });
    this.#route('POST', new RegExp(`^/${scope}/actions/runners/registration-token$`), (request, response, match) => {
      this.#requireToken(request);
      const token = `AAAA${randomBytes(15).toString('hex').toUpperCase()}`;
      const expires = Date.now() + 3600_000;
      this.registrationTokens.set(token, { scope: match[1] as string, expires });
      this.#json(response, 201, { token, expires_at: new Date(expires).toISOString() });
    });
    this.#route('GET', new RegExp(`^/${scope}/actions/runners$`), (request, response, match) => {
      this.#requireToken(request);
      const url = (request as IncomingMessage & { fakeUrl: URL }).fakeUrl;
      const perPage = Math.min(100, Math.max(1, Number(url.searchParams.get('per_page') ?? 30)));
      const page = Math.max(1, Number(url.searchParams.get('page') ?? 1));
      const all = [...this.runners.values()].filter((runner) => runner.scope === match[1]);
      const slice = all.slice((page - 1) * perPage, page * perPage);
      const last = Math.max(1, Math.ceil(all.length / perPage));
      const link: Record<string, string> = page < last ? { link: `<${this.apiUrl}/${match[1]}/actions/runners?per_page=${perPage}&page=${page + 1}>; rel="next", <${this.apiUrl}/${match[1]}/actions/runners?per_page=${perPage}&page=${last}>; rel="last"` } : {};
      this.#json(response, 200, { total_count: all.length, runners: slice.map((runner) => this.#runnerJson(runner)) }, link);
    });
    this.#route('DELETE', new RegExp(`^/${scope}/actions/runners/(\\d+)$`), (request, response, match) => {
      this.#requireToken(request);
      const runner = this.runners.get(Number(match[2]));
      if (!runner || runner.scope !== match[1]) throw new HttpError(404, 'Not Found');
      // GitHub refuses to remove a runner that has been assigned a job until the job is done.
      if (runner.busy) throw new HttpError(422, `Bad request - Runner "${runner.name}" is still running a job`);
      this.#remove(runner, 'api');
      response.writeHead(204).end();
    });
    this.#route('GET', /^\/(orgs\/[^/]+|enterprises\/[^/]+)\/actions\/runner-groups$/, (request, response, match) => {
      this.#requireToken(request);
      const url = (request as IncomingMessage & { fakeUrl: URL }).fakeUrl;
      const perPage = Math.min(100, Math.max(1, Number(url.searchParams.get('per_page') ?? 30)));
      const page = Math.max(1, Number(url.searchParams.get('page') ?? 1));
      const groups = this.#groups(match[1] as string);
      const slice = groups.slice((page - 1) * perPage, page * perPage);
      this.#json(response, 200, { total_count: groups.length, runner_groups: slice.map((group) => ({ id: group.id, name: group.name, visibility: 'all', default: group.id === 1 })) });
    });
    // GitHub App.
    this.#route('GET', /^\/repos\/([^/]+)\/([^/]+)\/installation$/, (request, response, match) => {
      this.#requireJwt(request);
      this.#installation(response, (i) => i.targetType === 'Repository' && i.account.toLowerCase() === `${match[1]}/${match[2]}`.toLowerCase());
    });
    this.#route('GET', /^\/orgs\/([^/]+)\/installation$/, (request, response, match) => {
      this.#requireJwt(request);
      this.#installation(response, (i) => i.targetType === 'Organization' && i.account.toLowerCase() === (match[1] as string).toLowerCase());
    });
    this.#route('GET', /^\/app\/installations$/, (request, response) => {
      this.#requireJwt(request);
      this.#json(
        response,
        200,
        (this.options.app?.installations ?? []).map((installation) => ({
          id: installation.id,
          target_type: installation.targetType,
          account: installation.targetType === 'Enterprise' ? { slug: installation.account, name: installation.account } : { login: installation.account.split('/')[0] },
        })),
      );
    });
    this.#route('POST', /^\/app\/installations\/(\d+)\/access_tokens$/, (request, response, match) => {
      this.#requireJwt(request);
      const id = Number(match[1]);
      if (!(this.options.app?.installations ?? []).some((installation) => installation.id === id)) throw new HttpError(404, 'Not Found');
      const token = `ghs_${randomBytes(18).toString('hex')}`;
      this.installationTokens.set(token, id);
      this.#json(response, 201, { token, expires_at: new Date(Date.now() + 3600_000).toISOString(), permissions: { administration: 'write' }, repository_selection: 'all' });
    });
    // What config.sh does with a registration token: exchange it for the pipelines URL + a temporary token.
    this.#route('POST', /^\/actions\/runner-registration$/, (request, response, _match, body) => {
      const call = this.#callOf(request);
      const token = /^RemoteAuth (\S+)$/.exec(request.headers.authorization ?? '')?.[1];
      const registration = token ? this.registrationTokens.get(token) : undefined;
      if (!token || !registration || registration.expires < Date.now()) {
        call.auth = 'bad';
        throw new HttpError(404, 'registration token is not valid');
      }
      const githubUrl = String((body as { url?: unknown })?.url ?? '');
      const wantedScope = this.#scopeFromWebUrl(githubUrl);
      if (wantedScope !== registration.scope) throw new HttpError(400, `the registration token is for ${registration.scope}, not ${githubUrl}`);
      call.auth = 'pat';
      const temp = `temp-${randomBytes(12).toString('hex')}`;
      this.#tempTokens.set(temp, registration.scope);
      this.#json(response, 200, { url: `${this.#origin}/_fake/broker`, token: temp, token_schema: 'OAuthAccessToken' });
    });
    this.#route('POST', /^\/_fake\/broker\/agents$/, (request, response, _match, body) => this.#configureAgent(request, response, body));
    this.#route('POST', /^\/_fake\/broker\/sessions$/, (request, response, _match, body) => this.#createSession(request, response, body));
    this.#route('DELETE', /^\/_fake\/broker\/sessions\/([^/]+)$/, (request, response, match) => {
      this.#runnerFromAuth(request);
      const session = this.sessions.get(match[1] as string);
      if (session) session.closed = true;
      response.writeHead(204).end();
    });
    this.#route('GET', /^\/_fake\/broker\/sessions\/([^/]+)\/message$/, (request, response, match) => this.#poll(request, response, match[1] as string));
    this.#route('POST', /^\/_fake\/broker\/jobs\/(\d+)\/result$/, (request, response, match, body) => {
      const runner = this.#runnerFromAuth(request);
      const job = this.jobs.find((candidate) => candidate.id === Number(match[1]));
      if (!job || job.runnerName !== runner.name) throw new HttpError(404, 'no such job for this runner');
      const result = body as { result?: unknown; exitCode?: unknown };
      job.status = 'completed';
      job.result = String(result.result ?? 'Failed');
      job.exitCode = typeof result.exitCode === 'number' ? result.exitCode : null;
      runner.busy = false;
      // GitHub removes an ephemeral runner once its job is done.
      if (runner.ephemeral) this.#remove(runner, 'ephemeral');
      response.writeHead(204).end();
    });
    // Test control.
    this.#route('POST', /^\/_fake\/jobs$/, (_request, response, _match, body) => {
      const { labels, body: jobBody } = body as { labels: string[]; body: string };
      this.#json(response, 201, this.queueJob(labels, jobBody));
    });
    this.#route('GET', /^\/_fake\/jobs$/, (_request, response) => this.#json(response, 200, this.jobs.map(({ body: _body, ...rest }) => rest)));
    this.#route('POST', /^\/_fake\/instructions$/, (_request, response, _match, body) => {
      this.instruct(body as FakeInstruction);
      response.writeHead(204).end();
    });
    this.#route('GET', /^\/_fake\/runners$/, (_request, response) => this.#json(response, 200, [...this.runners.values()].map((runner) => ({ ...this.#runnerJson(runner), scope: runner.scope }))));
    this.#route('GET', /^\/_fake\/deleted$/, (_request, response) => this.#json(response, 200, this.deleted.map(({ runner, by }) => ({ name: runner.name, id: runner.id, by }))));
    this.#route('GET', /^\/_fake\/calls$/, (_request, response) => this.#json(response, 200, this.calls));
    this.#route('GET', /^\/_fake\/sessions$/, (_request, response) => this.#json(response, 200, [...this.sessions.values()]));
    this.#route('POST', /^\/_fake\/faults$/, (_request, response, _match, body) => {
      this.addFault(body as { method: string; path: string; status: number; count?: number });
      response.writeHead(204).end();
    });
  }

  #runnerJson(runner: FakeRunner) {
    return {
      id: runner.id,
      name: runner.name,
      os: 'Linux',
      status: this.runnerStatus(runner),
      busy: runner.busy,
      labels: runner.labels.map((name, index) => ({ id: index + 1, name, type: index === 0 && name === 'self-hosted' ? 'read-only' : 'custom' })),
    };
  }

  #groups(scope: string): { id: number; name: string }[] {
    return this.options.runnerGroups?.[scope] ?? [{ id: 1, name: 'Default' }];
  }

  #scopeFromWebUrl(url: string): string | undefined {
    try {
      const path = new URL(url).pathname.replace(/\/+$/, '').split('/').filter(Boolean);
      if (path[0] === 'enterprises' && path.length === 2) return `enterprises/${path[1]}`;
      if (path.length === 2) return `repos/${path[0]}/${path[1]}`;
      if (path.length === 1) return `orgs/${path[0]}`;
    } catch {
      return undefined;
    }
    return undefined;
  }

  #webUrl(scope: string): string {
    if (scope.startsWith('repos/')) return `${this.#origin}/${scope.slice('repos/'.length)}`;
    if (scope.startsWith('orgs/')) return `${this.#origin}/${scope.slice('orgs/'.length)}`;
    return `${this.#origin}/${scope}`;
  }

  #installation(response: ServerResponse, predicate: (installation: FakeInstallation) => boolean): void {
    const installation = (this.options.app?.installations ?? []).find(predicate);
    if (!installation) throw new HttpError(404, 'Not Found');
    this.#json(response, 200, { id: installation.id, app_id: this.options.app?.id, target_type: installation.targetType });
  }

  #remove(runner: FakeRunner, by: 'api' | 'ephemeral' | 'replace'): void {
    if (!this.runners.delete(runner.id)) return;
    this.deleted.push({ runner, by });
    for (const session of this.sessions.values()) if (session.runnerId === runner.id) session.closed = true;
    this.#wakeAll();
  }

  #checkNewRunner(scope: string, name: unknown, labels: unknown, runnerGroupId: number): { name: string; labels: string[] } {
    if (typeof name !== 'string' || name === '' || name.length > 64) throw new HttpError(422, 'name must be 1..64 characters');
    if (!Array.isArray(labels) || labels.length < 1 || labels.length > 100 || labels.some((label) => typeof label !== 'string' || label === '')) {
      throw new HttpError(422, 'labels must hold 1..100 non-empty strings');
    }
    if (!scope.startsWith('repos/') && !this.#groups(scope).some((group) => group.id === runnerGroupId)) throw new HttpError(404, `runner group ${runnerGroupId} not found`);
    return { name, labels: labels as string[] };
  }

  #jitConfig(response: ServerResponse, scope: string, body: unknown): void {
    const request = (body ?? {}) as { name?: unknown; labels?: unknown; runner_group_id?: unknown; work_folder?: unknown };
    if (typeof request.runner_group_id !== 'number') throw new HttpError(422, 'runner_group_id is required');
    const { name, labels } = this.#checkNewRunner(scope, request.name, request.labels, request.runner_group_id);
    if ([...this.runners.values()].some((runner) => runner.scope === scope && runner.name === name)) throw new HttpError(409, 'Already exists - A runner with the same name already exists.');
    const rsaParams = Buffer.from(
      JSON.stringify({ d: randomBytes(32).toString('base64'), dp: randomBytes(16).toString('base64'), exponent: 'AQAB', modulus: randomBytes(64).toString('base64') }),
    );
    const runner: FakeRunner = {
      id: this.#nextId++,
      name,
      scope,
      labels,
      runnerGroupId: request.runner_group_id,
      ephemeral: true,
      clientId: randomUUID(),
      rsaParamsSha256: sha256(rsaParams),
      createdBy: 'jit',
      busy: false,
    };
    this.runners.set(runner.id, runner);
    const settings: Record<string, unknown> = {
      agentId: runner.id,
      agentName: name,
      poolId: 1,
      poolName: 'Default',
      serverUrl: `${this.#origin}/_fake/broker`,
      gitHubUrl: this.#webUrl(scope),
      workFolder: typeof request.work_folder === 'string' ? request.work_folder : '_work',
      useV2Flow: true,
      serverUrlV2: `${this.#origin}/_fake/broker/v2`,
    };
    if (this.options.jitEphemeral !== 'absent') settings.ephemeral = this.options.jitEphemeral ?? true;
    if (this.options.jitDisableUpdate !== undefined) settings.disableUpdate = this.options.jitDisableUpdate;
    const credentials = { scheme: 'OAuth', data: { clientId: runner.clientId, authorizationUrl: `${this.#origin}/_fake/broker/token`, requireFipsCryptography: 'False' } };
    const files = { '.runner': b64(JSON.stringify(settings)), '.credentials': b64(JSON.stringify(credentials)), '.credentials_rsaparams': b64(rsaParams) };
    this.#json(response, 201, { runner: this.#runnerJson(runner), encoded_jit_config: b64(JSON.stringify(files)) });
  }

  #configureAgent(request: IncomingMessage, response: ServerResponse, body: unknown): void {
    const temp = /^Bearer (\S+)$/.exec(request.headers.authorization ?? '')?.[1];
    const scope = temp ? this.#tempTokens.get(temp) : undefined;
    const call = this.#callOf(request);
    if (!scope) {
      call.auth = 'bad';
      throw new HttpError(401, 'temporary registration token is not valid');
    }
    call.auth = 'pat';
    const agent = (body ?? {}) as { name?: unknown; labels?: unknown; runnerGroup?: unknown; ephemeral?: unknown; replace?: unknown; rsaParamsSha256?: unknown };
    const group = agent.runnerGroup === undefined || agent.runnerGroup === null ? this.#groups(scope)[0] : this.#groups(scope).find((candidate) => candidate.name.toLowerCase() === String(agent.runnerGroup).toLowerCase());
    if (!group && !scope.startsWith('repos/')) throw new HttpError(404, `runner group ${String(agent.runnerGroup)} not found`);
    const { name, labels } = this.#checkNewRunner(scope, agent.name, agent.labels, group?.id ?? 1);
    const existing = [...this.runners.values()].find((runner) => runner.scope === scope && runner.name === name);
    if (existing) {
      if (agent.replace !== true) throw new HttpError(409, `A runner exists with the same name ${name}.`);
      this.#remove(existing, 'replace');
    }
    if (typeof agent.rsaParamsSha256 !== 'string') throw new HttpError(400, 'rsaParamsSha256 (the public key) is required');
    const runner: FakeRunner = {
      id: this.#nextId++,
      name,
      scope,
      labels,
      runnerGroupId: group?.id ?? 1,
      ephemeral: agent.ephemeral === true,
      clientId: randomUUID(),
      rsaParamsSha256: agent.rsaParamsSha256,
      createdBy: 'configure',
      busy: false,
    };
    this.runners.set(runner.id, runner);
    this.#json(response, 200, {
      agentId: runner.id,
      agentName: name,
      poolId: 1,
      poolName: group?.name ?? 'Default',
      clientId: runner.clientId,
      authorizationUrl: `${this.#origin}/_fake/broker/token`,
      serverUrl: `${this.#origin}/_fake/broker`,
      gitHubUrl: this.#webUrl(scope),
    });
  }

  #createSession(request: IncomingMessage, response: ServerResponse, body: unknown): void {
    const runner = this.#runnerFromAuth(request);
    const now = Date.now();
    const live = [...this.sessions.values()].find((session) => session.runnerId === runner.id && !session.closed && now - session.lastPoll < (this.options.onlineWindowMs ?? 5_000));
    if (live) throw new HttpError(409, 'A session for this runner already exists.');
    const pid = Number((body as { pid?: unknown })?.pid);
    const session: Session = { id: randomUUID(), runnerId: runner.id, lastPoll: now, closed: false, pid: Number.isInteger(pid) ? pid : undefined };
    this.sessions.set(session.id, session);
    this.peakSessions = Math.max(this.peakSessions, this.openSessions());
    runner.lastSeen = now;
    this.#json(response, 201, { sessionId: session.id });
  }

  #takeMessage(runner: FakeRunner, disableUpdate: boolean): unknown {
    for (const instruction of this.instructions) {
      if (instruction.count === 0) continue;
      if (instruction.runner !== undefined && instruction.runner !== runner.name) continue;
      if (instruction.labels !== undefined && !labelsMatch(instruction.labels, runner.labels)) continue;
      // The server offers no update to a runner that says updates are disabled.
      if (instruction.kind === 'update' && disableUpdate) continue;
      if (instruction.count > 0) instruction.count -= 1;
      return instruction.kind === 'exit' ? { type: 'exit', code: instruction.code ?? 1 } : { type: 'update', targetVersion: '9.999.0' };
    }
    // The queue: the oldest queued job whose labels this runner has goes to it, if it is idle;
    // a job no online idle runner matches stays queued until one polls.
    if (runner.busy) return undefined;
    const job = this.jobs.find((candidate) => candidate.status === 'queued' && labelsMatch(candidate.labels, runner.labels));
    if (job) {
      job.status = 'assigned';
      job.assignedAt = Date.now();
      job.runnerName = runner.name;
      runner.busy = true;
      return { type: 'job', jobId: job.id, jobDisplayName: job.displayName, body: job.body };
    }
    return undefined;
  }

  async #poll(request: IncomingMessage, response: ServerResponse, sessionId: string): Promise<void> {
    const runner = this.#runnerFromAuth(request);
    const session = this.sessions.get(sessionId);
    if (!session || session.runnerId !== runner.id || session.closed) throw new HttpError(404, 'session not found');
    const url = (request as IncomingMessage & { fakeUrl: URL }).fakeUrl;
    const disableUpdate = url.searchParams.get('disableUpdate') === 'true';
    runner.lastPollDisableUpdate = disableUpdate;
    const deadline = Date.now() + (this.options.pollWaitMs ?? 500);
    for (;;) {
      session.lastPoll = Date.now();
      runner.lastSeen = session.lastPoll;
      if (!this.runners.has(runner.id) || session.closed) throw new HttpError(401, 'runner was removed');
      const message = this.#takeMessage(runner, disableUpdate);
      if (message !== undefined) {
        this.#json(response, 200, message);
        return;
      }
      const left = deadline - Date.now();
      if (left <= 0 || response.destroyed) break;
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(timer);
          this.#waiters.delete(wake);
          resolve();
        };
        const timer = setTimeout(wake, left);
        this.#waiters.add(wake);
      });
    }
    response.writeHead(204).end();
  }
}

/** Starts a fake GitHub; call `stop()` in afterEach/afterAll. */
export async function startFakeGitHub(options: FakeGitHubOptions = {}): Promise<FakeGitHub> {
  return new FakeGitHub(options).start();
}
