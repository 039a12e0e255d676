import { isAbsolute, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { PayloadsConfig } from '../config/schema.js';
import { CbactionsError } from '../util/errors.js';
import { SealErrorCode } from './errors.js';

/**
 * Where a build finds its payload and key, as the worker passes them in (non-secret)
 * environment variables:
 *   CBACTIONS_PAYLOAD_STORE = s3://<bucket>/<prefix>   |  file:///abs/dir
 *   CBACTIONS_PAYLOAD_KEY   = kms:<key id, ARN, alias>  |  file:///abs/keyfile
 */
export const PAYLOAD_STORE_VARIABLE = 'CBACTIONS_PAYLOAD_STORE';
export const PAYLOAD_KEY_VARIABLE = 'CBACTIONS_PAYLOAD_KEY';

export type PayloadStoreRef = { kind: 's3'; bucket: string; prefix: string } | { kind: 'local'; dir: string };
export type PayloadKeyRef = { kind: 'kms'; keyId: string } | { kind: 'local'; file: string };
export interface PayloadRefs {
  store: PayloadStoreRef;
  key: PayloadKeyRef;
}

// Same rules as PayloadsSchema in src/config/schema.ts: a reference must be what config allows.
const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const PREFIX = /^([A-Za-z0-9!_.*'()-]+\/)*$/;
// KMS key ids, ARNs and aliases: no whitespace or control characters.
const KMS_KEY = /^[\x21-\x7e]{1,2048}$/;

function bad(variable: string, value: string, expected: string, problem?: string): CbactionsError {
  const shown = value.length > 200 ? `${value.slice(0, 200)}…` : value;
  return new CbactionsError(
    SealErrorCode.BadReference,
    `${variable}="${shown}" is not valid${problem === undefined ? '' : ` (${problem})`}: expected ${expected}`,
  );
}

function parseFileUrl(value: string, variable: string, expected: string): string {
  // WHATWG URL parsing reads "file:x" as "/x"; only the explicit "file://" form is meant.
  if (!value.startsWith('file://')) throw bad(variable, value, expected, 'a file URL starts with "file:///"');
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw bad(variable, value, expected, 'not a URL');
  }
  if (url.host !== '' && url.host !== 'localhost') throw bad(variable, value, expected, `file URL names host "${url.host}"`);
  if (url.search !== '' || url.hash !== '') throw bad(variable, value, expected, 'file URL has a query or fragment');
  const path = fileURLToPath(url);
  if (path === '/' || path === '') throw bad(variable, value, expected, 'no path');
  return path;
}

const STORE_FORMS = '"s3://<bucket>/<prefix>/" or "file:///<absolute directory>"';
const KEY_FORMS = '"kms:<key id, key ARN or alias/name>" or "file:///<absolute key file>"';

export function parsePayloadStoreRef(value: string | undefined, variable: string = PAYLOAD_STORE_VARIABLE): PayloadStoreRef {
  if (value === undefined || value.trim() === '') {
    throw new CbactionsError(SealErrorCode.BadReference, `${variable} is not set: expected ${STORE_FORMS}`);
  }
  if (value.startsWith('s3://')) {
    const rest = value.slice('s3://'.length);
    const slash = rest.indexOf('/');
    const bucket = slash < 0 ? rest : rest.slice(0, slash);
    const prefix = slash < 0 ? '' : rest.slice(slash + 1);
    if (!BUCKET.test(bucket)) throw bad(variable, value, STORE_FORMS, `"${bucket}" is not an S3 bucket name`);
    if (!PREFIX.test(prefix)) throw bad(variable, value, STORE_FORMS, 'the key prefix must be empty or end with "/" and use only letters, digits and !_.*\'()-');
    return { kind: 's3', bucket, prefix };
  }
  if (value.startsWith('file:')) {
    return { kind: 'local', dir: parseFileUrl(value, variable, STORE_FORMS) };
  }
  throw bad(variable, value, STORE_FORMS);
}

export function parsePayloadKeyRef(value: string | undefined, variable: string = PAYLOAD_KEY_VARIABLE): PayloadKeyRef {
  if (value === undefined || value.trim() === '') {
    throw new CbactionsError(SealErrorCode.BadReference, `${variable} is not set: expected ${KEY_FORMS}`);
  }
  if (value.startsWith('kms:')) {
    const keyId = value.slice('kms:'.length);
    if (!KMS_KEY.test(keyId)) throw bad(variable, value, KEY_FORMS, 'empty or malformed KMS key id');
    return { kind: 'kms', keyId };
  }
  if (value.startsWith('file:')) {
    return { kind: 'local', file: parseFileUrl(value, variable, KEY_FORMS) };
  }
  throw bad(variable, value, KEY_FORMS);
}

export function formatPayloadStoreRef(ref: PayloadStoreRef): string {
  if (ref.kind === 's3') return `s3://${ref.bucket}/${ref.prefix}`;
  return pathToFileURL(ref.dir).href;
}

export function formatPayloadKeyRef(ref: PayloadKeyRef): string {
  if (ref.kind === 'kms') return `kms:${ref.keyId}`;
  return pathToFileURL(ref.file).href;
}

function absolute(path: string, field: string, baseDir: string | undefined): string {
  if (isAbsolute(path)) return path;
  if (baseDir !== undefined) return resolve(baseDir, path);
  throw new CbactionsError(SealErrorCode.BadReference, `${field} "${path}" must be an absolute path (the build resolves it on its own machine)`);
}

/**
 * References from the config's `payloads` section. Relative local paths resolve against
 * `baseDir` (e.g. the config file's directory) or are refused.
 */
export function payloadRefsFromConfig(payloads: PayloadsConfig, options: { baseDir?: string } = {}): PayloadRefs {
  const store: PayloadStoreRef =
    's3' in payloads.store
      ? { kind: 's3', bucket: payloads.store.s3.bucket, prefix: payloads.store.s3.prefix }
      : { kind: 'local', dir: absolute(payloads.store.local.dir, 'payloads.store.local.dir', options.baseDir) };
  const key: PayloadKeyRef =
    'kms' in payloads.key
      ? { kind: 'kms', keyId: payloads.key.kms.keyId }
      : { kind: 'local', file: absolute(payloads.key.local.file, 'payloads.key.local.file', options.baseDir) };
  return { store, key };
}

/** The two environment variables a build gets. Neither is secret. */
export function payloadEnvironment(refs: PayloadRefs): { [PAYLOAD_STORE_VARIABLE]: string; [PAYLOAD_KEY_VARIABLE]: string } {
  return {
    [PAYLOAD_STORE_VARIABLE]: formatPayloadStoreRef(refs.store),
    [PAYLOAD_KEY_VARIABLE]: formatPayloadKeyRef(refs.key),
  };
}

/** Parses both variables from an environment the caller passes in (main reads process.env). */
export function payloadRefsFromEnvironment(env: Readonly<Record<string, string | undefined>>): PayloadRefs {
  return {
    store: parsePayloadStoreRef(env[PAYLOAD_STORE_VARIABLE], PAYLOAD_STORE_VARIABLE),
    key: parsePayloadKeyRef(env[PAYLOAD_KEY_VARIABLE], PAYLOAD_KEY_VARIABLE),
  };
}
