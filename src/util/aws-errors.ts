import { CbactionsError } from './errors.js';

/**
 * Classifies errors from AWS SDK v3 calls by their stable fields (`name`, HTTP status,
 * Node error codes), never by message text.
 */
const THROTTLING_NAMES = new Set([
  'ThrottlingException',
  'Throttling',
  'ThrottledException',
  'TooManyRequestsException',
  'RequestLimitExceeded',
  'RequestThrottled',
  'RequestThrottledException',
  'ProvisionedThroughputExceededException',
  'SlowDown',
  'BandwidthLimitExceeded',
]);

const TRANSIENT_NAMES = new Set([
  'InternalFailure',
  'InternalServerError',
  'InternalServiceException',
  'ServiceUnavailable',
  'ServiceUnavailableException',
  'RequestTimeout',
  'RequestTimeoutException',
  'TimeoutError',
  'PriorRequestNotComplete',
]);

const TRANSIENT_NODE_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'EAI_AGAIN', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_SOCKET']);

interface AwsLikeError {
  name?: unknown;
  code?: unknown;
  $metadata?: { httpStatusCode?: unknown };
  $retryable?: { throttling?: unknown };
}

export function awsErrorName(error: unknown): string {
  if (typeof error === 'object' && error !== null) {
    const { name, code } = error as AwsLikeError;
    if (typeof name === 'string' && name !== 'Error') return name;
    if (typeof code === 'string') return code;
  }
  return 'UnknownError';
}

export function awsHttpStatus(error: unknown): number | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const status = (error as AwsLikeError).$metadata?.httpStatusCode;
  return typeof status === 'number' ? status : undefined;
}

export function isThrottlingError(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  if ((error as AwsLikeError).$retryable?.throttling === true) return true;
  return THROTTLING_NAMES.has(awsErrorName(error)) || awsHttpStatus(error) === 429;
}

/** Throttling, 5xx, timeouts and connection errors: worth another try. */
export function isRetryableAwsError(error: unknown): boolean {
  if (isThrottlingError(error)) return true;
  const status = awsHttpStatus(error);
  if (status !== undefined && status >= 500) return true;
  const name = awsErrorName(error);
  if (TRANSIENT_NAMES.has(name) || TRANSIENT_NODE_CODES.has(name)) return true;
  const code = typeof error === 'object' && error !== null ? (error as AwsLikeError).code : undefined;
  return typeof code === 'string' && TRANSIENT_NODE_CODES.has(code);
}

export function awsErrorMessage(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return `${awsErrorName(error)}: ${message}`.replace(/\s+/g, ' ').trim().slice(0, 500);
}

/** An SDK call cut short by our own signal surfaces as the signal's reason, like Node's APIs. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw signal.reason;
}

/**
 * A CbactionsError for a failed AWS call that keeps the SDK's `$metadata` (HTTP status)
 * and `$retryable` on itself, so the classifiers above still see a 5xx or a throttle.
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
