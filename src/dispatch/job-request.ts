import { CbactionsError } from '../util/errors.js';

/** The non-secret identifiers of a job, read from the NewJobRequest body. */
export interface JobIds {
  jobId: string;
  requestId?: string;
  messageType?: string;
  displayName?: string;
}

/**
 * The job message as JSON, parsed once for everything cbactions reads of it (the ids here,
 * the policy's context in job-context.ts). The message is untrusted and secret: nothing of
 * it but what those readers pick is ever logged or sent anywhere in plaintext.
 */
export function parseJobMessage(body: Buffer): Record<string, unknown> {
  let message: unknown;
  try {
    message = JSON.parse(body.toString('utf16le'));
  } catch {
    throw new CbactionsError('JOB_MESSAGE_INVALID', 'the job message from the listener is not valid JSON');
  }
  if (typeof message !== 'object' || message === null || Array.isArray(message)) {
    throw new CbactionsError('JOB_MESSAGE_INVALID', 'the job message from the listener is not a JSON object');
  }
  return message as Record<string, unknown>;
}

/** Parses only what cbactions needs from the job message: its ids. */
export function readJobIds(body: Buffer): JobIds {
  return jobIdsOf(parseJobMessage(body));
}

/** The ids of a parsed job message. */
export function jobIdsOf(record: Record<string, unknown>): JobIds {
  const jobId = scalar(record.jobId);
  if (jobId === undefined || !/^[A-Za-z0-9_.:-]{1,128}$/.test(jobId)) {
    throw new CbactionsError('JOB_MESSAGE_INVALID', 'the job message has no usable jobId');
  }
  const ids: JobIds = { jobId };
  const requestId = scalar(record.requestId);
  if (requestId !== undefined && /^[0-9]{1,20}$/.test(requestId)) ids.requestId = requestId;
  const messageType = scalar(record.messageType);
  if (messageType !== undefined && /^[A-Za-z]{1,64}$/.test(messageType)) ids.messageType = messageType;
  const displayName = scalar(record.jobDisplayName);
  if (displayName !== undefined) ids.displayName = displayName.slice(0, 200);
  return ids;
}

function scalar(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  return undefined;
}
