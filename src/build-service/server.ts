import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../util/logger.js';
import { CallCounter } from './call-counter.js';
import type { ResolvedBuildServiceConfig } from './config.js';
import { FaultState } from './faults.js';
import { createBuildServiceServer } from './http-server.js';
import { LocalCodeBuild } from './local-codebuild.js';
import type { RoleAssumer } from './role-assumer.js';

export interface BuildServiceDeps {
  logger: Logger;
  /** The environment builds start from (the build-service's own: it plays the image). */
  baseEnv: Record<string, string>;
  /** Needed when `assumeServiceRole` is on. */
  roleAssumer?: RoleAssumer | undefined;
  now?: () => number;
  randomUUID?: () => string;
}

export interface RunningBuildService {
  /** `http://<host>:<port>`, for AWS_ENDPOINT_URL_CODEBUILD. */
  endpoint: string;
  port: number;
  service: LocalCodeBuild;
  faults: FaultState;
  calls: CallCounter;
  /** Stops every build (SIGTERM, grace, SIGKILL), writes the records, closes the listener. */
  close(): Promise<void>;
}

/** Starts the local CodeBuild endpoint and its control API; resolves once it listens. */
export async function startBuildService(config: ResolvedBuildServiceConfig & { stateDir: string }, deps: BuildServiceDeps): Promise<RunningBuildService> {
  const faults = new FaultState(config.faults);
  const calls = new CallCounter();
  const service = new LocalCodeBuild(
    {
      projects: config.projects,
      region: config.region,
      accountId: config.accountId,
      minuteMs: config.minuteMs,
      stopGraceMs: config.stopGraceMs,
      concurrentBuildLimit: config.concurrentBuildLimit,
      initiator: config.initiator,
      baseDir: config.baseDir,
      stateDir: config.stateDir,
    },
    {
      logger: deps.logger,
      faults,
      now: deps.now ?? Date.now,
      randomUUID: deps.randomUUID ?? randomUUID,
      baseEnv: deps.baseEnv,
      roleAssumer: config.assumeServiceRole ? deps.roleAssumer : undefined,
    },
  );
  const server = createBuildServiceServer({ service, faults, calls, logger: deps.logger });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  let closing: Promise<void> | undefined;
  return {
    endpoint: `http://${host}:${port}`,
    port,
    service,
    faults,
    calls,
    close() {
      closing ??= (async () => {
        await service.shutdown();
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        });
      })();
      return closing;
    },
  };
}
