import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { CbactionsError, isCbactionsError } from '../util/errors.js';
import { contextsEqual, describeContext, encryptionContextFor, sortedEntries } from './context.js';
import { SealErrorCode } from './errors.js';
import type { EncryptionContext, JobPayload, KeyService, MuxTimeline, PayloadBinding, PayloadIds } from './types.js';

export { ContextKey, encryptionContextFor } from './context.js';
export { SealErrorCode } from './errors.js';

/*
 * Envelope, version 1 (all integers big-endian):
 *
 *   offset      size  field
 *   0           4     magic 89 43 42 53 ("\x89CBS"; the high bit catches 7-bit/text mangling)
 *   4           1     version = 1
 *   5           4     H = header length
 *   9           H     header:
 *                       u8  len + provider  (UTF-8: "local" | "kms")
 *                       u16 len + key id    (UTF-8: local key fingerprint | KMS key ARN)
 *                       u16 len + wrapped data key
 *                       u16 n, then n × (u16 len + key, u16 len + value)  encryption context, sorted
 *                       12  IV
 *                       u32 C = ciphertext length
 *   9+H         16    header digest: SHA-256(bytes 0 .. 9+H)[0..16]
 *   25+H        C     AES-256-GCM ciphertext
 *   25+H+C      16    GCM tag
 *
 * AAD = bytes 0 .. 25+H (everything before the ciphertext), so any header change fails
 * authentication. The digest adds no security (anyone can recompute it); it only lets a
 * damaged header be reported as SEAL_TAMPERED instead of truncation or a wrong key.
 *
 * Plaintext: fields of u8 tag | u32 length | bytes, in any order, each at most once:
 *   1 job message (raw bytes, exactly as received: UTF-16LE, never re-encoded)
 *   2 .runner file   3 .credentials file (optional)   4 runner version (UTF-8, optional)
 *   5 ids (UTF-8 JSON object of strings)   6 mux timeline (UTF-8 JSON, optional)
 * Readers skip tags they don't know; a change old readers must not skip bumps the version.
 */

export const ENVELOPE_MAGIC: Readonly<Buffer> = Buffer.from([0x89, 0x43, 0x42, 0x53]);
export const ENVELOPE_VERSION = 1;
/** Above the runner's 50 MB pipe cap plus its config files; refuses nonsense lengths early. */
export const MAX_PLAINTEXT_BYTES = 128 * 1024 * 1024;

const PREFIX_BYTES = 9;
const DIGEST_BYTES = 16;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const MAX_HEADER_BYTES = 64 * 1024;
const FIELD_HEADER_BYTES = 5;

const Field = {
  JobMessage: 1,
  RunnerFile: 2,
  CredentialsFile: 3,
  RunnerVersion: 4,
  Ids: 5,
  Timeline: 6,
} as const;

export interface EnvelopeHeader {
  provider: string;
  keyId: string;
  wrappedKey: Buffer;
  context: EncryptionContext;
  iv: Buffer;
  ciphertextLength: number;
}

class Writer {
  private readonly parts: Buffer[] = [];

  u8(value: number): void {
    this.parts.push(Buffer.from([value]));
  }

  u16(value: number): void {
    const b = Buffer.alloc(2);
    b.writeUInt16BE(value);
    this.parts.push(b);
  }

  u32(value: number): void {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(value);
    this.parts.push(b);
  }

  raw(bytes: Buffer): void {
    this.parts.push(bytes);
  }

  /** Length-prefixed bytes; `width` is the prefix size in bytes. */
  sized(bytes: Buffer, width: 1 | 2, what: string): void {
    const max = width === 1 ? 0xff : 0xffff;
    if (bytes.length > max) throw new CbactionsError(SealErrorCode.InvalidInput, `${what} is longer than ${max} bytes`);
    if (width === 1) this.u8(bytes.length);
    else this.u16(bytes.length);
    this.raw(bytes);
  }

  toBuffer(): Buffer {
    return Buffer.concat(this.parts);
  }
}

/** Thrown inside header parsing only; turned into SEAL_TAMPERED by the caller. */
class Overrun extends Error {}

class Reader {
  offset = 0;
  constructor(private readonly bytes: Buffer) {}

