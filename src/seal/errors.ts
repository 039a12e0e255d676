/**
 * Stable error codes of sealing. Callers branch on these (`isCbactionsError(e, code)`),
 * never on message text. Messages name ids and locations, never content or keys.
 */
export const SealErrorCode = {
  /** Ciphertext, tag or header was altered (authentication failed). */
  Tampered: 'SEAL_TAMPERED',
  /** Shorter than its own header says: cut in transit or storage. */
  Truncated: 'SEAL_TRUNCATED',
  /** A different master key, or an encryption context (build) that does not match. */
  WrongKey: 'SEAL_WRONG_KEY',
  /** Made by a newer (or unknown) envelope writer. */
  UnknownVersion: 'SEAL_UNKNOWN_VERSION',
  /** Does not start with the envelope magic: not a sealed payload at all. */
  NotAPayload: 'SEAL_NOT_A_PAYLOAD',
  /** Authentic but unreadable content: a writer bug, never an attack. */
  MalformedContent: 'SEAL_MALFORMED_CONTENT',
  /** The caller asked to seal something that can't be sealed (binding/ids disagree, too large). */
  InvalidInput: 'SEAL_INVALID_INPUT',
  /** A local key file readable or writable by other users. */
  KeyFileInsecure: 'SEAL_KEY_FILE_INSECURE',
  /** A local key file that is missing, not a file, or not exactly 32 bytes. */
  KeyFileInvalid: 'SEAL_KEY_FILE_INVALID',
  /** `createLocalKeyFile` refuses to overwrite a key (payloads sealed under it would be lost). */
  KeyFileExists: 'SEAL_KEY_FILE_EXISTS',
  /** A factory was given a reference whose SDK client was not passed in. */
  MissingClient: 'SEAL_MISSING_CLIENT',

  /** The payload was taken already (single use). */
  AlreadyUsed: 'PAYLOAD_ALREADY_USED',
  /** No payload appeared within the wait. */
  NotFound: 'PAYLOAD_NOT_FOUND',
  /** The store addresses payloads by `aws:userid`, and the binding has none. */
  NoUserId: 'PAYLOAD_NO_USERID',
  /** The build's role session is not named after its build id. */
  IdentityMismatch: 'PAYLOAD_IDENTITY_MISMATCH',
  /** A build id that is not `project:uuid`. */
  BadBuildId: 'PAYLOAD_BAD_BUILD_ID',
  /** A `CBACTIONS_PAYLOAD_STORE` / `CBACTIONS_PAYLOAD_KEY` value that can't be parsed. */
  BadReference: 'PAYLOAD_BAD_REFERENCE',
  /** A local payload directory operation failed (permissions, disk full, …). */
  StoreIo: 'PAYLOAD_STORE_IO',
  /** A job lease object that does not hold a lease (written by something else, or torn). */
  BadLease: 'PAYLOAD_BAD_LEASE',

  KmsAccessDenied: 'KMS_ACCESS_DENIED',
  KmsKeyNotFound: 'KMS_KEY_NOT_FOUND',
  KmsKeyUnusable: 'KMS_KEY_UNUSABLE',
  KmsError: 'KMS_ERROR',
  S3AccessDenied: 'S3_ACCESS_DENIED',
  S3BucketNotFound: 'S3_BUCKET_NOT_FOUND',
  S3Error: 'S3_ERROR',
  StsError: 'STS_ERROR',
} as const;

export type SealErrorCode = (typeof SealErrorCode)[keyof typeof SealErrorCode];
