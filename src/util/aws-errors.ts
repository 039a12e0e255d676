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

function httpStatus(error: unknown): number | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const status = (error as AwsLikeError).$metadata?.httpStatusCode;
  return typeof status === 'number' ? status : undefined;
}

export function isThrottlingError(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  if ((error as AwsLikeError).$retryable?.throttling === true) return true;
  return THROTTLING_NAMES.has(awsErrorName(error)) || httpStatus(error) === 429;
}

/** Throttling, 5xx, timeouts and connection errors: worth another try. */
export function isRetryableAwsError(error: unknown): boolean {
  if (isThrottlingError(error)) return true;
  const status = httpStatus(error);
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