  take(length: number): Buffer {
    if (this.offset + length > this.bytes.length) throw new Overrun();
    const out = this.bytes.subarray(this.offset, this.offset + length);
    this.offset += length;
    return out;
  }

  u8(): number {
    return this.take(1).readUInt8(0);
  }

  u16(): number {
    return this.take(2).readUInt16BE(0);
  }

  u32(): number {
    return this.take(4).readUInt32BE(0);
  }

  sized(width: 1 | 2): Buffer {
    return this.take(width === 1 ? this.u8() : this.u16());
  }

  get done(): boolean {
    return this.offset === this.bytes.length;
  }
}

function fieldHeader(tag: number, length: number): Buffer {
  const b = Buffer.alloc(FIELD_HEADER_BYTES);
  b.writeUInt8(tag, 0);
  b.writeUInt32BE(length, 1);
  return b;
}

function idsJson(ids: PayloadIds): Buffer {
  const out: Record<string, string> = {};
  for (const key of ['buildId', 'jobId', 'requestId', 'runnerName', 'pool'] as const) {
    const value = ids[key];
    if (value !== undefined) out[key] = value;
  }
  return Buffer.from(JSON.stringify(out), 'utf8');
}

function plaintextParts(payload: JobPayload): Buffer[] {
  const fields: [number, Buffer][] = [
    [Field.JobMessage, payload.jobMessage],
    [Field.RunnerFile, payload.runnerFile],
  ];
  if (payload.credentialsFile !== undefined) fields.push([Field.CredentialsFile, payload.credentialsFile]);
  if (payload.runnerVersion !== undefined) fields.push([Field.RunnerVersion, Buffer.from(payload.runnerVersion, 'utf8')]);
  fields.push([Field.Ids, idsJson(payload.ids)]);
  if (payload.timeline !== undefined) {
    const { assignedAt, dispatchedAt, start } = payload.timeline;
    fields.push([Field.Timeline, Buffer.from(JSON.stringify({ assignedAt, dispatchedAt, start }), 'utf8')]);
  }
  return fields.flatMap(([tag, bytes]) => [fieldHeader(tag, bytes.length), bytes]);
}

function digest(bytes: Buffer): Buffer {
  return createHash('sha256').update(bytes).digest().subarray(0, DIGEST_BYTES);
}

/**
 * Seals a job for exactly one build: AES-256-GCM under a fresh data key that the key
 * service binds to the build's encryption context. The job message is encrypted from
 * the caller's buffer as is (no copy of the plaintext is made, so none lingers).
 */
export async function sealPayload(keys: KeyService, payload: JobPayload, binding: PayloadBinding, signal?: AbortSignal): Promise<Buffer> {
  if (payload.ids.buildId !== binding.buildId) {
    throw new CbactionsError(
      SealErrorCode.InvalidInput,
      `payload ids name build ${payload.ids.buildId}, but it is being sealed for build ${binding.buildId}`,
    );
  }
  // UTF-8 cannot carry a lone surrogate: the version would open as U+FFFD, not as sealed.
  if (payload.runnerVersion !== undefined && /\p{Cs}/u.test(payload.runnerVersion)) {
    throw new CbactionsError(SealErrorCode.InvalidInput, `payload runner version for build ${binding.buildId} is not well-formed Unicode (it has a lone surrogate)`);
  }
  const context = encryptionContextFor(binding);
  const parts = plaintextParts(payload);
  const plaintextLength = parts.reduce((sum, part) => sum + part.length, 0);
  if (plaintextLength > MAX_PLAINTEXT_BYTES) {
    throw new CbactionsError(SealErrorCode.InvalidInput, `payload for build ${binding.buildId} is ${plaintextLength} bytes; at most ${MAX_PLAINTEXT_BYTES} can be sealed`);
  }

  const dataKey = await keys.generateDataKey(context, signal);
  try {
    const iv = randomBytes(IV_BYTES);
    const header = new Writer();
    header.sized(Buffer.from(keys.provider, 'utf8'), 1, 'key provider name');
    header.sized(Buffer.from(dataKey.keyId, 'utf8'), 2, 'key id');
    header.sized(dataKey.encrypted, 2, 'wrapped data key');
    const entries = sortedEntries(context);
    header.u16(entries.length);
    for (const [key, value] of entries) {
      header.sized(Buffer.from(key, 'utf8'), 2, 'encryption context key');
      header.sized(Buffer.from(value, 'utf8'), 2, 'encryption context value');
    }
    header.raw(iv);
    header.u32(plaintextLength);
    const headerBytes = header.toBuffer();

    const aadLength = PREFIX_BYTES + headerBytes.length + DIGEST_BYTES;
    const out = Buffer.allocUnsafe(aadLength + plaintextLength + TAG_BYTES);
    ENVELOPE_MAGIC.copy(out, 0);
    out.writeUInt8(ENVELOPE_VERSION, 4);
    out.writeUInt32BE(headerBytes.length, 5);
    headerBytes.copy(out, PREFIX_BYTES);
    digest(out.subarray(0, PREFIX_BYTES + headerBytes.length)).copy(out, PREFIX_BYTES + headerBytes.length);

    const cipher = createCipheriv('aes-256-gcm', dataKey.plaintext, iv, { authTagLength: TAG_BYTES });
    cipher.setAAD(out.subarray(0, aadLength));
    let offset = aadLength;
    for (const part of parts) {
      offset += cipher.update(part).copy(out, offset);
    }
    offset += cipher.final().copy(out, offset);
    cipher.getAuthTag().copy(out, offset);
    return out;
  } finally {
    dataKey.plaintext.fill(0);
  }
}

