import { CodeBuildClient } from '@aws-sdk/client-codebuild';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LocalBuildRecord } from '../../src/build-service/build-record.js';
import type { CallCounts } from '../../src/build-service/call-counter.js';
import type { BuildServiceConfigInput } from '../../src/build-service/config.js';
import type { FaultsInput, FaultsSnapshot } from '../../src/build-service/faults.js';
import { exitAfterOutput } from './child-exit.js';

export type { LocalBuildRecord, CallCounts, FaultsInput, FaultsSnapshot, BuildServiceConfigInput };

/**
 * Runs the BUILT `bin/cbactions build-service` as a process, as an operator would, and
 * talks to its control API (`/_local/...`). Needs `npm run build` first (`npm test` does it).
 */
export interface StartBuildServiceOptions {
  /** Build records and logs; default: a fresh temporary directory. */
  stateDir?: string;
  /** Written to a YAML file (JSON is YAML) and passed as --config; relative paths in it resolve against `configDir`. */
  config?: BuildServiceConfigInput;
  /** Where the config file is written; default: a fresh temporary directory. */
  configDir?: string;
  /** --buildspec (default project's buildspec, or with `config` the project named by `project`). */
  buildspec?: string;
  /** --project */
  project?: string;
  /** --minute-ms: shorten timeouts. */
  minuteMs?: number;
  /** --stop-grace-ms: SIGTERM→SIGKILL delay on StopBuild/timeout/shutdown. */
  stopGraceMs?: number;
  /** --faults, armed from the start. */
  faults?: FaultsInput;
  /** Further command-line flags. */
  args?: string[];
  /** Added to the service's environment, which every build inherits (it plays the image). */
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** How long to wait for the listening line; default 15 s. */
  startTimeoutMs?: number;
}

/** What the service wrote to its credentials file (one profile). */
export interface ServiceKey {
  accessKeyId: string;
  secretAccessKey: string;
  controlToken: string;
}

export interface BuildServiceProcess {
  /** `http://127.0.0.1:<port>`: AWS_ENDPOINT_URL_CODEBUILD for other processes, `endpoint` for SDK clients. */
  readonly endpoint: string;
  readonly stateDir: string;
  readonly pid: number;
  /** The region it serves (the one requests must be signed for). */
  readonly region: string;
  /** Where it wrote its key pair (from its listening line), and the profile. */
  readonly credentialsFile: string;
  readonly profile: string;
  /** The key pair and control token, read from that file. */
  readonly key: ServiceKey;
  /** A real CodeBuild SDK client pointed at the service, signing with its key (maxAttempts default 1 = no retries). */
  client(options?: { maxAttempts?: number; region?: string }): CodeBuildClient;
  /**
   * Environment for a child process (e.g. `cbactions worker`) to reach this service through
   * the SDK's standard variables: the credentials file and profile, static keys blanked.
   */
  clientEnv(): Record<string, string>;
  /** `GET /_local/builds`: every build's record, oldest first. */
  builds(): Promise<LocalBuildRecord[]>;
  /** `GET /_local/builds/<id>` (id, ARN or uuid). */
  build(id: string): Promise<LocalBuildRecord>;
  /** Polls until the build is complete (or `until` holds); bounded by `timeoutMs` (default 30 s). */
  waitForBuild(id: string, options?: { timeoutMs?: number; until?: (record: LocalBuildRecord) => boolean }): Promise<LocalBuildRecord>;
  /** `GET /_local/calls`. */
  calls(): Promise<CallCounts>;
  /** `DELETE /_local/calls`. */
  resetCalls(): Promise<void>;
  /** `GET /_local/faults`. */
  faults(): Promise<FaultsSnapshot>;
  /** `POST /_local/faults`: each kind given replaces that kind. */
  setFaults(faults: FaultsInput): Promise<FaultsSnapshot>;
  /** `DELETE /_local/faults`. */
  clearFaults(): Promise<void>;
  /** `POST /_local/builds/<id>/<action>`: freeze, thaw or kill a running build's processes now. */
  buildAction(id: string, action: 'freeze' | 'thaw' | 'kill'): Promise<LocalBuildRecord>;
  /** `GET /_local/builds/<id>/log`: the build's output and `[Container]` lines. */
  log(id: string): Promise<string>;
  /** The service's stderr so far (pino JSON lines). */
  stderr(): string;
  /** The service's stdout so far: exactly the listening line. */
  stdout(): string;
  /** SIGTERM (default) and wait; SIGKILL after `timeoutMs` (default 20 s). Safe to call twice. */
  stop(options?: { signal?: NodeJS.Signals; timeoutMs?: number }): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const CBACTIONS_BIN = join(REPO_ROOT, 'bin', 'cbactions');

/** Reads one profile of an AWS shared-credentials file, as the SDK would. */
export function readServiceKey(path: string, profile: string): ServiceKey {
  const values = new Map<string, string>();
  let current: string | undefined;
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const section = /^\s*\[([^\]]+)\]\s*$/.exec(line);
    if (section) current = section[1];
    const entry = /^\s*([A-Za-z0-9_]+)\s*=\s*(\S+)\s*$/.exec(line);
    if (entry && current === profile) values.set(entry[1] as string, entry[2] as string);
  }
  const accessKeyId = values.get('aws_access_key_id');
  const secretAccessKey = values.get('aws_secret_access_key');
  const controlToken = values.get('cbactions_control_token');
  if (!accessKeyId || !secretAccessKey || !controlToken) throw new Error(`${path} has no complete [${profile}] profile`);
  return { accessKeyId, secretAccessKey, controlToken };
}

