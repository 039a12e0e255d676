/**
 * The contracts of sealing. Adapters (local key + directory, KMS + S3) implement
 * `KeyService` and `PayloadStore`; the worker and entrypoint only see these.
 */

/**
 * What a payload is bound to: exactly one build. `buildId` is CodeBuild's `project:uuid`.
 * `userId` is the `aws:userid` the build's role session will have
 * (`<RoleUniqueId>:AWSCodeBuild-<uuid>`) when the role's unique id is known; adapters
 * that bind to IAM identity (S3 key, KMS encryption context) require it.
 */
export interface PayloadBinding {
  buildId: string;
  userId?: string;
}

/** A data key from the key service: use `plaintext` once and drop it. */
export interface DataKey {
  plaintext: Buffer;
  /** Opaque wrapped key, stored in the envelope header. */
  encrypted: Buffer;
  /** Which master key wrapped it (KMS key ARN, or a local key fingerprint). */
  keyId: string;
}

export type EncryptionContext = Readonly<Record<string, string>>;

export interface KeyService {
  /** `local` or `kms`; recorded in the envelope so a payload names what opens it. */
  readonly provider: string;
  generateDataKey(context: EncryptionContext, signal?: AbortSignal): Promise<DataKey>;
  /** Throws SEAL_WRONG_KEY when the key or the context does not match. */
  decryptDataKey(encrypted: Buffer, keyId: string, context: EncryptionContext, signal?: AbortSignal): Promise<Buffer>;
  /**
   * Whether `encrypted` unwraps under `context`, to tell a person which build a payload
   * really was sealed for. Offered only where trying has no side effects (the local key);
   * KMS leaves it out: the probe would be a Decrypt call that least-privilege policy denies.
   */
  probeContext?(encrypted: Buffer, keyId: string, context: EncryptionContext): Promise<boolean>;
}

export interface TakeOptions {
  /** How long to wait for the object to appear (the worker uploads while the build provisions). */
  waitMs?: number;
  signal?: AbortSignal;
}

export interface PayloadStore {
  /** Human-readable location for logs and errors (never secret): `s3://b/k`, a path. */
  describe(binding: PayloadBinding): string;
  put(binding: PayloadBinding, sealed: Buffer, signal?: AbortSignal): Promise<void>;
  /** Reads and deletes: a payload opens once. Throws PAYLOAD_NOT_FOUND / PAYLOAD_ALREADY_USED. */
  take(binding: PayloadBinding, options?: TakeOptions): Promise<Buffer>;
  /**
   * Whether the payload is still there, put and not taken (a standby handover: a build that
   * ended with its payload still waiting never opened the job). Throws when the store can't tell.
   */
  isPending(binding: PayloadBinding, signal?: AbortSignal): Promise<boolean>;
  /** Removes the payload if still there (cleanup after a failed start). Idempotent. */
  delete(binding: PayloadBinding, signal?: AbortSignal): Promise<void>;
  /** The worker asks the build to cancel its job. */
  requestCancel(binding: PayloadBinding, signal?: AbortSignal): Promise<void>;
  /** The entrypoint polls this. */
  isCancelRequested(binding: PayloadBinding, signal?: AbortSignal): Promise<boolean>;
  /** Removes the cancel marker (the build's last act). Idempotent. */
  clearCancel(binding: PayloadBinding, signal?: AbortSignal): Promise<void>;
  /**
   * The job's lease: whoever holds the job (the worker) renews it while it lives, so a build
   * whose holder is gone notices and ends (the entrypoint reads it). Replaces any earlier lease.
   */
  renewLease(binding: PayloadBinding, lease: JobLease, signal?: AbortSignal): Promise<void>;
  /** The current lease, or undefined when there is none (never written, or released). Throws PAYLOAD_BAD_LEASE for one that cannot be read as a lease. */
  readLease(binding: PayloadBinding, signal?: AbortSignal): Promise<JobLease | undefined>;
  /** The holder lets go at the end of the job. Idempotent. */
  releaseLease(binding: PayloadBinding, signal?: AbortSignal): Promise<void>;
}

/** Until when the holder of a job vouches for it. Not secret: a time only. */
export interface JobLease {
  expiresAt: Date;
  /** What the holder learned for the job's own log (CodeBuild's phase waits, the price); see dispatch/job-log-facts.ts. */
  facts?: JobLogFacts;
}

/**
 * What the mux tells the build for the lines it prints in the job's log: only the mux sees
 * CodeBuild's phases (BatchGetBuilds), and only its config holds the price table. Not secret.
 */
export interface JobLogFacts {
  /** CodeBuild's own phase durations (ms) before the build ran a command. */
  waits?: { submittedMs: number; queuedMs: number; provisioningMs: number };
  /** How this build is billed. */
  price?: { computeType: string; rule: 'per-minute' | 'per-second' | 'fleet'; region: string; perMinute?: number; currency: string; asOf: string };
}

/** What travels to the build. Never the runner's RSA key (`.credentials_rsaparams`). */
export interface JobPayload {
  /** The NewJobRequest body exactly as received: UTF-16LE bytes. */
  jobMessage: Buffer;
  /** `.runner` file bytes. */
  runnerFile: Buffer;
  /** `.credentials` with only non-secret fields. */
  credentialsFile?: Buffer;
  /** actions/runner version the listener runs (the build installs it when missing). */
  runnerVersion?: string;
  ids: PayloadIds;
  /** When the mux took the job and handed it to this build (mux clock): the job's timeline starts here. */
  timeline?: MuxTimeline;
}

/** Times the mux knows before the build has the job, epoch ms on the mux's clock. Not secret. */
export interface MuxTimeline {
  /** The NewJobRequest was read from the listener. */
  assignedAt: number;
  /** StartBuild was sent (cold), or a ready standby build was claimed (warm). */
  dispatchedAt: number;
  start: 'warm' | 'cold';
}

export interface PayloadIds {
  buildId: string;
  jobId?: string;
  requestId?: string;
  runnerName?: string;
  pool?: string;
}
