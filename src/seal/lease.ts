/**
 * The job lease on the wire: one ISO 8601 UTC time, the holder's promise to renew before
 * then, and optionally the facts the holder passes to the build for the job's own log
 * (compact JSON). Read by the build, so parsed as untrusted input.
 */
import { z } from 'zod';
import { CbactionsError } from '../util/errors.js';
import { SealErrorCode } from './errors.js';
import type { JobLease, JobLogFacts } from './types.js';

const ISO_UTC = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,3})?Z$/;
/** S3 user metadata is at most 2 KB in all; the facts are a few hundred bytes. */
export const MAX_LEASE_FACTS_CHARS = 1024;

const Milliseconds = z.number().finite().min(0).max(7 * 24 * 3600 * 1000);
const Token = z.string().regex(/^[A-Za-z0-9_./:-]{1,64}$/);

/** What the build accepts from the lease (anything else is dropped, never fatal: it only feeds log lines). */
export const JobLogFactsSchema = z.strictObject({
  waits: z.strictObject({ submittedMs: Milliseconds, queuedMs: Milliseconds, provisioningMs: Milliseconds }).optional(),
  price: z
    .strictObject({
      computeType: Token,
      rule: z.enum(['per-minute', 'per-second', 'fleet']),
      region: Token,
      perMinute: z.number().finite().min(0).max(1000).optional(),
      currency: z.string().regex(/^[A-Z]{3}$/),
      asOf: Token,
    })
    .optional(),
});

export function formatLease(lease: JobLease): string {
  return lease.expiresAt.toISOString();
}

export function formatLeaseFacts(facts: JobLogFacts): string {
  const text = JSON.stringify(facts);
  if (text.length > MAX_LEASE_FACTS_CHARS) throw new CbactionsError(SealErrorCode.InvalidInput, `the job lease's facts are ${text.length} characters; at most ${MAX_LEASE_FACTS_CHARS} fit`);
  return text;
}

/** The facts, or undefined when they are missing or not what the schema allows. */
export function parseLeaseFacts(text: string | undefined): JobLogFacts | undefined {
  if (text === undefined || text.length === 0 || text.length > MAX_LEASE_FACTS_CHARS) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  const parsed = JobLogFactsSchema.safeParse(value);
  if (!parsed.success) return undefined;
  const facts: JobLogFacts = {};
  if (parsed.data.waits) facts.waits = parsed.data.waits;
  if (parsed.data.price) {
    const { perMinute, ...rest } = parsed.data.price;
    facts.price = { ...rest, ...(perMinute !== undefined ? { perMinute } : {}) };
  }
  return facts;
}

/** `where` names the object in the error (a path or `s3://…`). `facts` is the optional second part. */
export function parseLease(text: string, where: string, factsText?: string): JobLease {
  const value = text.trim();
  const expiresAt = ISO_UTC.test(value) ? new Date(value) : undefined;
  if (expiresAt === undefined || Number.isNaN(expiresAt.getTime())) {
    throw new CbactionsError(SealErrorCode.BadLease, `the job lease at ${where} is not an ISO 8601 UTC time (${Math.min(value.length, 9999)} characters)`);
  }
  const facts = parseLeaseFacts(factsText?.trim());
  return facts ? { expiresAt, facts } : { expiresAt };
}

/** The local store keeps both parts in one file: the time, then the facts on a second line. */
export function formatLeaseFile(lease: JobLease): string {
  return lease.facts ? `${formatLease(lease)}\n${formatLeaseFacts(lease.facts)}\n` : formatLease(lease);
}

export function parseLeaseFile(text: string, where: string): JobLease {
  const newline = text.indexOf('\n');
  return newline < 0 ? parseLease(text, where) : parseLease(text.slice(0, newline), where, text.slice(newline + 1));
}