function truncated(length: number, needed: number, where: string): CbactionsError {
  return new CbactionsError(
    SealErrorCode.Truncated,
    `sealed payload is truncated: ${length} bytes, but its ${where} needs at least ${needed} (cut in transit or storage)`,
  );
}

function tampered(what: string): CbactionsError {
  return new CbactionsError(SealErrorCode.Tampered, `sealed payload was altered: ${what}; refusing to open it`);
}

export interface ParsedEnvelope {
  header: EnvelopeHeader;
  aad: Buffer;
  ciphertext: Buffer;
  tag: Buffer;
}

/** The header fields in layout order; throws Overrun when they run past the reader's bytes. */
function readHeader(reader: Reader): EnvelopeHeader {
  const provider = reader.sized(1).toString('utf8');
  const keyId = reader.sized(2).toString('utf8');
  const wrappedKey = reader.sized(2);
  const count = reader.u16();
  const context: Record<string, string> = {};
  for (let i = 0; i < count; i += 1) {
    const key = reader.sized(2).toString('utf8');
    context[key] = reader.sized(2).toString('utf8');
  }
  const iv = reader.take(IV_BYTES);
  const ciphertextLength = reader.u32();
  return { provider, keyId, wrappedKey, context, iv, ciphertextLength };
}

/** Where the header's fields end when read from the start of `bytes`, or undefined when they run past them. */
function headerFieldsEnd(bytes: Buffer): number | undefined {
  const reader = new Reader(bytes);
  try {
    readHeader(reader);
  } catch (error) {
    if (error instanceof Overrun) return undefined;
    throw error;
  }
  return reader.offset;
}

