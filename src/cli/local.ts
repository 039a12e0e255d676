import { link, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { PACKAGE_ROOT } from '../util/package-root.js';
import { resolveBuildServiceConfig, startBuildService, type RunningBuildService } from '../build-service/index.js';
import { loadConfigFile } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { MuxEnv, runMux } from '../mux/main.js';
import { buildHardLinkRoot } from '../preload/hardlink-root.js';
import { ExitCode } from '../protocol/exit-codes.js';
import { createLocalKeyFile } from '../seal/local-key-service.js';
import { CbactionsError, describeError, isCbactionsError } from '../util/errors.js';
import { createLogger, type Logger } from '../util/logger.js';
import { SHIM_MARKER } from '../worker/install.js';


export interface LocalOptions {
  config?: string;
  stateDir?: string;
  /** An actions/runner installation; default: the config's `mux.runnerRoot`. */
  runnerRoot?: string;
}

/**
 * The config `cbactions local` runs with: the user's GitHub side and pools, with a local
 * key and payload directory instead of KMS and S3, and the mux's state under the local
 * state directory. Nothing secret is written: the config holds only references.
 */
export function localConfig(config: Config, stateDir: string, runnerRoot?: string): Config {
  return {
    ...config,
    payloads: { key: { local: { file: join(stateDir, 'payload.key') } }, store: { local: { dir: join(stateDir, 'payloads') } } },
    codebuild: { ...config.codebuild, region: config.codebuild.region ?? 'us-east-1' },
    mux: { ...config.mux, stateDir: join(stateDir, 'mux'), ...(runnerRoot !== undefined ? { runnerRoot: resolve(runnerRoot) } : {}) },
  };
}

/**
 * The builds need the runner's own Runner.Worker, but the mux puts the cbactions shim at
 * `<runnerRoot>/bin/Runner.Worker` (keeping the original as `.orig`). So builds get an
 * installation of hard links to the same files, with the original worker back in place —
 * the "image" the local build service copies into each build's own runner root.
 */
export async function prepareBuildRunnerRoot(runnerRoot: string, buildRoot: string): Promise<void> {
  await buildHardLinkRoot({ sharedRoot: runnerRoot, slotRoot: buildRoot });
  const worker = join(buildRoot, 'bin', 'Runner.Worker');
  const original = join(runnerRoot, 'bin', 'Runner.Worker.orig');
  if (await exists(original)) {
    await rm(worker, { force: true });
    await link(original, worker);
    return;
  }
  const head = await readFile(worker).then((bytes) => bytes.subarray(0, 4096).toString('latin1'), () => '');
  if (head === '') throw new CbactionsError('LOCAL_NO_RUNNER', `${join(runnerRoot, 'bin', 'Runner.Worker')} does not exist: mux.runnerRoot must be an actions/runner installation`);
  if (head.includes(SHIM_MARKER)) {
    throw new CbactionsError('LOCAL_NO_RUNNER', `${join(runnerRoot, 'bin', 'Runner.Worker')} is the cbactions shim and the runner's own worker (Runner.Worker.orig) is gone: reinstall the runner in ${runnerRoot}`);
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

async function startLocalBuildService(config: Config, stateDir: string, buildRoot: string, logger: Logger): Promise<RunningBuildService> {
  const resolved = resolveBuildServiceConfig({
    file: {
      region: config.codebuild.region ?? 'us-east-1',
      // Each build its own root: concurrent jobs must not share `.runner`, `_diag` or `_work`
      // (the real worker empties `_work/_temp` at every job start).
      projects: [{ name: config.codebuild.projectName, buildspec: join(PACKAGE_ROOT, 'buildspec.yml'), runnerRoot: buildRoot }],
    },
    configDir: stateDir,
    flags: { stateDir: join(stateDir, 'builds'), port: '0' },
    cwd: stateDir,
  });
  const baseEnv: Record<string, string> = {};
  for (const [name, value] of Object.entries(process.env)) if (value !== undefined) baseEnv[name] = value;
  // The "image": this installation's cbactions on the PATH, as the build image has it.
  baseEnv.PATH = `${join(PACKAGE_ROOT, 'bin')}:${baseEnv.PATH ?? '/usr/bin:/bin'}`;
  return startBuildService({ ...resolved, stateDir: join(stateDir, 'builds') }, { logger, baseEnv });
}

/**
 * `cbactions local`: the mux against GitHub, with the local build service instead of
 * CodeBuild and a local key and payload directory instead of KMS and S3 — every job runs
 * on this machine, through the same path it takes in AWS.
 */
export async function runLocalCommand(options: LocalOptions): Promise<number> {
  const env = process.env;
  const logger = createLogger({ name: 'cbactions-local', level: env[MuxEnv.LogLevel] || 'info' });
  const configFile = options.config || env[MuxEnv.Config];
  if (!configFile) {
    process.stderr.write('cbactions local: --config FILE is required (write one with `cbactions init`)\n');
    return ExitCode.UsageOrConfig;
  }
  const stateDir = resolve(options.stateDir ?? '.cbactions');
  const stop = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    if (stop.signal.aborted) return;
    logger.info({ event: 'local.signal-received', signal });
    stop.abort(new Error(`received ${signal}`));
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  let service: RunningBuildService | undefined;
  try {
    const config = localConfig(await loadConfigFile(resolve(configFile)), stateDir, options.runnerRoot);
    await mkdir(join(stateDir, 'payloads'), { recursive: true, mode: 0o700 });
    if (!(await exists(join(stateDir, 'payload.key')))) await createLocalKeyFile(join(stateDir, 'payload.key'));
    const configPath = join(stateDir, 'config.json');
    await writeFile(configPath, JSON.stringify(config, null, 2), { mode: 0o600 });
    const buildRoot = join(stateDir, 'build-runner');
    await prepareBuildRunnerRoot(config.mux.runnerRoot, buildRoot);
    service = await startLocalBuildService(config, stateDir, buildRoot, logger);
    logger.info({ event: 'local.started', buildService: service.endpoint, stateDir, buildRunnerRoot: buildRoot }, 'local build service running; jobs run on this machine');
    // CodeBuild is the local service, for the mux's own watcher and for every worker
    // (they inherit this environment through the listeners). It takes only requests signed
    // with its own key, so that key replaces whatever AWS credentials were set.
    env.AWS_ENDPOINT_URL_CODEBUILD = service.endpoint;
    env.AWS_REGION = config.codebuild.region ?? 'us-east-1';
    env.AWS_ACCESS_KEY_ID = service.credentials.accessKeyId;
    env.AWS_SECRET_ACCESS_KEY = service.credentials.secretAccessKey;
    delete env.AWS_SESSION_TOKEN;
    delete env.AWS_PROFILE;
    return await runMux({ configPath, env, logger, signal: stop.signal });
  } catch (error) {
    const code = isCbactionsError(error) ? error.code : 'LOCAL_FAILED';
    logger.fatal({ event: 'local.failed', code, error: isCbactionsError(error) ? error.message : describeError(error) });
    process.stderr.write(`cbactions local: ${isCbactionsError(error) ? error.message : describeError(error)}\n`);
    return code.startsWith('CONFIG_') ? ExitCode.UsageOrConfig : ExitCode.InfrastructureFailure;
  } finally {
    await service?.close().catch(() => {});
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    setTimeout(() => process.exit(), 2000).unref();
  }
}
