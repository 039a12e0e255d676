import { ExitCode } from '../protocol/exit-codes.js';
import { describeError, isCbactionsError } from '../util/errors.js';
import { FailureCode, formatFailure } from './failure.js';
import type { JobOutcome } from './run-job.js';

/**
 * How a job ends to the listener: the exit code, and the reason lines for its stderr
 * (shown on the job in GitHub when the code is not 100..105). The same for `cbactions
 * worker` and in-mux dispatch.
 */
export interface JobReport {
  exitCode: number;
  lines: string[];
  /** The failure catalogue's code when the job did not run (for logs and the watcher). */
  failureCode?: string;
  /** Set when the job path threw (not a catalogued outcome): the error, for the log. */
  error?: string;
}

export function reportOutcome(outcome: JobOutcome): JobReport {
  if (!outcome.failure) return { exitCode: outcome.exitCode, lines: [] };
  return { exitCode: outcome.exitCode, lines: [formatFailure(outcome.failure)], failureCode: outcome.failure.code };
}

/** The job path threw: malformed pipe input is 3, bad config or usage 2, anything else 1. */
export function reportError(error: unknown): JobReport {
  const code = isCbactionsError(error) ? error.code : FailureCode.Internal;
  const message = isCbactionsError(error) ? error.message : describeError(error);
  const exitCode = code.startsWith('PIPE_') ? ExitCode.ProtocolError : code.startsWith('CONFIG_') || code === 'WORKER_USAGE' ? ExitCode.UsageOrConfig : ExitCode.InfrastructureFailure;
  return { exitCode, lines: [formatFailure({ code, message: `the job could not be started: ${message}` })], failureCode: code, error: message };
}
