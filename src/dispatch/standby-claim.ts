/**
 * What the job path knows of standby builds (issue 11): builds the mux started ahead of any
 * job, waiting for a payload addressed to them. The mux's standby pool implements it; a job
 * path without one (a `cbactions worker` process) always starts a new build.
 */
import type { BuildSnapshot, StartBuildRequest } from './codebuild-api.js';

/** `CBACTIONS_JOB_ID` and `CBACTIONS_STANDBY_WAIT_SECONDS`: the only environment in which a standby's start differs from a job's. */
const PER_BUILD_VARIABLES = new Set(['CBACTIONS_JOB_ID', 'CBACTIONS_STANDBY_WAIT_SECONDS']);

/**
 * The StartBuild overrides a build runs with (role, settings, environment), without what is
 * per build (the idempotency token, the job id, the standby wait), as one comparable string:
 * a job goes to a standby only when its final overrides equal the standby's.
 */
export function startOverridesKey(request: StartBuildRequest): string {
  const { idempotencyToken: _token, environmentVariables, ...overrides } = request;
  const environment = Object.entries(environmentVariables)
    .filter(([name]) => !PER_BUILD_VARIABLES.has(name))
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const settings = Object.entries(overrides)
    .filter(([, value]) => value !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return JSON.stringify([settings, environment]);
}

/** A standby taken for one job: nobody else can claim it. */
export interface ClaimedStandby {
  build: BuildSnapshot;
  /** The role id its payload is bound to (`<roleId>:AWSCodeBuild-<uuid>`), as for a new build. */
  roleId?: string;
  /** Epoch ms of the claim: the job's dispatch time. */
  claimedAt: number;
  /** The job is done with it: it `ran` the job, or the job was `rerouted` to a new build. */
  release(how: 'ran' | 'rerouted'): void;
}

export interface StandbyClaims {
  /**
   * Synchronously takes a live standby of `pool` started with these overrides
   * (startOverridesKey), far enough from its deadline; undefined when there is none.
   */
  claim(pool: string, overridesKey: string): ClaimedStandby | undefined;
  /**
   * CodeBuild refused a job's build for quota: stops one unclaimed standby (`computeType`
   * first) and resolves once it has ended, true; false when there was none to stop.
   */
  yieldForQuota(computeType: string | undefined): Promise<boolean>;
}

/** Failure codes a standby's entrypoint exports when it ended without taking a payload. */
export const StandbyFailureCode = {
  Expired: 'STANDBY_EXPIRED',
  Stopped: 'STANDBY_STOPPED',
} as const;

/** Whether the exported CBACTIONS_FAILURE says the standby never took a payload. */
export function endedUntaken(failure: string | undefined): boolean {
  if (failure === undefined) return false;
  return failure.startsWith(`${StandbyFailureCode.Expired}:`) || failure.startsWith(`${StandbyFailureCode.Stopped}:`);
}
