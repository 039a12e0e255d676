import { DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { sleep } from '../util/backoff.js';
import { CbactionsError } from '../util/errors.js';
import { awsErrorName, awsHttpStatus, throwIfAborted, wrapAwsError } from '../util/aws-errors.js';
import { SealErrorCode } from './errors.js';
import { formatLease, formatLeaseFacts, parseLease } from './lease.js';
import type { JobLease, PayloadBinding, PayloadStore, TakeOptions } from './types.js';

export interface S3PayloadStoreOptions {
  client: S3Client;
  bucket: string;
  /** Key prefix, empty or ending in "/". */
  prefix?: string;
  /** When set, objects are written with SSE-KMS under this key. */
  kmsKeyId?: string;
  /** How often `take` retries GetObject while the payload has not arrived. */
  pollMs?: number;
}

const CANCEL_SUFFIX = '.cancel';
const LEASE_SUFFIX = '.lease';
/**
 * The lease's time travels as object metadata, read with HeadObject: the build role then
 * needs only s3:GetObject on `<prefix>${aws:userid}.lease`, and no kms:Decrypt even when the
 * bucket encrypts objects with SSE-KMS (HeadObject does not decrypt).
 */
const LEASE_METADATA = 'cbactions-lease-expires';
/** The facts for the job's log (JSON, ASCII only), beside the time in the same HeadObject. */
const LEASE_FACTS_METADATA = 'cbactions-lease-facts';

/**
 * Payloads in S3 at `<prefix><aws:userid>`, so an IAM statement on
 * `arn:aws:s3:::<bucket>/<prefix>${aws:userid}` (and `…${aws:userid}.cancel`, `….lease`) lets each
 * build reach its own object only, even when all builds share one role.
 *
 * Note for policies: without `s3:ListBucket` S3 answers a missing key with 403, not 404,
 * so a build's "not uploaded yet" would read as AccessDenied.
 */
export class S3PayloadStore implements PayloadStore {
  readonly bucket: string;
  readonly prefix: string;
  readonly #client: S3Client;
  readonly #kmsKeyId: string | undefined;
  readonly #pollMs: number;

  constructor(options: S3PayloadStoreOptions) {
    const prefix = options.prefix ?? '';
    if (prefix !== '' && !prefix.endsWith('/')) {
      throw new CbactionsError(SealErrorCode.BadReference, `S3 payload prefix "${prefix}" must be empty or end with "/"`);
    }
    this.#client = options.client;
    this.bucket = options.bucket;
    this.prefix = prefix;
    this.#kmsKeyId = options.kmsKeyId;
    this.#pollMs = options.pollMs ?? 1_000;
  }

  /** The object key of a build's payload: `<prefix><userId>`. */
  objectKey(binding: PayloadBinding): string {
    const userId = binding.userId;
    if (userId === undefined || userId.length === 0) {
      throw new CbactionsError(
        SealErrorCode.NoUserId,
        `the S3 payload store addresses build ${binding.buildId}'s payload by its aws:userid, but the binding has none: ` +
          `the worker needs the service role's unique id (pools[].build.serviceRole.roleId, AROA…), ` +
          `and the build resolves its own with resolveBuildBinding (STS GetCallerIdentity)`,
      );
    }
    if (userId.includes('/')) {
      throw new CbactionsError(SealErrorCode.InvalidInput, `aws:userid "${userId}" of build ${binding.buildId} contains "/"; expected <RoleUniqueId>:<session>`);
    }
    return `${this.prefix}${userId}`;
  }

  describe(binding: PayloadBinding): string {
    const key = binding.userId === undefined ? `${this.prefix}<no aws:userid for build ${binding.buildId}>` : `${this.prefix}${binding.userId}`;
    return `s3://${this.bucket}/${key}`;
  }

  async put(binding: PayloadBinding, sealed: Buffer, signal?: AbortSignal): Promise<void> {
    await this.#put(this.objectKey(binding), sealed, signal);
  }

  async take(binding: PayloadBinding, options: TakeOptions = {}): Promise<Buffer> {
    const { waitMs = 0, signal } = options;
    const key = this.objectKey(binding);
    const deadline = Date.now() + waitMs;
    let body: Buffer;
    for (;;) {
      signal?.throwIfAborted();
      try {
        const output = await this.#client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }), { abortSignal: signal });
        if (output.Body === undefined) throw new CbactionsError(SealErrorCode.S3Error, `S3 GetObject s3://${this.bucket}/${key} returned no body`);
        body = Buffer.from(await output.Body.transformToByteArray());
        break;
      } catch (error) {
        if (!this.#isMissing(error) && !this.#isDeniedAsMissing(error)) throw this.#wrap('GetObject', key, error, signal);
        const remaining = deadline - Date.now();
        if (remaining <= 0) {
          if (this.#isDeniedAsMissing(error)) throw this.#wrap('GetObject', key, error, signal);
          throw new CbactionsError(
            SealErrorCode.NotFound,
            `no payload at s3://${this.bucket}/${key} for build ${binding.buildId} after waiting ${waitMs} ms: ` +
              `it may have been used already (payloads are deleted when read) or never uploaded`,
            { cause: error },
          );
        }
        await sleep(Math.min(this.#pollMs, remaining), signal);
      }
    }
    // Single use: a payload that could not be deleted must not be treated as delivered.
    await this.#delete(key, signal);
    return body;
  }

  /**
   * The listener task may write and delete payloads but not read them (least privilege: not
   * even HeadObject), so it asks S3 with a conditional write instead: PutObject of an empty
   * body with `If-None-Match: *` fails with 412 when the payload is still there; when it is
   * not (taken), the empty object it created is deleted at once. Only a build that has
   * already taken its payload (it never polls again) or has ended can see that object.
   */
  async isPending(binding: PayloadBinding, signal?: AbortSignal): Promise<boolean> {
    const key = this.objectKey(binding);
    try {
      await this.#client.send(new PutObjectCommand({
          Bucket: this.bucket,
          Key: key,
          Body: Buffer.alloc(0),
          IfNoneMatch: '*',
          ContentType: 'application/octet-stream',
          ...(this.#kmsKeyId === undefined ? {} : { ServerSideEncryption: 'aws:kms' as const, SSEKMSKeyId: this.#kmsKeyId }),
        }), { abortSignal: signal });
    } catch (error) {
      if (awsHttpStatus(error) === 412 || awsErrorName(error) === 'PreconditionFailed') return true;
      throw this.#wrap('PutObject', key, error, signal);
    }
    await this.#delete(key, signal);
    return false;
  }

  async delete(binding: PayloadBinding, signal?: AbortSignal): Promise<void> {
    await this.#delete(this.objectKey(binding), signal);
  }

  async requestCancel(binding: PayloadBinding, signal?: AbortSignal): Promise<void> {
    await this.#put(this.objectKey(binding) + CANCEL_SUFFIX, Buffer.alloc(0), signal);
  }

  async isCancelRequested(binding: PayloadBinding, signal?: AbortSignal): Promise<boolean> {
    const key = this.objectKey(binding) + CANCEL_SUFFIX;
    try {
      await this.#client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }), { abortSignal: signal });
      return true;
    } catch (error) {
      if (this.#isMissing(error) || this.#isDeniedAsMissing(error)) return false;
      throw this.#wrap('HeadObject', key, error, signal);
    }
  }

  async clearCancel(binding: PayloadBinding, signal?: AbortSignal): Promise<void> {
    await this.#delete(this.objectKey(binding) + CANCEL_SUFFIX, signal);
  }

  async renewLease(binding: PayloadBinding, lease: JobLease, signal?: AbortSignal): Promise<void> {
    await this.#put(this.objectKey(binding) + LEASE_SUFFIX, Buffer.alloc(0), signal, {
      [LEASE_METADATA]: formatLease(lease),
      ...(lease.facts ? { [LEASE_FACTS_METADATA]: formatLeaseFacts(lease.facts) } : {}),
    });
  }

  async readLease(binding: PayloadBinding, signal?: AbortSignal): Promise<JobLease | undefined> {
    const key = this.objectKey(binding) + LEASE_SUFFIX;
    let metadata: Record<string, string> | undefined;
    try {
      metadata = (await this.#client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }), { abortSignal: signal })).Metadata;
    } catch (error) {
      if (this.#isMissing(error) || this.#isDeniedAsMissing(error)) return undefined;
      throw this.#wrap('HeadObject', key, error, signal);
    }
    return parseLease(metadata?.[LEASE_METADATA] ?? '', `s3://${this.bucket}/${key}`, metadata?.[LEASE_FACTS_METADATA]);
  }

  async releaseLease(binding: PayloadBinding, signal?: AbortSignal): Promise<void> {
    await this.#delete(this.objectKey(binding) + LEASE_SUFFIX, signal);
  }

  async #put(key: string, body: Buffer, signal: AbortSignal | undefined, metadata?: Record<string, string>): Promise<void> {
    try {
      await this.#client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: key,
          Body: body,
          ...(metadata ? { Metadata: metadata } : {}),
          ContentType: 'application/octet-stream',
          ...(this.#kmsKeyId === undefined ? {} : { ServerSideEncryption: 'aws:kms' as const, SSEKMSKeyId: this.#kmsKeyId }),
        }),
        { abortSignal: signal },
      );
    } catch (error) {
      throw this.#wrap('PutObject', key, error, signal);
    }
  }

  // S3 DeleteObject succeeds for a missing key, which makes delete and clearCancel idempotent.
  async #delete(key: string, signal: AbortSignal | undefined): Promise<void> {
    try {
      await this.#client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }), { abortSignal: signal });
    } catch (error) {
      throw this.#wrap('DeleteObject', key, error, signal);
    }
  }

  /**
   * S3 answers 403, not 404, for a missing object when the caller may not list the bucket
   * — and the build role may read only its own keys, so "not there yet" can look like
   * "denied". While waiting, and for the cancel marker, a 403 on the build's own key is
   * read as "absent"; a real denial still surfaces when the wait ends.
   */
  #isDeniedAsMissing(error: unknown): boolean {
    return awsErrorName(error) === 'AccessDenied' || awsHttpStatus(error) === 403;
  }

  #isMissing(error: unknown): boolean {
    const name = awsErrorName(error);
    // HeadObject has no body, so its 404 arrives as "NotFound".
    return name === 'NoSuchKey' || name === 'NotFound' || (awsHttpStatus(error) === 404 && name !== 'NoSuchBucket');
  }

  #wrap(operation: string, key: string, error: unknown, signal: AbortSignal | undefined): unknown {
    throwIfAborted(signal);
    if (error instanceof CbactionsError) return error;
    const name = awsErrorName(error);
    const where = `s3://${this.bucket}/${key}`;
    if (name === 'AccessDenied' || awsHttpStatus(error) === 403) {
      return wrapAwsError(
        SealErrorCode.S3AccessDenied,
        `S3 ${operation} on ${where} was denied (${name}): this role may only reach <prefix>\${aws:userid}; ` +
          `a missing object also reads as AccessDenied when the role lacks s3:ListBucket on the prefix`,
        error,
      );
    }
    if (name === 'NoSuchBucket') {
      return wrapAwsError(SealErrorCode.S3BucketNotFound, `S3 ${operation}: bucket ${this.bucket} does not exist (NoSuchBucket)`, error);
    }
    return wrapAwsError(SealErrorCode.S3Error, `S3 ${operation} on ${where} failed (${name})`, error);
  }
}
