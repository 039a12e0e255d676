import { createHmac, randomBytes } from 'node:crypto';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { CbactionsError } from '../util/errors.js';

/** The key pair callers sign their CodeBuild requests with (AWS SigV4), as the SDK's static credentials. */
export interface ServiceCredentials {
  accessKeyId: string;
  secretAccessKey: string;
}

/** Default profile of the credentials file the service writes. */
export const DEFAULT_CREDENTIALS_PROFILE = 'cbactions-local';
/** Key, in the profile, of the bearer token for the `/_local/` control API (ignored by the AWS SDKs and CLI). */
export const CONTROL_TOKEN_KEY = 'cbactions_control_token';
/** Environment variables that hand the service a fixed key pair instead of a generated one; never passed on to builds. */
export const BuildServiceKeyEnv = {
  AccessKeyId: 'CBACTIONS_BUILD_SERVICE_ACCESS_KEY_ID',
  SecretAccessKey: 'CBACTIONS_BUILD_SERVICE_SECRET_ACCESS_KEY',
} as const;

export const CredentialsErrorCode = {
  Invalid: 'BUILD_SERVICE_CREDENTIALS_INVALID',
  Unwritable: 'BUILD_SERVICE_CREDENTIALS_UNWRITABLE',
} as const;

const ACCESS_KEY_ID_PATTERN = /^[A-Z0-9]{16,128}$/;
const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/**
 * A fresh key pair: 20-character id shaped like an AWS one but with a prefix no AWS key
 * has (so nobody mistakes it for a real key), and a 240-bit secret.
 */
export function generateServiceCredentials(random: (size: number) => Buffer = randomBytes): ServiceCredentials {
  const idBytes = random(13);
  let suffix = '';
  for (const byte of idBytes) suffix += BASE32[byte % 32];
  return { accessKeyId: `CBLOCAL${suffix}`, secretAccessKey: random(30).toString('base64url') };
}

/** Checks a given key pair (from the environment) so a typo fails at start, not at the first call. */
export function checkServiceCredentials(accessKeyId: string | undefined, secretAccessKey: string | undefined): ServiceCredentials | undefined {
  if (accessKeyId === undefined && secretAccessKey === undefined) return undefined;
  const { AccessKeyId, SecretAccessKey } = BuildServiceKeyEnv;
  if (accessKeyId === undefined || secretAccessKey === undefined) {
    throw new CbactionsError(CredentialsErrorCode.Invalid, `${AccessKeyId} and ${SecretAccessKey} go together: set both or neither`);
  }
  if (!ACCESS_KEY_ID_PATTERN.test(accessKeyId)) throw new CbactionsError(CredentialsErrorCode.Invalid, `${AccessKeyId} must be 16 to 128 upper-case letters and digits`);
  // Shortest secret worth the name; no upper bound beyond what an environment holds.
  if (secretAccessKey.length < 16 || /\s/.test(secretAccessKey)) {
    throw new CbactionsError(CredentialsErrorCode.Invalid, `${SecretAccessKey} must be at least 16 characters without whitespace`);
  }
  return { accessKeyId, secretAccessKey };
}

/**
 * The `/_local/` bearer token, derived from the secret so that it is fixed for a given key
 * pair and showing it does not reveal the signing key.
 */
export function controlTokenFor(credentials: ServiceCredentials): string {
  return createHmac('sha256', credentials.secretAccessKey).update('cbactions build service control API').digest('base64url');
}

/** The AWS shared-credentials file (INI) with one profile. */
export function formatCredentialsFile(profile: string, credentials: ServiceCredentials): string {
  return [
    '# Written by `cbactions build-service` at start; valid while it runs.',
    `[${profile}]`,
    `aws_access_key_id = ${credentials.accessKeyId}`,
    `aws_secret_access_key = ${credentials.secretAccessKey}`,
    `${CONTROL_TOKEN_KEY} = ${controlTokenFor(credentials)}`,
    '',
  ].join('\n');
}

/** Replaces `path` atomically with a file only its owner can read (0600). */
export async function writeCredentialsFile(path: string, profile: string, credentials: ServiceCredentials): Promise<void> {
  const partial = `${path}.${process.pid}.partial`;
  try {
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    await writeFile(partial, formatCredentialsFile(profile, credentials), { mode: 0o600, flag: 'wx' });
    await rename(partial, path);
  } catch (error) {
    await rm(partial, { force: true }).catch(() => {});
    throw new CbactionsError(CredentialsErrorCode.Unwritable, `cannot write the build service's credentials file ${path}: ${(error as Error).message}`, { cause: error });
  }
}
