/**
 * What a slot does when its Runner.Listener exits (RUNNER-PROTOCOL §6; actions/runner
 * src/Runner.Common/Constants.cs ReturnCode). Pure: the slot carries it out.
 */
export const ListenerExitCode = {
  Success: 0,
  TerminatedError: 1,
  RetryableError: 2,
  RunnerUpdating: 3,
  RunOnceRunnerUpdating: 4,
  SessionConflict: 5,
  VersionDeprecated: 7,
} as const;

export type ExitAction =
  /**
   * Drop the registration and obtain a new one. A consumed registration (its job ran) is
   * removed by GitHub itself (ephemeral); an unused one is deleted by the mux.
   */
  | { kind: 'reregister'; backoff: boolean; consumed: boolean; reason: string }
  /** Start the listener again with the same registration. */
  | { kind: 'restart'; backoff: true; reason: string }
  /** Alert, delete the registration and stop every slot of the pool: a person must act. */
  | { kind: 'stop-pool'; reason: string };

export interface ListenerExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The listener announced a job ("Running job: …") during this run. */
  jobStarted: boolean;
}

export function decideAfterExit(exit: ListenerExit): ExitAction {
  if (exit.code === null) {
    return { kind: 'reregister', backoff: true, consumed: false, reason: `listener was killed by ${exit.signal ?? 'a signal'}` };
  }
  switch (exit.code) {
    case ListenerExitCode.Success:
      // Ephemeral: one job, then exit 0. Without a job the registration was revoked or
      // never used (e.g. the runner was deleted); either way it is spent.
      return exit.jobStarted
        ? { kind: 'reregister', backoff: false, consumed: true, reason: 'job done' }
        : { kind: 'reregister', backoff: true, consumed: false, reason: 'listener exited 0 without running a job' };
    case ListenerExitCode.TerminatedError:
      return { kind: 'reregister', backoff: true, consumed: false, reason: 'terminated error (not configured, authentication or JIT failure)' };
    case ListenerExitCode.RetryableError:
      return { kind: 'restart', backoff: true, reason: 'retryable error' };
    case ListenerExitCode.RunnerUpdating:
    case ListenerExitCode.RunOnceRunnerUpdating:
      return { kind: 'stop-pool', reason: `listener exited ${exit.code} to self-update, but updates must be disabled (disableUpdate): the runner installation would be replaced` };
    case ListenerExitCode.SessionConflict:
      return { kind: 'reregister', backoff: true, consumed: false, reason: 'session conflict: another listener holds this runner' };
    case ListenerExitCode.VersionDeprecated:
      return { kind: 'stop-pool', reason: 'the runner version is deprecated: GitHub refuses this runner; update the runner in the image' };
    default:
      return { kind: 'reregister', backoff: true, consumed: false, reason: `listener exited with unexpected code ${exit.code}` };
  }
}
