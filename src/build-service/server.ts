import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { systemClock, type Clock } from '../util/clock.js';
import type { Logger } from '../util/logger.js';
import { CallCounter } from './call-counter.js';
import { join } from 'node:path';
import type { ResolvedBuildServiceConfig } from './config.js';
import { BuildServiceKeyEnv, generateServiceCredentials, writeCredentialsFile, type ServiceCredentials } from './credentials.js';
import { FaultState } from './faults.js';
import { HostAllowlist } from './host-allowlist.js';
import { createBuildServiceServer } from './http-server.js';
import { LocalCodeBuild } from './local-codebuild.js';
import { RequestAuthenticator } from './request-auth.js';
import type { RoleAssumer } from './role-assumer.js';
import { SimulationState } from './simulate.js';

export interface BuildServiceDeps {
  logger: Logger;
  /** The environment builds start from (the build-service's own: it plays the image). */
  baseEnv: Record<string, string>;
  /** Needed when `assumeServiceRole` is on. */
  roleAssumer?: RoleAssumer | undefined;
  now?: () => number;
  /** Timers of timeouts and simulated delays (tests pass a manual clock); its `now` unless `now` is given. */
  clock?: Clock;
  randomUUID?: () => string;
  /** The key pair callers must sign with; default: a fresh random one. */
  credentials?: ServiceCredentials | undefined;
  /** This machine's addresses, for the Host allowlist when bound to every interface. */
  interfaceAddresses?: () => string[];
}

export interface RunningBuildService {
  /** `http://<host>:<port>`, for AWS_ENDPOINT_URL_CODEBUILD. */
  endpoint: string;
  port: number;
  service: LocalCodeBuild;
  faults: FaultState;
  simulation: SimulationState;
  calls: CallCounter;
  /** The key pair every request must be signed with (SigV4), for in-process callers. */
  credentials: ServiceCredentials;
  /** The shared-credentials file holding it (mode 0600), and its profile. */
  credentialsFile: string;
  credentialsProfile: string;
  /** Stops every build (SIGTERM, grace, SIGKILL), writes the records, closes the listener. */
  close(): Promise<void>;
}

/** Starts the local CodeBuild endpoint and its control API; resolves once it listens. */
export async function startBuildService(config: ResolvedBuildServiceConfig & { stateDir: string }, deps: BuildServiceDeps): Promise<RunningBuildService> {
  const credentials = deps.credentials ?? generateServiceCredentials();
  const credentialsFile = config.credentialsFile ?? join(config.stateDir, 'credentials');
  const clock = deps.clock ?? systemClock;
  const now = deps.now ?? (() => clock.now());
  // Builds are the callers' code, not the service's: they never see its key, whatever the
  // environment it was started with.
  const baseEnv: Record<string, string> = {};
  for (const [name, value] of Object.entries(deps.baseEnv)) {
    if (!value.includes(credentials.secretAccessKey) && !(Object.values(BuildServiceKeyEnv) as string[]).includes(name)) baseEnv[name] = value;
  }
  const faults = new FaultState(config.faults);
  const simulation = new SimulationState({ default: config.simulate, projects: Object.fromEntries(config.projects.map((project) => [project.name, project.simulate])) });
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
      simulation,
      now,
      clock,
      randomUUID: deps.randomUUID ?? randomUUID,
      baseEnv,
      roleAssumer: config.assumeServiceRole ? deps.roleAssumer : undefined,
    },
  );
  const authenticator = new RequestAuthenticator({
    credentials,
    region: config.region,
    now,
    credentialsHint: `the credentials in ${credentialsFile} (AWS_SHARED_CREDENTIALS_FILE=${credentialsFile} AWS_PROFILE=${config.credentialsProfile})`,
  });
  // The allowlist needs the port, known once listening; until then requests are refused.
  const listening: { hosts?: HostAllowlist } = {};
  const server = createBuildServiceServer({ service, faults, simulation, calls, logger: deps.logger, authenticator, hosts: () => listening.hosts });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  listening.hosts = new HostAllowlist({ host: config.host, port, extra: config.allowedHosts, ...(deps.interfaceAddresses ? { interfaceAddresses: deps.interfaceAddresses } : {}) });
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  try {
    await writeCredentialsFile(credentialsFile, config.credentialsProfile, credentials);
  } catch (error) {
    await service.shutdown();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    throw error;
  }
  let closing: Promise<void> | undefined;
  return {
    endpoint: `http://${host}:${port}`,
    port,
    service,
    faults,
    simulation,
    calls,
    credentials,
    credentialsFile,
    credentialsProfile: config.credentialsProfile,
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
