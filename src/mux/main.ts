/**
 * `cbactions mux --config FILE`: the only place of the mux that reads the environment,
 * builds SDK clients and the logger, and wires the signals.
 */
import { SQSClient } from '@aws-sdk/client-sqs';
import { existsSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { loadConfigFile } from '../config/load.js';
import type { SecretSource } from '../config/schema.js';
import { builtPreloadArtifacts } from '../preload/contract.js';
import { probePreload } from '../preload/probe.js';
import { ExitCode } from '../protocol/exit-codes.js';
import { CbactionsError, describeError, isCbactionsError } from '../util/errors.js';
import { createLogger, type Logger } from '../util/logger.js';
import { createJobClients, type JobClients } from '../dispatch/job-clients.js';
import { installWorkerShim, workerEntry } from '../worker/install.js';
import { consumeBuildEvents, SqsEventQueue } from '../watcher/build-events.js';
import { BuildWatcher } from '../watcher/build-watcher.js';
import { WATCHER_SOCKET_VARIABLE } from '../watcher/protocol.js';
import { WatcherServer } from '../watcher/watcher-server.js';
import { DemandMetrics } from './demand-metrics.js';
import { DISPATCH_SOCKET_NAME, DISPATCH_SOCKET_VARIABLE, DispatchServer } from './dispatch-server.js';
import { createGitHubClient } from './github-client.js';
import { muxInstanceId } from './instance-id.js';
import { ListenerEnv, Mux, MuxErrorCode } from './mux.js';
import { OctokitRunnerRegistry } from './octokit-registry.js';
import { currentProcessIdentity, MuxJournal, readPreviousJournal, StateDirLock } from './previous-life.js';
import { RegistryErrorCode } from './runner-registry.js';
import { secretEnvNames } from './secret-source.js';
import { StandbyPool } from './standby-pool.js';

/** Environment variables the mux itself reads. */
export const MuxEnv = {
  /** pino level: fatal, error, warn, info (default), debug, trace, silent. */
  LogLevel: 'CBACTIONS_LOG_LEVEL',
  /** Set by ECS on tasks; enables scale-in protection while jobs run. */
  EcsAgentUri: 'ECS_AGENT_URI',
  /** The config file when `--config` is not given. */
  Config: 'CBACTIONS_CONFIG',
  /** SQS queue fed by EventBridge "CodeBuild Build State Change" events (optional; the CDK app sets it). */
  EventsQueueUrl: 'CBACTIONS_EVENTS_QUEUE_URL',
} as const;

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];
/**
 * `mux.demandMetrics.publish`: `auto` publishes only on ECS, where the awslogs driver takes
 * the EMF lines to CloudWatch Logs; in local mode or on a workstation they would be noise.
 */
export function demandMetricsEnabled(publish: 'auto' | 'on' | 'off', ecsAgentUri: string | undefined): boolean {
  return publish === 'on' || (publish === 'auto' && ecsAgentUri !== undefined && ecsAgentUri !== '');
}

/** After the drain, anything still holding the event loop (keep-alive sockets, SDK timers) gets this long. */
const EXIT_GRACE_MS = 2_000;


function configSecretSources(auth: { token: SecretSource } | { app: { privateKey: SecretSource } }): SecretSource[] {
  return 'token' in auth ? [auth.token] : [auth.app.privateKey];
}

export interface MuxRunOptions {
  configPath: string;
  /** The environment the listeners inherit (and where secrets named by the config are read). */
  env: NodeJS.ProcessEnv;
  logger: Logger;
  /** Aborts on SIGTERM/SIGINT: drain and stop. */
  signal: AbortSignal;
}

/**
 * Everything `cbactions mux` runs, wired: the GitHub registry, the pools of slots, and the
 * host's build watcher that all workers share over a local socket (it also stops the build
 * of a worker that dies, and feeds each slot's build id to the status endpoint).
 * `cbactions local` runs this same function against the local build service.
 */
