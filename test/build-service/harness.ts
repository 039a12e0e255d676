import { BatchGetBuildsCommand, CodeBuildClient, StartBuildCommand, type Build, type StartBuildCommandInput } from '@aws-sdk/client-codebuild';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readProcStat } from '../../src/util/proc.js';
import { resolveBuildServiceConfig, type BuildServiceConfigInput } from '../../src/build-service/config.js';
import type { RoleAssumer } from '../../src/build-service/role-assumer.js';
import { startBuildService, type RunningBuildService } from '../../src/build-service/server.js';
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
  /** Extra per-project settings (environmentVariables, timeoutInMinutes, ...). */
  projects?: Record<string, Omit<NonNullable<BuildServiceConfigInput['projects']>[number], 'name' | 'buildspec'>>;
  baseEnv?: Record<string, string>;
  roleAssumer?: RoleAssumer;
}

export interface InProcess {
  running: RunningBuildService;
  endpoint: string;
  dir: string;
  stateDir: string;
  /** Everything the service logged (pino JSON lines). */
  logs: string[];
  client(options?: { maxAttempts?: number }): CodeBuildClient;
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
  const running = await startBuildService({ ...config, stateDir }, { logger, baseEnv: options.baseEnv ?? { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir }, roleAssumer: options.roleAssumer });
  const clients: CodeBuildClient[] = [];
  const client = (clientOptions: { maxAttempts?: number } = {}) => {
    const created = new CodeBuildClient({
      endpoint: running.endpoint,
      region: 'us-east-1',
      credentials: { accessKeyId: 'AKIDTEST', secretAccessKey: 'secret' },
      maxAttempts: clientOptions.maxAttempts ?? 1,
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

/** Phase types in order, with their status: `INSTALL:FAILED`. */
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
