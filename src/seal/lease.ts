/**
 * The job lease on the wire: one ISO 8601 UTC time, the holder's promise to renew before
 * then. Read by the build, so parsed as untrusted input.
 */
import { CbactionsError } from '../util/errors.js';
import { SealErrorCode } from './errors.js';
import type { JobLease } from './types.js';

const ISO_UTC = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,3})?Z$/;

export function formatLease(lease: JobLease): string {
  return lease.expiresAt.toISOString();
}

/** `where` names the object in the error (a path or `s3://…`). */
export function parseLease(text: string, where: string): JobLease {
  const value = text.trim();
  const expiresAt = ISO_UTC.test(value) ? new Date(value) : undefined;
  if (expiresAt === undefined || Number.isNaN(expiresAt.getTime())) {
    throw new CbactionsError(SealErrorCode.BadLease, `the job lease at ${where} is not an ISO 8601 UTC time (${Math.min(value.length, 9999)} characters)`);
  }
  return { expiresAt };
}