/** Splits an envelope, classifying damage before any key is touched. */
export function parseEnvelope(sealed: Buffer): ParsedEnvelope {
  const magicSeen = sealed.subarray(0, ENVELOPE_MAGIC.length);
  if (!magicSeen.equals(ENVELOPE_MAGIC.subarray(0, magicSeen.length))) {
    throw new CbactionsError(SealErrorCode.NotAPayload, 'not a cbactions sealed payload (its first bytes are not the envelope magic)');
  }
  if (sealed.length < PREFIX_BYTES) throw truncated(sealed.length, PREFIX_BYTES, 'fixed prefix');
  const version = sealed.readUInt8(4);
  if (version !== ENVELOPE_VERSION) {
    throw new CbactionsError(
      SealErrorCode.UnknownVersion,
      `sealed payload has envelope version ${version}; this cbactions reads version ${ENVELOPE_VERSION} (sender and build run different cbactions releases)`,
    );
  }
  const headerLength = sealed.readUInt32BE(5);
  if (headerLength > MAX_HEADER_BYTES) throw tampered(`header length ${headerLength} is implausible`);
  const aadLength = PREFIX_BYTES + headerLength + DIGEST_BYTES;
  if (sealed.length < aadLength) {
    // The length field is not covered by anything the reader can check yet, but the header's
    // fields delimit themselves: if they end within the bytes at hand, and not where the
    // length says, one changed byte of the length (not a cut) made the envelope look short.
    const fieldsEnd = headerFieldsEnd(sealed.subarray(PREFIX_BYTES));
    if (fieldsEnd !== undefined && fieldsEnd !== headerLength) throw tampered(`header length ${headerLength} disagrees with its fields (${fieldsEnd} bytes)`);
    throw truncated(sealed.length, aadLength, 'header');
  }
  const headerEnd = PREFIX_BYTES + headerLength;
  if (!digest(sealed.subarray(0, headerEnd)).equals(sealed.subarray(headerEnd, aadLength))) {
    throw tampered('the header does not match its digest');
  }

  let header: EnvelopeHeader;
  try {
    const reader = new Reader(sealed.subarray(PREFIX_BYTES, headerEnd));
    header = readHeader(reader);
    if (!reader.done) throw new Overrun();
  } catch (error) {
    if (error instanceof Overrun) throw tampered('the header fields do not fit its length');
    throw error;
  }
  if (header.ciphertextLength > MAX_PLAINTEXT_BYTES) throw tampered(`ciphertext length ${header.ciphertextLength} is implausible`);

  const total = aadLength + header.ciphertextLength + TAG_BYTES;
  if (sealed.length < total) throw truncated(sealed.length, total, 'header');
  if (sealed.length > total) throw tampered(`${sealed.length - total} bytes follow the end of the envelope`);
  return {
    header,
    aad: sealed.subarray(0, aadLength),
    ciphertext: sealed.subarray(aadLength, aadLength + header.ciphertextLength),
    tag: sealed.subarray(aadLength + header.ciphertextLength),
  };
}

async function explainWrongKey(keys: KeyService, header: EnvelopeHeader, expected: EncryptionContext, error: CbactionsError): Promise<CbactionsError> {
  if (contextsEqual(header.context, expected)) return error;
  // The header's context is a claim until a key confirms it; only say "sealed for" when one did.
  let confirmed = false;
  if (keys.probeContext !== undefined) {
    confirmed = await keys.probeContext(header.wrappedKey, header.keyId, header.context).catch(() => false);
  }
  const message = confirmed
    ? `payload was sealed for ${describeContext(header.context)}, not for ${describeContext(expected)}: a build can open only its own payload`
    : `${error.message}; the payload's header names ${describeContext(header.context)}, this is ${describeContext(expected)} (header not verified)`;
  return new CbactionsError(SealErrorCode.WrongKey, message, { cause: error });
}

function malformed(what: string): CbactionsError {
  return new CbactionsError(SealErrorCode.MalformedContent, `sealed payload opened but its content is malformed: ${what} (a cbactions bug)`);
}

function parseIds(bytes: Buffer): PayloadIds {
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw malformed('ids are not JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw malformed('ids are not an object');
  const record = value as Record<string, unknown>;
  const ids: Partial<PayloadIds> = {};
  for (const key of ['buildId', 'jobId', 'requestId', 'runnerName', 'pool'] as const) {
    const field = record[key];
    if (field === undefined) continue;
    if (typeof field !== 'string') throw malformed(`ids.${key} is not a string`);
    ids[key] = field;
  }
  if (ids.buildId === undefined) throw malformed('ids.buildId is missing');
  return ids as PayloadIds;
}

function parseTimeline(bytes: Buffer): MuxTimeline {
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw malformed('the timeline is not JSON');
  }
  const record = (typeof value === 'object' && value !== null ? value : {}) as Record<string, unknown>;
  const { assignedAt, dispatchedAt, start } = record;
  if (typeof assignedAt !== 'number' || !Number.isFinite(assignedAt) || typeof dispatchedAt !== 'number' || !Number.isFinite(dispatchedAt) || (start !== 'warm' && start !== 'cold')) {
    throw malformed('the timeline is not {assignedAt, dispatchedAt, start}');
  }
  return { assignedAt, dispatchedAt, start };
}

