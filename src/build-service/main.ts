import { mkdir, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CbactionsError, describeError, isCbactionsError } from '../util/errors.js';
import { createLogger } from '../util/logger.js';
import { loadBuildServiceConfig, type BuildServiceFlags } from './config.js';
import { BuildServiceKeyEnv, checkServiceCredentials } from './credentials.js';
import type { RoleAssumer } from './role-assumer.js';
import { startBuildService } from './server.js';

/**
 * The one line on stdout, by which callers (tests, scripts) learn the endpoint of `--port 0`,
 * the region to sign for, and where the credentials file is (never the key itself).
 */
export const LISTENING_EVENT = 'build-service.listening';

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/**
 * `cbactions build-service`: a CodeBuild-compatible endpoint running builds as local
 * processes. Reads the flags and the environment, wires everything, prints the listening
 * line, and on SIGTERM/SIGINT stops every build the way StopBuild does, then exits 0.
 */
export async function runBuildServiceCommand(options: Record<string, string | undefined>): Promise<number> {
  const flags: BuildServiceFlags = {
    config: options.config,
    port: options.port,
    host: options.host,
    stateDir: options.stateDir,
    buildspec: options.buildspec,
    project: options.project,
    minuteMs: options.minuteMs,
    region: options.region,
    accountId: options.accountId,
    stopGraceMs: options.stopGraceMs,
    concurrentBuildLimit: options.concurrentBuildLimit,
    assumeServiceRole: options.assumeServiceRole,
    faults: options.faults,
    simulate: options.simulate,
    credentialsFile: options.credentialsFile,
  };
  const level = options.logLevel ?? 'info';
  if (!LOG_LEVELS.includes(level)) throw new CbactionsError('CONFIG_INVALID', `--log-level must be one of ${LOG_LEVELS.join(', ')}, got "${level}"`);
  const config = await loadBuildServiceConfig(flags, process.cwd());
  const logger = createLogger({ name: 'cbactions-build-service', level });

  const stateDir = config.stateDir ?? (await mkdtemp(join(tmpdir(), 'cbactions-build-service-')));
  await mkdir(stateDir, { recursive: true });

  let roleAssumer: RoleAssumer | undefined;
  if (config.assumeServiceRole) {
    // Loaded only when asked for; endpoint and credentials from the SDK's standard chain.
    const [{ STSClient }, { stsRoleAssumer }] = await Promise.all([import('@aws-sdk/client-sts'), import('./role-assumer.js')]);
    roleAssumer = stsRoleAssumer(new STSClient({ region: config.region }));
  }

  // A fixed key pair, for operators who want the same key across restarts; else a fresh one.
  const credentials = checkServiceCredentials(process.env[BuildServiceKeyEnv.AccessKeyId], process.env[BuildServiceKeyEnv.SecretAccessKey]);

  // startBuildService keeps the key's variables out of the builds' environment.
  const baseEnv: Record<string, string> = {};
  for (const [name, value] of Object.entries(process.env)) if (value !== undefined) baseEnv[name] = value;

  const stopRequested = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    if (!stopRequested.signal.aborted) stopRequested.abort(signal);
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  try {
    let running;
    try {
      running = await startBuildService({ ...config, stateDir }, { logger, baseEnv, roleAssumer, credentials });
    } catch (error) {
      if (isCbactionsError(error)) throw error;
      throw new CbactionsError('BUILD_SERVICE_LISTEN', `cannot listen on ${config.host}:${config.port}: ${describeError(error)}`, { cause: error });
    }
    process.stdout.write(
      `${JSON.stringify({ event: LISTENING_EVENT, endpoint: running.endpoint, region: config.region, credentialsFile: running.credentialsFile, profile: running.credentialsProfile })}\n`,
    );
    logger.info(
      {
        event: 'build-service.started',
        endpoint: running.endpoint,
        stateDir,
        projects: config.projects.map((project) => project.name),
        minuteMs: config.minuteMs,
        concurrentBuildLimit: config.concurrentBuildLimit,
        assumeServiceRole: config.assumeServiceRole,
        credentialsFile: running.credentialsFile,
        profile: running.credentialsProfile,
        accessKeyId: running.credentials.accessKeyId,
        keySource: credentials ? 'environment' : 'generated',
      },
      `build service listening; sign with AWS_SHARED_CREDENTIALS_FILE=${running.credentialsFile} AWS_PROFILE=${running.credentialsProfile}`,
    );
    if (!stopRequested.signal.aborted) {
      await new Promise((resolve) => stopRequested.signal.addEventListener('abort', resolve, { once: true }));
    }
    logger.info({ event: 'build-service.stopping', signal: String(stopRequested.signal.reason) }, 'stopping every build');
    await running.close();
    logger.info({ event: 'build-service.stopped' }, 'build service stopped');
    return 0;
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
  }
}
