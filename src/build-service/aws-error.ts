/**
 * An error the CodeBuild API returns to its caller: AWS JSON 1.1 puts `code` in the body's
 * `__type` and in the `x-amzn-ErrorType` header, which is what the SDK turns into the
 * exception's `name`. 4xx for the caller's fault, 5xx for ours.
 */
export class AwsServiceError extends Error {
  readonly code: string;
  readonly httpStatus: number;

  constructor(code: string, message: string, httpStatus = 400) {
    super(message);
    this.name = 'AwsServiceError';
    this.code = code;
    this.httpStatus = httpStatus;
  }
}

/** Error codes this service returns (names from the CodeBuild model where it has them). */
export const AwsErrorCode = {
  InvalidInput: 'InvalidInputException',
  ResourceNotFound: 'ResourceNotFoundException',
  AccountLimitExceeded: 'AccountLimitExceededException',
  Throttling: 'ThrottlingException',
  UnknownOperation: 'UnknownOperationException',
  Serialization: 'SerializationException',
  /**
   * The CodeBuild model documents "a parameter mismatch error" for a reused idempotency
   * token but names no exception; this is the conventional AWS name (unverified).
   */
  IdempotentParameterMismatch: 'IdempotentParameterMismatchException',
  InternalFailure: 'InternalFailure',
  /** No Authorization header (AWS: "Missing Authentication Token"). */
  MissingAuthenticationToken: 'MissingAuthenticationTokenException',
  /** A malformed SigV4 Authorization header or X-Amz-Date. */
  IncompleteSignature: 'IncompleteSignatureException',
  /** Signed with an access key id the service does not know. */
  UnrecognizedClient: 'UnrecognizedClientException',
  /**
   * Wrong signature, scope or clock. The SDK treats this name as a possible clock skew and
   * corrects its clock from the response's Date header on retry, as against AWS.
   */
  InvalidSignature: 'InvalidSignatureException',
  /** A Host header that does not name the service (DNS rebinding); not a CodeBuild name. */
  AccessDenied: 'AccessDeniedException',
} as const;

export function invalidInput(message: string): AwsServiceError {
  return new AwsServiceError(AwsErrorCode.InvalidInput, message);
}
