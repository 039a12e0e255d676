import { CbactionsError } from '../util/errors.js';
import { SealErrorCode } from './errors.js';
import type { EncryptionContext, PayloadBinding } from './types.js';

/**
 * The binding → encryption-context mapping. KMS binds a data key to this context, and an
 * IAM policy can require `kms:EncryptionContext:cbactions:userid` = `${aws:userid}`, so
 * only the build's own role session can unwrap its key.
 */
export const ContextKey = {
  BuildId: 'cbactions:build-id',
  UserId: 'cbactions:userid',
} as const;

// KMS accepts at most 8,192 bytes of encryption context; a build id is far below this.
const MAX_CONTEXT_VALUE_BYTES = 2_048;

function checkValue(field: string, value: string): void {
  if (value.length === 0) {
    throw new CbactionsError(SealErrorCode.InvalidInput, `payload binding ${field} is empty`);
  }
  if (Buffer.byteLength(value, 'utf8') > MAX_CONTEXT_VALUE_BYTES) {
    throw new CbactionsError(SealErrorCode.InvalidInput, `payload binding ${field} is longer than ${MAX_CONTEXT_VALUE_BYTES} bytes`);
  }
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(value)) {
    throw new CbactionsError(SealErrorCode.InvalidInput, `payload binding ${field} contains control characters`);
  }
  // The context travels as UTF-8, which turns every lone surrogate into U+FFFD: two
  // bindings that differ only there would share one context, and so one data key.
  if (/\p{Cs}/u.test(value)) {
    throw new CbactionsError(SealErrorCode.InvalidInput, `payload binding ${field} is not well-formed Unicode (it has a lone surrogate)`);
  }
}

/** `cbactions:build-id` always; `cbactions:userid` when the binding has one. */
export function encryptionContextFor(binding: PayloadBinding): EncryptionContext {
  checkValue('buildId', binding.buildId);
  const context: Record<string, string> = { [ContextKey.BuildId]: binding.buildId };
  if (binding.userId !== undefined) {
    checkValue('userId', binding.userId);
    context[ContextKey.UserId] = binding.userId;
  }
  return Object.freeze(context);
}

/** Entries sorted by key (UTF-16 code unit order, same for the ASCII keys we use). */
export function sortedEntries(context: EncryptionContext): [string, string][] {
  return Object.entries(context).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * One byte string per context, used as AAD by the local key service: u16 count, then per
 * sorted entry u16 key length, key, u16 value length, value (UTF-8, big-endian lengths).
 * Length-prefixing makes `{a: "b:c"}` and `{"a:b": "c"}` encode differently.
 */
export function canonicalContext(context: EncryptionContext): Buffer {
  const parts: Buffer[] = [];
  const entries = sortedEntries(context);
  const count = Buffer.alloc(2);
  count.writeUInt16BE(entries.length);
  parts.push(count);
  for (const [key, value] of entries) {
    for (const text of [key, value]) {
      const bytes = Buffer.from(text, 'utf8');
      const length = Buffer.alloc(2);
      length.writeUInt16BE(bytes.length);
      parts.push(length, bytes);
    }
  }
  return Buffer.concat(parts);
}

export function contextsEqual(a: EncryptionContext, b: EncryptionContext): boolean {
  return canonicalContext(a).equals(canonicalContext(b));
}

/** Which build (and userid) a context names, for error messages. Build ids are not secret. */
export function describeContext(context: EncryptionContext): string {
  const buildId = context[ContextKey.BuildId];
  const userId = context[ContextKey.UserId];
  const build = buildId === undefined ? 'no build id' : `build ${buildId}`;
  return userId === undefined ? build : `${build} (aws:userid ${userId})`;
}
