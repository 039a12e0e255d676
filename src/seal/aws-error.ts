import { CbactionsError } from '../util/errors.js';

/** Helpers to read AWS SDK v3 errors without depending on each service's exception classes. */

/** The service's error name (`InvalidCiphertextException`, `NoSuchKey`, …), if any. */
export function awsErrorName(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const name = (error as { name?: unknown }).name;
  return typeof name === 'string' ? name : undefined;
}

export function awsHttpStatus(error: unknown): number | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const status = (error as { $metadata?: { httpStatusCode?: unknown } }).$metadata?.httpStatusCode;
  return typeof status === 'number' ? status : undefined;
}

/** An SDK call cut short by our own signal surfaces as the signal's reason, like Node's APIs. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw signal.reason;
}

/**
 * A CbactionsError for a failed AWS call that keeps the SDK's `$metadata` (HTTP status)
 * and `$retryable` on itself, so shared retry classifiers still see a 5xx or throttle.
 */
export function wrapAwsError(code: string, message: string, cause: unknown): CbactionsError {
  const wrapped = new CbactionsError(code, message, { cause });
  if (typeof cause === 'object' && cause !== null) {
    const { $metadata, $retryable } = cause as { $metadata?: unknown; $retryable?: unknown };
    if ($metadata !== undefined) Object.defineProperty(wrapped, '$metadata', { value: $metadata, enumerable: false });
    if ($retryable !== undefined) Object.defineProperty(wrapped, '$retryable', { value: $retryable, enumerable: false });
  }
  return wrapped;
}
