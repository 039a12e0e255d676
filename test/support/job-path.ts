import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLocalKeyFile } from '../../src/seal/local-key-service.js';
import { readProcStat } from '../../src/util/proc.js';
import { runFakeJob, type FakeJobOptions, type FakeJobResult } from '../fixtures/fake-listener.js';
import { startBuildService, type BuildServiceProcess } from './build-service.js';
import { startInProcessDispatch, type InProcessDispatch } from './in-process-dispatch.js';
import type { StandbyPoolOptions } from '../../src/mux/standby-pool.js';
import { CBACTIONS_BIN, makeFakeRunnerRoot, makeListenerRoot, PROJECT_ROOT } from './runner-root.js';

/**
 * Everything of the core job path on one machine: a listener-side runner root with the
 * cbactions shim, a cbactions config (local key, local payload directory), the local build
 * service running the repository's buildspec, and a build-side runner root whose
 * Runner.Worker is the fake.
 */
export interface JobPathRig {
  base: string;
  listenerRoot: string;
  buildRunnerRoot: string;
  payloadDir: string;
  configPath: string;
  workerLog: string;
  service: BuildServiceProcess;
  /** Who runs the job path. */
  dispatch: JobPathDispatch;
  /** The in-process dispatch server (dispatch 'in-process' only). */
  inProcess?: InProcessDispatch;
  /** The environment a listener gives its Runner.Worker here. */
  workerEnv: NodeJS.ProcessEnv;
  runJob(options: Omit<FakeJobOptions, 'binDir'> & { extraEnv?: Record<string, string> }): Promise<FakeJobResult>;
  stop(): Promise<void>;
}

/**
 * `in-process`: the installed native shim hands each job to a dispatch server (the mux's
 * half, run by the test); `worker`: no dispatch socket, so the shim falls back to
 * `cbactions worker` (as with `mux.dispatch: worker`).
 */
export type JobPathDispatch = 'in-process' | 'worker';
export const JOB_PATH_DISPATCHES: readonly JobPathDispatch[] = ['in-process', 'worker'];

export interface JobPathRigOptions {
  /** Default: worker. */
  dispatch?: JobPathDispatch;
  /** Replaces the local key + payload directory (e.g. KMS + S3 on moto). */
  payloads?: Record<string, unknown>;
  /** Merged into the one pool's settings. */
  pool?: Record<string, unknown>;
  /** In-process dispatch with KMS/S3 payloads: the client config of the AWS they are on (moto's). */
  aws?: { endpoint: string; region: string; credentials: { accessKeyId: string; secretAccessKey: string } };
  /** The config's policy section. */
  policy?: Record<string, unknown>;
  /** Merged into the build service's config (beside its one project). */
  serviceConfig?: Record<string, unknown>;
  /** Added to the build service's environment (which builds inherit, as from the image). */
  serviceEnv?: Record<string, string>;
  /** Added to every worker's environment. */
  workerEnv?: Record<string, string>;
  /** Timing of the in-process standby manager (pools with `warm`). */
  standbyOptions?: Partial<StandbyPoolOptions>;
}

