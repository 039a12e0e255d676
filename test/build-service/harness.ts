import { BatchGetBuildsCommand, CodeBuildClient, StartBuildCommand, type Build, type StartBuildCommandInput } from '@aws-sdk/client-codebuild';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Hash } from '@smithy/hash-node';
import { SignatureV4 } from '@smithy/signature-v4';
import { readProcStat } from '../../src/util/proc.js';
import { controlTokenFor } from '../../src/build-service/credentials.js';
import { resolveBuildServiceConfig, type BuildServiceConfigInput } from '../../src/build-service/config.js';
import type { RoleAssumer } from '../../src/build-service/role-assumer.js';
import { startBuildService, type RunningBuildService } from '../../src/build-service/server.js';
import type { Clock } from '../../src/util/clock.js';
import { createLogger } from '../../src/util/logger.js';

/**
 * The build service wired in-process on 127.0.0.1 (a real HTTP server and real child
 * processes), driven through the real `@aws-sdk/client-codebuild`. Buildspecs are given
 * as text and written next to a generated config.
 */
export interface InProcessOptions {
  /** Project name → buildspec YAML. Default project: `cbactions`. */
  buildspecs: Record<string, string>;
  config?: Omit<BuildServiceConfigInput, 'projects'>;
  /** The service's key pair (default: generated). */
  credentials?: { accessKeyId: string; secretAccessKey: string };
  /** Extra per-project settings (environmentVariables, timeoutInMinutes, ...). */
  projects?: Record<string, Omit<NonNullable<BuildServiceConfigInput['projects']>[number], 'name' | 'buildspec'>>;
  baseEnv?: Record<string, string>;
  roleAssumer?: RoleAssumer;
  /** The service's clock (default: the real one). */
  now?: () => number;
  /** Timers of timeouts and simulated delays, and (without `now`) the time (default: the real clock). */
  clock?: Clock;
}

/** A raw HTTP request, signed (SigV4, as the SDK does) unless `sign` is false. */
export interface RawRequest {
  method?: string;
  /** Path and query as sent on the wire, e.g. `/_local/builds/x%20y?a=b`. */
  path?: string;
  headers?: Record<string, string>;
  body?: string;
  sign?: boolean | { accessKeyId?: string; secretAccessKey?: string; region?: string; service?: string; signingDate?: Date };
  /** Tampering after signing: headers replaced or added, and another body sent. */
  afterSigning?: { headers?: Record<string, string>; body?: string; path?: string };
}

export interface InProcess {
  running: RunningBuildService;
  endpoint: string;
  dir: string;
  stateDir: string;
  /** Everything the service logged (pino JSON lines). */
  logs: string[];
  client(options?: { maxAttempts?: number; credentials?: { accessKeyId: string; secretAccessKey: string }; region?: string; systemClockOffset?: number }): CodeBuildClient;
  /** The `/_local/` bearer token. */
  controlToken: string;
  /** One HTTP request with node:http (so any Host header can be sent), by default SigV4-signed with the service's key. */
  raw(request: RawRequest): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; text: string }>;
  start(input: Partial<StartBuildCommandInput>): Promise<Build>;
  /** Polls BatchGetBuilds (as a consumer would) until buildComplete; bounded. */
  waitComplete(id: string, timeoutMs?: number): Promise<Build>;
  log(id: string): Promise<string>;
  close(): Promise<void>;
}