export async function runMux(options: MuxRunOptions): Promise<number> {
  const { configPath, env, logger } = options;
  const config = await loadConfigFile(configPath, { runtime: true });
  let secretsManager: SecretsManagerClient | undefined;
  const secrets = {
    env,
    // The SDK reads AWS_ENDPOINT_URL_SECRETS_MANAGER / AWS_REGION itself.
    secretsManager: () => (secretsManager ??= new SecretsManagerClient({})),
  };
  const region = config.codebuild.region ?? env.AWS_REGION;
  // The mux's one set of AWS clients: its watcher and every in-process job use them
  // (one attempt per call: the watcher and the job path have their own jittered backoff).
  const clients: JobClients = createJobClients(config, configPath, env);
  const { builds } = clients;
  const watcher = new BuildWatcher(builds, logger);
  const background = new AbortController();
  let server: WatcherServer | undefined;
  let dispatch: DispatchServer | undefined;
  let lock: StateDirLock | undefined;
  let demand: DemandMetrics | undefined;
  try {
    // Without it a listener outlives a mux that dies hard (SIGKILL) and takes jobs nobody runs.
    const launcherPath = builtPreloadArtifacts().launcherPath;
    if (!existsSync(launcherPath)) throw new CbactionsError(MuxErrorCode.LauncherMissing, `${launcherPath} is missing: run "npm run build" (make -C src/preload builds it beside preload.so)`);
    const octokit = await createGitHubClient({ url: config.github.url, scope: config.github.scope, auth: config.github.auth, secrets, logger });
    const registry = new OctokitRunnerRegistry(octokit, config.github.scope);
    await mkdir(config.mux.stateDir, { recursive: true, mode: 0o700 });
    const stateDir = resolve(config.mux.stateDir);
    const self = currentProcessIdentity();
    lock = StateDirLock.acquire(stateDir, self, logger);
    const instance = await muxInstanceId({ env, hostname: hostname(), stateDir, logger });
    const previous = readPreviousJournal(stateDir);
    const socketPath = join(config.mux.stateDir, 'watcher.sock');
    const dispatchSocketPath = join(stateDir, DISPATCH_SOCKET_NAME);
    const inProcess = config.mux.dispatch === 'in-process';
    const listenerEnv: NodeJS.ProcessEnv = { ...env, [WATCHER_SOCKET_VARIABLE]: socketPath };
    // Unset, the shim falls back to `cbactions worker` (mux.dispatch: worker).
    if (inProcess) listenerEnv[DISPATCH_SOCKET_VARIABLE] = dispatchSocketPath;
    else delete listenerEnv[DISPATCH_SOCKET_VARIABLE];
    // Warm pools' standby builds (in-process dispatch only: the config refuses them otherwise).
    const standbys = inProcess
      ? new StandbyPool({
          config,
          configPath,
          builds,
          waiter: watcher,
          logger,
          env: { [ListenerEnv.MuxInstance]: instance },
          journal: { add: (buildId) => mux.recordBuild(buildId, undefined), remove: (buildId) => mux.forgetBuild(buildId) },
          // The price of being warm: a standby that ran a job is that job's build (its cost is the job's).
          onEnded: (ended) => {
            const pool = config.pools.find((candidate) => candidate.name === ended.pool);
            const region = config.codebuild.region ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION;
            if (ended.reason === 'used' || pool === undefined || region === undefined) return;
            mux.jobMetrics.recordStandbyCost({ pool: pool.name, build: pool.build, region, startedAt: ended.startedAt, endedAt: ended.endedAt });
          },
        })
      : undefined;
    const mux = new Mux({
      config,
      configPath,
      registry,
      logger,
      env: listenerEnv,
      secretEnvNames: secretEnvNames(configSecretSources(config.github.auth)),
      hostname: hostname(),
      isRoot: process.getuid?.() === 0,
      ecsAgentUri: env[MuxEnv.EcsAgentUri] || undefined,
      defaultPreloadPath: () => builtPreloadArtifacts().preloadPath,
      probePreload,
      installWorkerShim: (runnerRoot) => installWorkerShim(runnerRoot, process.execPath, workerEntry(), builtPreloadArtifacts().workerShimPath),
      listenerLauncher: launcherPath,
      instance,
      lifecycle: { previous, open: () => new MuxJournal(stateDir, { instance, ...self }, logger), builds },
      ...(standbys?.enabled ? { standbys } : {}),
    });
    watcher.start();
    server = await WatcherServer.listen({
      socketPath,
      watcher,
      builds,
      logger,
      onEvent: (event) => {
        if (event.kind === 'tracked') {
          mux.recordBuild(event.build.buildId, event.build.slot);
          if (event.build.slot) mux.setSlotBuild(event.build.slot, event.build.buildId);
        }
        // Over: it completed, or its worker is done with it (the worker waits for the end). An
        // orphan that could not be stopped stays journaled: the next life tries again.
        if (event.kind === 'finished' || event.kind === 'worker-done' || (event.kind === 'orphaned' && event.stopped)) mux.forgetBuild(event.build.buildId);
      },
    });
    if (inProcess) {
      dispatch = await DispatchServer.listen({
        socketPath: dispatchSocketPath,
        config,
        configPath,
        builds,
        payloads: () => clients.payloads(),
        waiter: watcher,
        slot: (slotId) => mux.dispatchSlot(slotId),
        ...(standbys?.enabled ? { standbys } : {}),
        logger,
        onAdmission: (decision, job) => mux.metrics.recordAdmission(decision, job),
        onEvent: (event) => {
          if (event.kind === 'tracked') {
            mux.recordBuild(event.buildId, event.slot);
            mux.setSlotBuild(event.slot, event.buildId);
            return;
          }
          if (event.timeline) mux.jobMetrics.recordJob(event.timeline);
          // An orphan that could not be stopped stays journaled: the next life tries again.
          if (event.buildId && event.orphan?.stopped !== false) mux.forgetBuild(event.buildId);
        },
      });
    } else {
      await rm(dispatchSocketPath, { force: true });
    }
    const queueUrl = env[MuxEnv.EventsQueueUrl];
    if (queueUrl) {
      const sqs = new SQSClient(region ? { region } : {});
      void consumeBuildEvents({ queue: new SqsEventQueue(sqs, queueUrl), onBuildEvent: (buildId) => watcher.poke(buildId), logger, signal: background.signal }).finally(() => sqs.destroy());
      logger.info({ event: 'mux.build-events', queueUrl }, 'reading build state changes from SQS');
    }
    if (demandMetricsEnabled(config.mux.demandMetrics.publish, env[MuxEnv.EcsAgentUri])) {
      // Fixed slots today (idle target = maximum = slots); the elastic pools' Mux.capacity() takes this place.
      demand = new DemandMetrics({
        capacity: () => mux.capacity(),
        project: config.codebuild.projectName,
        task: instance,
        intervalMs: config.mux.demandMetrics.intervalSeconds * 1000,
        logger,
      });
      demand.start();
    }
    return await mux.run(options.signal);
  } finally {
    demand?.stop();
    background.abort();
    // The slots have stopped: the jobs still running end (or lose their build) before the watcher goes.
    await dispatch?.close().catch((error: unknown) => logger.warn({ event: 'dispatch.close-failed', error: describeError(error) }));
    await server?.close().catch(() => {});
    await watcher.close();
    clients.destroy();
    secretsManager?.destroy();
    lock?.release();
  }
}