/** The process tests run dist/: refuse a missing or stale build rather than test old code. */
function assertBuilt(): void {
  const compiled = join(REPO_ROOT, 'dist', 'src', 'build-service');
  if (!existsSync(join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js')) || !existsSync(compiled)) {
    throw new Error('dist/ is missing: run "npm run build" before the process tests (npm test does)');
  }
  const sources = join(REPO_ROOT, 'src', 'build-service');
  for (const file of readdirSync(sources)) {
    if (!file.endsWith('.ts')) continue;
    const output = join(compiled, file.replace(/\.ts$/, '.js'));
    if (!existsSync(output) || statSync(output).mtimeMs < statSync(join(sources, file)).mtimeMs) {
      throw new Error(`dist/ is older than src/build-service/${file}: run "npm run build" before the process tests (npm test does)`);
    }
  }
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

/** Whatever happens to the test process, no build service outlives it. */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const child of live) {
      try {
        child.kill('SIGKILL');
      } catch {
        // Already gone.
      }
    }
  });
}

export async function startBuildService(options: StartBuildServiceOptions = {}): Promise<BuildServiceProcess> {
  assertBuilt();
  const stateDir = options.stateDir ?? mkdtempSync(join(tmpdir(), 'cbactions-bs-state-'));
  const args = ['build-service', '--port', '0', '--state-dir', stateDir];
  if (options.config !== undefined) {
    const configDir = options.configDir ?? mkdtempSync(join(tmpdir(), 'cbactions-bs-config-'));
    const configPath = join(configDir, 'build-service.yaml');
    writeFileSync(configPath, JSON.stringify(options.config, null, 2));
    args.push('--config', configPath);
  }
  if (options.buildspec !== undefined) args.push('--buildspec', options.buildspec);
  if (options.project !== undefined) args.push('--project', options.project);
  if (options.minuteMs !== undefined) args.push('--minute-ms', String(options.minuteMs));
  if (options.stopGraceMs !== undefined) args.push('--stop-grace-ms', String(options.stopGraceMs));
  if (options.faults !== undefined) args.push('--faults', JSON.stringify(options.faults));
  args.push(...(options.args ?? []));

  const child = spawn(process.execPath, [CBACTIONS_BIN, ...args], {
    cwd: options.cwd ?? stateDir,
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(child);
  installExitHook();
  let stderr = '';
  let stdout = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    stderr += chunk;
  });
  child.once('exit', () => live.delete(child));
  // Its last stderr lines are read before `exited` resolves.
  const exited = exitAfterOutput(child);

  const timeoutMs = options.startTimeoutMs ?? 45_000;
  const listening = await new Promise<{ endpoint: string; region: string; credentialsFile: string; profile: string }>((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`cbactions build-service printed no listening line within ${timeoutMs} ms; stdout: ${stdout.slice(0, 500)}; stderr: ${stderr.slice(-2_000)}`)), timeoutMs);
    let settled = false;
    const fail = (error: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(error);
    };
    child.once('error', (error) => fail(new Error(`cannot start ${CBACTIONS_BIN}: ${error.message}`)));
    void exited.then(({ code, signal }) => fail(new Error(`cbactions build-service exited (${code ?? signal}) before listening; stderr: ${stderr.slice(-2_000)}`)));
    child.stdout?.setEncoding('utf8');
    child.stdout?.on('data', (chunk: string) => {
      stdout += chunk;
      const line = stdout.split('\n').find((candidate) => candidate.includes('"build-service.listening"'));
      if (!line) return;
      try {
        const event = JSON.parse(line) as { event?: string; endpoint?: string; region?: string; credentialsFile?: string; profile?: string };
        const { endpoint, region, credentialsFile, profile } = event;
        if (!settled && event.event === 'build-service.listening' && typeof endpoint === 'string' && typeof region === 'string' && typeof credentialsFile === 'string' && typeof profile === 'string') {
          settled = true;
          clearTimeout(timer);
          resolve({ endpoint, region, credentialsFile, profile });
        }
      } catch {
        fail(new Error(`the listening line is not JSON: ${line}`));
      }
    });
  });

  const { endpoint, region, credentialsFile, profile } = listening;
  const key = readServiceKey(credentialsFile, profile);

  async function request(method: string, path: string, body?: unknown): Promise<Response> {
    const response = await fetch(`${endpoint}${path}`, {
      method,
      headers: { authorization: `Bearer ${key.controlToken}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      signal: AbortSignal.timeout(10_000),
    });
    if (!response.ok) throw new Error(`${method} ${path} answered HTTP ${response.status}: ${await response.text()}`);
    return response;
  }
  const json = async <T>(method: string, path: string, body?: unknown): Promise<T> => (await (await request(method, path, body)).json()) as T;

  /** Last resort after SIGKILL of the service: kill the process groups its builds left behind. */
  function killOrphanedBuilds(): void {
    let uuids: string[];
    try {
      uuids = readdirSync(join(stateDir, 'builds'));
    } catch {
      return;
    }
    for (const uuid of uuids) {
      try {
        const record = JSON.parse(readFileSync(join(stateDir, 'builds', uuid, 'record.json'), 'utf8')) as LocalBuildRecord;
        if (record.processGroup !== undefined) process.kill(-record.processGroup, 'SIGKILL');
      } catch {
        // No record, no group, or already gone.
      }
    }
  }

  let stopping: Promise<{ code: number | null; signal: NodeJS.Signals | null }> | undefined;
  const handle: BuildServiceProcess = {
    endpoint,
    stateDir,
    pid: child.pid ?? -1,
    region,
    credentialsFile,
    profile,
    key,
    client(clientOptions = {}) {
      return new CodeBuildClient({
        endpoint,
        region: clientOptions.region ?? region,
        credentials: { accessKeyId: key.accessKeyId, secretAccessKey: key.secretAccessKey },
        maxAttempts: clientOptions.maxAttempts ?? 1,
      });
    },
    clientEnv() {
      return {
        AWS_ENDPOINT_URL_CODEBUILD: endpoint,
        AWS_REGION: region,
        AWS_SHARED_CREDENTIALS_FILE: credentialsFile,
        AWS_PROFILE: profile,
        // Blank, not absent: the caller's own static keys must not compete with the profile.
        AWS_ACCESS_KEY_ID: '',
        AWS_SECRET_ACCESS_KEY: '',
        AWS_SESSION_TOKEN: '',
      };
    },
    builds: async () => (await json<{ builds: LocalBuildRecord[] }>('GET', '/_local/builds')).builds,
    build: (id) => json<LocalBuildRecord>('GET', `/_local/builds/${encodeURIComponent(id)}`),
    async waitForBuild(id, waitOptions = {}) {
      const deadline = Date.now() + (waitOptions.timeoutMs ?? 30_000);
      const until = waitOptions.until ?? ((record: LocalBuildRecord) => record.buildComplete);
      for (;;) {
        const record = await handle.build(id);
        if (until(record)) return record;
        if (Date.now() > deadline) throw new Error(`build ${id} did not reach the awaited state in time; it is ${record.buildStatus} in ${record.currentPhase}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    },
    calls: () => json<CallCounts>('GET', '/_local/calls'),
    async resetCalls() {
      await request('DELETE', '/_local/calls');
    },
    faults: () => json<FaultsSnapshot>('GET', '/_local/faults'),
    setFaults: (faults) => json<FaultsSnapshot>('POST', '/_local/faults', faults),
    buildAction: (id, action) => json<LocalBuildRecord>('POST', `/_local/builds/${encodeURIComponent(id)}/${action}`),
    async clearFaults() {
      await request('DELETE', '/_local/faults');
    },
    log: async (id) => (await request('GET', `/_local/builds/${encodeURIComponent(id)}/log`)).text(),
    stderr: () => stderr,
    stdout: () => stdout,
    stop(stopOptions = {}) {
      stopping ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) child.kill(stopOptions.signal ?? 'SIGTERM');
        const timeoutMs = stopOptions.timeoutMs ?? 20_000;
        let timer: NodeJS.Timeout | undefined;
        const result = await Promise.race([exited, new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), timeoutMs)))]);
        clearTimeout(timer);
        if (result) return result;
        child.kill('SIGKILL');
        killOrphanedBuilds();
        return exited;
      })();
      return stopping;
    },
  };
  return handle;
}
