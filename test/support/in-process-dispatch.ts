import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { KMSClient } from '@aws-sdk/client-kms';
import { S3Client } from '@aws-sdk/client-s3';
import { pino } from 'pino';
import { loadConfigFile } from '../../src/config/load.js';
import { AwsCodeBuildApi } from '../../src/dispatch/codebuild-api.js';
import { DispatchServer, DISPATCH_SOCKET_NAME, DISPATCH_SOCKET_VARIABLE, type DispatchEvent } from '../../src/mux/dispatch-server.js';
import { StandbyPool, type StandbyPoolOptions } from '../../src/mux/standby-pool.js';
import { createPayloadServices, payloadRefsFromConfig } from '../../src/seal/index.js';
import { createLogger } from '../../src/util/logger.js';
import { BuildWatcher } from '../../src/watcher/build-watcher.js';
import type { BuildServiceProcess } from './build-service.js';

export interface InProcessDispatch {
  socketPath: string;
  events: DispatchEvent[];
  /** Every admission decision, as the mux counts them in /metrics. */
  admissions: { jobId: string; pool: string; rule: string; effect: string }[];
  /** What the listener of slot `default-0` would have in its environment for the shim. */
  env: Record<string, string>;
  logPath: string;
  /** The standby builds of warm pools (only when the config has some), started with the server. */
  standbys?: StandbyPool;
  stop(): Promise<void>;
}

/**
 * The mux's half of in-process dispatch, without the rest of the mux: the dispatch server
 * with its watcher, against the local build service, running the jobs of slot
 * `default-0` whose runner files are in `slotConfigDir`. Its log goes to a file under
 * `stateDir`, so a test that scans files for a secret scans it too.
 */
export async function startInProcessDispatch(options: {
  service: BuildServiceProcess;
  configPath: string;
  stateDir: string;
  slotConfigDir: string;
  /** For KMS/S3 payloads: the client config of the AWS they are on (moto's). */
  aws?: { endpoint: string; region: string; credentials: { accessKeyId: string; secretAccessKey: string } };
  /** Timing of the standby manager (warm pools only). */
  standbyOptions?: Partial<StandbyPoolOptions>;
}): Promise<InProcessDispatch> {
  const config = await loadConfigFile(options.configPath, { runtime: true });
  const codebuild = options.service.client({ maxAttempts: 1 });
  const builds = new AwsCodeBuildApi(codebuild);
  mkdirSync(options.stateDir, { recursive: true, mode: 0o700 });
  const logPath = join(options.stateDir, 'dispatch.log');
  const logger = createLogger({ name: 'cbactions-mux', level: 'debug', destination: pino.destination({ dest: logPath, mkdir: true, sync: true }) });
  const watcher = new BuildWatcher(builds, logger, { minIntervalMs: 250, maxCallsPerSecond: 8, throttleMaxMs: 4000 });
  watcher.start();
  const kms = options.aws ? new KMSClient(options.aws) : undefined;
  const s3 = options.aws ? new S3Client({ ...options.aws, forcePathStyle: true }) : undefined;
  const services = createPayloadServices(payloadRefsFromConfig(config.payloads, { baseDir: dirname(options.configPath) }), { ...(kms ? { kms } : {}), ...(s3 ? { s3 } : {}) });
  const events: DispatchEvent[] = [];
  const admissions: InProcessDispatch['admissions'] = [];
  const socketPath = join(options.stateDir, DISPATCH_SOCKET_NAME);
  const warm = new StandbyPool({ config, configPath: options.configPath, builds, waiter: watcher, logger, env: {}, ...options.standbyOptions });
  const standbys = warm.enabled ? warm : undefined;
  const server = await DispatchServer.listen({
    socketPath,
    config,
    configPath: options.configPath,
    builds,
    payloads: () => services,
    waiter: watcher,
    slot: (slotId) => (slotId === 'default-0' ? { pool: 'default', configDir: options.slotConfigDir } : undefined),
    logger,
    onEvent: (event) => events.push(event),
    onAdmission: (decision, job) => admissions.push({ jobId: job.jobId, pool: job.pool, rule: decision.rule, effect: decision.effect }),
    ...(standbys ? { standbys } : {}),
  });
  standbys?.start();
  return {
    socketPath,
    events,
    admissions,
    env: { [DISPATCH_SOCKET_VARIABLE]: socketPath, CBACTIONS_SLOT: 'default-0' },
    logPath,
    ...(standbys ? { standbys } : {}),
    stop: async () => {
      await standbys?.close();
      await server.close();
      await watcher.close();
      codebuild.destroy();
      kms?.destroy();
      s3?.destroy();
    },
  };
}