export async function startJobPathRig(options: JobPathRigOptions = {}): Promise<JobPathRig> {
  const base = mkdtempSync(join(tmpdir(), 'cbactions-e2e-'));
  const listenerRoot = makeListenerRoot(join(base, 'listener-root'));
  execFileSync(CBACTIONS_BIN, ['install-worker', listenerRoot]);
  const buildRunnerRoot = makeFakeRunnerRoot(join(base, 'build-runner-root'));
  const payloadDir = join(base, 'payloads');
  mkdirSync(payloadDir, { mode: 0o700 });
  const keyFile = join(base, 'payload.key');
  await createLocalKeyFile(keyFile);
  const configPath = join(base, 'cbactions.yaml');
  writeFileSync(
    configPath,
    JSON.stringify({
      github: { scope: { repository: 'octo/repo' }, auth: { token: { env: 'GITHUB_TOKEN' } } },
      codebuild: { projectName: 'cbactions', region: 'us-east-1' },
      payloads: options.payloads ?? { key: { local: { file: keyFile } }, store: { local: { dir: payloadDir } } },
      pools: [{ name: 'default', labels: ['cbactions'], slots: 1, ...(options.pool ?? {}) }],
      ...(options.policy ? { policy: options.policy } : {}),
    }),
  );
  mkdirSync(join(base, 'build-service'));
  const service = await startBuildService({
    stateDir: join(base, 'build-service'),
    stopGraceMs: 3000,
    config: {
      ...options.serviceConfig,
      projects: [
        {
          name: 'cbactions',
          buildspec: join(PROJECT_ROOT, 'buildspec.yml'),
          environmentVariables: { CBACTIONS_RUNNER_ROOT: buildRunnerRoot, CBACTIONS_CANCEL_POLL_SECONDS: '0.2', CBACTIONS_PAYLOAD_WAIT_SECONDS: '30' },
        },
      ],
    },
    // The "image": cbactions on the PATH, as in the CodeBuild image.
    env: { PATH: `${join(PROJECT_ROOT, 'bin')}:${process.env.PATH ?? ''}`, ...options.serviceEnv },
  });
  const workerLog = join(base, 'worker.log');
  const dispatch = options.dispatch ?? 'worker';
  // The listener root holds the slot's .runner (the worker reads it from the parent of its cwd).
  const inProcess = dispatch === 'in-process' ? await startInProcessDispatch({ service, configPath, stateDir: join(base, 'mux-state'), slotConfigDir: listenerRoot, ...(options.aws ? { aws: options.aws } : {}), ...(options.standbyOptions ? { standbyOptions: options.standbyOptions } : {}) }) : undefined;
  const workerEnv: NodeJS.ProcessEnv = {
    ...process.env,
    ...service.clientEnv(),
    CBACTIONS_CONFIG: configPath,
    CBACTIONS_POOL: 'default',
    CBACTIONS_WORKER_LOG: workerLog,
    CBACTIONS_CANCEL_GRACE_SECONDS: '10',
    ...options.workerEnv,
    ...inProcess?.env,
  };
  return {
    base,
    listenerRoot,
    buildRunnerRoot,
    payloadDir,
    configPath,
    workerLog,
    service,
    dispatch,
    ...(inProcess ? { inProcess } : {}),
    workerEnv,
    runJob: ({ extraEnv, ...job }) => runFakeJob({ ...job, binDir: join(listenerRoot, 'bin'), env: { ...workerEnv, ...extraEnv } }),
    stop: async () => {
      await inProcess?.stop();
      await service.stop();
    },
  };
}

/** Every regular file under `dir`, recursively. */
export function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...filesUnder(path));
    else if (entry.isFile() || statSync(path).isFile()) out.push(path);
  }
  return out;
}

/** The secret in the encodings it could leak in. */
export function leakForms(secret: string): Buffer[] {
  return [Buffer.from(secret, 'utf8'), Buffer.from(secret, 'utf16le'), Buffer.from(Buffer.from(secret).toString('base64').slice(0, 16))];
}

export function fileContains(path: string, needles: Buffer[]): boolean {
  const content = readFileSync(path);
  return needles.some((needle) => content.includes(needle));
}

/** Pids of live processes whose environment holds `needle` (e.g. CODEBUILD_BUILD_ID=<id>). */
export function processesWithEnvironment(needle: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    const state = readProcStat(Number(entry))?.state;
    if (state === undefined || state === 'Z') continue;
    try {
      const environ = readFileSync(`/proc/${entry}/environ`);
      if (environ.includes(Buffer.from(`${needle}\0`))) pids.push(Number(entry));
    } catch {
      // Gone, or not ours.
    }
  }
  return pids;
}

export { mkdtempSync };
