/**
 * Exit codes, in one table.
 *
 * Runner.Worker exits with 100 + TaskResult (actions/runner TaskResultUtil.cs). The
 * listener treats any other code as a worker crash: it shows the worker's captured
 * stdout/stderr lines (except `[WORKER` trace lines) on the job as the error. That is
 * how cbactions reports an infrastructure failure to the GitHub UI.
 */
export const TaskResult = {
  Succeeded: 0,
  SucceededWithIssues: 1,
  Failed: 2,
  Canceled: 3,
  Skipped: 4,
  Abandoned: 5,
} as const;
export type TaskResult = (typeof TaskResult)[keyof typeof TaskResult];

export const WORKER_EXIT_CODE_BASE = 100;

export const WorkerExitCode = {
  Succeeded: 100,
  SucceededWithIssues: 101,
  Failed: 102,
  Canceled: 103,
  Skipped: 104,
  Abandoned: 105,
} as const;

/** What the listener accepts as a real job result (TaskResultUtil.IsValidReturnCode). */
export function isValidWorkerExitCode(code: number): boolean {
  return Number.isInteger(code) && code >= WORKER_EXIT_CODE_BASE && code <= WORKER_EXIT_CODE_BASE + TaskResult.Abandoned;
}

export function taskResultName(code: number): string {
  if (!isValidWorkerExitCode(code)) return `invalid(${code})`;
  const entry = Object.entries(TaskResult).find(([, value]) => value === code - WORKER_EXIT_CODE_BASE);
  return entry ? entry[0] : `invalid(${code})`;
}

/**
 * Codes of cbactions' own processes. Anything the worker exits with that is not a
 * WorkerExitCode is, to the listener, "the job never ran": keep these outside 100..105.
 */
export const ExitCode = {
  Ok: 0,
  /** The job did not run or its result is unknown; the reason is on stderr. */
  InfrastructureFailure: 1,
  /** Bad command line or configuration; every problem is printed. */
  UsageOrConfig: 2,
  /** Malformed pipe input from the listener. */
  ProtocolError: 3,
} as const;