function parsePlaintext(plaintext: Buffer): JobPayload {
  const fields = new Map<number, Buffer>();
  let offset = 0;
  while (offset < plaintext.length) {
    if (offset + FIELD_HEADER_BYTES > plaintext.length) throw malformed('a field header is cut');
    const tag = plaintext.readUInt8(offset);
    const length = plaintext.readUInt32BE(offset + 1);
    offset += FIELD_HEADER_BYTES;
    if (offset + length > plaintext.length) throw malformed(`field ${tag} overruns the content`);
    if (fields.has(tag)) throw malformed(`field ${tag} appears twice`);
    fields.set(tag, plaintext.subarray(offset, offset + length));
    offset += length;
  }
  const jobMessage = fields.get(Field.JobMessage);
  const runnerFile = fields.get(Field.RunnerFile);
  const ids = fields.get(Field.Ids);
  if (jobMessage === undefined) throw malformed('the job message is missing');
  if (runnerFile === undefined) throw malformed('the .runner file is missing');
  if (ids === undefined) throw malformed('the ids are missing');
  const payload: JobPayload = { jobMessage, runnerFile, ids: parseIds(ids) };
  const credentialsFile = fields.get(Field.CredentialsFile);
  if (credentialsFile !== undefined) payload.credentialsFile = credentialsFile;
  const runnerVersion = fields.get(Field.RunnerVersion);
  if (runnerVersion !== undefined) payload.runnerVersion = runnerVersion.toString('utf8');
  const timeline = fields.get(Field.Timeline);
  if (timeline !== undefined) payload.timeline = parseTimeline(timeline);
  return payload;
}

/**
 * Opens a payload sealed for `binding`. The data key is unwrapped under the context this
 * binding implies (never the one the header claims), so KMS or the local key decides
 * whether this build may open it. The returned buffers share one plaintext allocation.
 */
export async function openPayload(keys: KeyService, sealed: Buffer, binding: PayloadBinding, signal?: AbortSignal): Promise<JobPayload> {
  const { header, aad, ciphertext, tag } = parseEnvelope(sealed);
  const expected = encryptionContextFor(binding);
  if (header.provider !== keys.provider) {
    throw new CbactionsError(
      SealErrorCode.WrongKey,
      `payload was sealed with a ${header.provider} key (${header.keyId}), but this process opens payloads with a ${keys.provider} key`,
    );
  }

  let dataKey: Buffer;
  try {
    dataKey = await keys.decryptDataKey(header.wrappedKey, header.keyId, expected, signal);
  } catch (error) {
    if (isCbactionsError(error, SealErrorCode.WrongKey)) throw await explainWrongKey(keys, header, expected, error);
    throw error;
  }

  let plaintext: Buffer;
  try {
    const decipher = createDecipheriv('aes-256-gcm', dataKey, header.iv, { authTagLength: TAG_BYTES });
    decipher.setAAD(aad);
    decipher.setAuthTag(tag);
    plaintext = decipher.update(ciphertext);
    try {
      decipher.final();
    } catch (error) {
      // GCM releases plaintext before it checks the tag: drop what was decrypted.
      plaintext.fill(0);
      throw new CbactionsError(SealErrorCode.Tampered, 'sealed payload was altered: its ciphertext, tag or header fails authentication; refusing to open it', {
        cause: error,
      });
    }
  } finally {
    dataKey.fill(0);
  }

  // Unreachable with an honest key service (the key is bound to `expected`); checked anyway.
  if (!contextsEqual(header.context, expected)) {
    plaintext.fill(0);
    throw new CbactionsError(SealErrorCode.WrongKey, `payload was sealed for ${describeContext(header.context)}, not for ${describeContext(expected)}`);
  }
  try {
    const payload = parsePlaintext(plaintext);
    if (payload.ids.buildId !== binding.buildId) {
      throw malformed(`its ids name build ${payload.ids.buildId}, but its encryption context names build ${binding.buildId}`);
    }
    return payload;
  } catch (error) {
    plaintext.fill(0);
    throw error;
  }
}
