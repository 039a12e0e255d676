/**
 * Reads a secret named by the config (`SecretSource`): a file, an environment variable or
 * AWS Secrets Manager. The environment and the Secrets Manager client are parameters, so
 * only `main` touches the process environment and builds SDK clients.
 */
import { readFile } from 'node:fs/promises';
import { GetSecretValueCommand, type SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { SecretSource } from '../config/schema.js';
import { awsErrorMessage } from '../util/aws-errors.js';
import { CbactionsError } from '../util/errors.js';

export const SecretErrorCode = {
  Unavailable: 'SECRET_UNAVAILABLE',
  Empty: 'SECRET_EMPTY',
} as const;

export interface SecretReaders {
  env: NodeJS.ProcessEnv;
  /** Built lazily by main: only configs that name a Secrets Manager secret need one. */
  secretsManager?: () => SecretsManagerClient;
}

/** `field` is the config path of the source, so every error names it. */
export async function readSecret(source: SecretSource, field: string, readers: SecretReaders): Promise<string> {
  let value: string;
  if ('file' in source) {
    try {
      value = await readFile(source.file, 'utf8');
    } catch (error) {
      throw new CbactionsError(SecretErrorCode.Unavailable, `${field}.file: cannot read ${source.file}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`, { cause: error });
    }
  } else if ('env' in source) {
    const fromEnv = readers.env[source.env];
    if (fromEnv === undefined) throw new CbactionsError(SecretErrorCode.Unavailable, `${field}.env: environment variable ${source.env} is not set`);
    value = fromEnv;
  } else {
    value = await readSecretsManager(source.secretsManager, source.jsonKey, field, readers);
  }
  value = value.trim();
  if (value === '') throw new CbactionsError(SecretErrorCode.Empty, `${field}: the secret is empty`);
  return value;
}

async function readSecretsManager(secretId: string, jsonKey: string | undefined, field: string, readers: SecretReaders): Promise<string> {
  if (!readers.secretsManager) throw new CbactionsError(SecretErrorCode.Unavailable, `${field}.secretsManager: no Secrets Manager client is available`);
  let secretString: string | undefined;
  try {
    const output = await readers.secretsManager().send(new GetSecretValueCommand({ SecretId: secretId }));
    secretString = output.SecretString ?? (output.SecretBinary ? Buffer.from(output.SecretBinary).toString('utf8') : undefined);
  } catch (error) {
    throw new CbactionsError(SecretErrorCode.Unavailable, `${field}.secretsManager: cannot read secret ${secretId}: ${awsErrorMessage(error)}`, { cause: error });
  }
  if (secretString === undefined) throw new CbactionsError(SecretErrorCode.Empty, `${field}.secretsManager: secret ${secretId} has no value`);
  if (jsonKey === undefined) return secretString;
  let object: unknown;
  try {
    object = JSON.parse(secretString);
  } catch {
    throw new CbactionsError(SecretErrorCode.Unavailable, `${field}.jsonKey: secret ${secretId} is not a JSON object, so key "${jsonKey}" cannot be read`);
  }
  const value = typeof object === 'object' && object !== null ? (object as Record<string, unknown>)[jsonKey] : undefined;
  if (typeof value !== 'string') throw new CbactionsError(SecretErrorCode.Unavailable, `${field}.jsonKey: secret ${secretId} has no string key "${jsonKey}"`);
  return value;
}

/** Names of environment variables the config reads secrets from (kept out of the listeners' environment). */
export function secretEnvNames(sources: readonly SecretSource[]): string[] {
  return sources.flatMap((source) => ('env' in source ? [source.env] : []));
}