export async function runMuxCommand(options: { config?: string }): Promise<number> {
  const env = process.env;
  const level = env[MuxEnv.LogLevel] || 'info';
  if (!LOG_LEVELS.includes(level)) {
    process.stderr.write(`cbactions mux: ${MuxEnv.LogLevel} must be one of ${LOG_LEVELS.join(', ')}, got "${level}"\n`);
    return ExitCode.UsageOrConfig;
  }
  const logger: Logger = createLogger({ name: 'cbactions-mux', level });
  const configFile = options.config || env[MuxEnv.Config];
  if (!configFile) {
    logger.error({ event: 'mux.usage', error: `--config FILE is required (or ${MuxEnv.Config})` });
    return ExitCode.UsageOrConfig;
  }
  const configPath = resolve(configFile);
  const root = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    if (root.signal.aborted) {
      logger.warn({ event: 'mux.signal-ignored', signal, reason: 'already draining' });
      return;
    }
    logger.info({ event: 'mux.signal-received', signal });
    root.abort(new Error(`received ${signal}`));
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  try {
    return await runMux({ configPath, env, logger, signal: root.signal });
  } catch (error) {
    const configProblem = isCbactionsError(error) && (error.code.startsWith('CONFIG_') || error.code === RegistryErrorCode.RunnerGroupNotFound || error.code === RegistryErrorCode.InstallationNotFound);
    logger.fatal({ event: 'mux.failed', code: isCbactionsError(error) ? error.code : undefined, error: isCbactionsError(error) ? error.message : describeError(error) });
    return configProblem ? ExitCode.UsageOrConfig : ExitCode.InfrastructureFailure;
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    // A bounded exit: the drain is over; nothing left may keep the process alive for long.
    setTimeout(() => process.exit(), EXIT_GRACE_MS).unref();
  }
}