export async function startInProcess(options: InProcessOptions): Promise<InProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'cbactions-bs-test-'));
  const stateDir = join(dir, 'state');
  const projects = Object.entries(options.buildspecs).map(([name, text]) => {
    writeFileSync(join(dir, `${name}.buildspec.yml`), text);
    return { name, buildspec: `${name}.buildspec.yml`, ...(options.projects?.[name] ?? {}) };
  });
  const config = resolveBuildServiceConfig({ file: { ...options.config, projects }, configDir: dir, flags: { stateDir }, cwd: dir });
  const logs: string[] = [];
  const logger = createLogger({ name: 'build-service-test', level: 'debug', destination: { write: (line: string) => void logs.push(line) } });
  const running = await startBuildService(
    { ...config, stateDir },
    { logger, baseEnv: options.baseEnv ?? { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir }, roleAssumer: options.roleAssumer, credentials: options.credentials, ...(options.now ? { now: options.now } : {}), ...(options.clock ? { clock: options.clock } : {}) },
  );
  const clients: CodeBuildClient[] = [];
  const client: InProcess['client'] = (clientOptions = {}) => {
    const created = new CodeBuildClient({
      endpoint: running.endpoint,
      region: clientOptions.region ?? config.region,
      credentials: clientOptions.credentials ?? running.credentials,
      maxAttempts: clientOptions.maxAttempts ?? 1,
      ...(clientOptions.systemClockOffset !== undefined ? { systemClockOffset: clientOptions.systemClockOffset } : {}),
    });
    clients.push(created);
    return created;
  };
  const main = client();
  const first = Object.keys(options.buildspecs)[0] ?? 'cbactions';
  return {
    running,
    endpoint: running.endpoint,
    dir,
    stateDir,
    logs,
    client,
    controlToken: controlTokenFor(running.credentials),
    raw: (request) => rawRequest(running, config.region, request),
    async start(input) {
      const { build } = await main.send(new StartBuildCommand({ projectName: first, ...input }));
      if (!build?.id) throw new Error('StartBuild returned no build id');
      return build;
    },
    async waitComplete(id, timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const { builds } = await main.send(new BatchGetBuildsCommand({ ids: [id] }));
        const build = builds?.[0];
        if (build?.buildComplete) return build;
        if (Date.now() > deadline) throw new Error(`build ${id} not complete in time: ${build?.buildStatus} in ${build?.currentPhase}`);
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
    },
    async log(id) {
      const record = running.service.record(id);
      if (!record) throw new Error(`no build ${id}`);
      return readFile(record.logFile, 'utf8');
    },
    async close() {
      await running.close();
      for (const created of clients) created.destroy();
    },
  };
}

async function rawRequest(running: RunningBuildService, region: string, request: RawRequest): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; text: string }> {
  const method = request.method ?? 'POST';
  const target = request.path ?? '/';
  const [path = '/', queryText = ''] = target.split('?');
  const headers: Record<string, string> = { host: `127.0.0.1:${running.port}`, ...(request.headers ?? {}) };
  if (request.sign !== false) {
    const options = typeof request.sign === 'object' ? request.sign : {};
    const signer = new SignatureV4({
      credentials: { accessKeyId: options.accessKeyId ?? running.credentials.accessKeyId, secretAccessKey: options.secretAccessKey ?? running.credentials.secretAccessKey },
      region: options.region ?? region,
      service: options.service ?? 'codebuild',
      sha256: Hash.bind(null, 'sha256'),
    });
    const query: Record<string, string> = {};
    for (const pair of queryText.split('&').filter((part) => part !== '')) {
      const [name = '', value = ''] = pair.split('=');
      query[decodeURIComponent(name)] = decodeURIComponent(value);
    }
    const signed = await signer.sign({ method, protocol: 'http:', hostname: '127.0.0.1', port: running.port, path, query, headers, ...(request.body !== undefined ? { body: request.body } : {}) }, options.signingDate ? { signingDate: options.signingDate } : {});
    Object.assign(headers, signed.headers);
  }
  Object.assign(headers, request.afterSigning?.headers ?? {});
  const body = request.afterSigning?.body ?? request.body;
  return new Promise((resolve, reject) => {
    const sent = httpRequest({ host: '127.0.0.1', port: running.port, method, path: request.afterSigning?.path ?? target, headers, setHost: false }, (response) => {
      let text = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (text += chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers, text }));
      response.on('error', reject);
    });
    sent.on('error', reject);
    sent.end(body);
  });
}

/** Phase types in order, with their status: `INSTALL:FAILED`. */
/** The error a call that must be refused ended with (the SDK's error, with its HTTP status). */
export async function rejection(promise: Promise<unknown>): Promise<Error & { $metadata?: { httpStatusCode?: number } }> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected the call to be refused');
}

export function phaseSummary(build: Build): string[] {
  return (build.phases ?? []).map((phase) => (phase.phaseStatus ? `${phase.phaseType}:${phase.phaseStatus}` : `${phase.phaseType}`));
}

/** True while a process with this pid exists and is not a zombie (orphans may wait for a PID 1 that never reaps). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  const stat = readProcStat(pid);
  return stat !== undefined && stat.state !== 'Z' && stat.state !== 'X';
}

export async function waitUntil(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}
