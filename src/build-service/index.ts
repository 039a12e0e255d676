/**
 * The local CodeBuild, for callers that run it in-process (local mode, component tests).
 * `cbactions build-service` (main.ts) is the same thing as a process.
 */
export { startBuildService, type BuildServiceDeps, type RunningBuildService } from './server.js';
export { loadBuildServiceConfig, resolveBuildServiceConfig, BuildServiceConfigSchema, type BuildServiceConfigInput, type BuildServiceFlags, type ResolvedBuildServiceConfig } from './config.js';
export { FaultsSchema, type Faults, type FaultsInput, type FaultsSnapshot } from './faults.js';
export { SimulationSchema, type Simulation, type SimulationInput, type SimulationSnapshot } from './simulate.js';
export type { ServiceCredentials } from './credentials.js';
export type { ApiBuild, LocalBuildRecord, BuildStatus, PhaseType } from './build-record.js';
export type { CallCounts } from './call-counter.js';
export { stsRoleAssumer, type RoleAssumer, type TemporaryCredentials } from './role-assumer.js';
export { LISTENING_EVENT } from './main.js';
