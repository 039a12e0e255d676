import { DecryptCommand, GenerateDataKeyCommand, type KMSClient } from '@aws-sdk/client-kms';
import { CbactionsError } from '../util/errors.js';
import { awsErrorName, throwIfAborted, wrapAwsError } from '../util/aws-errors.js';
import { SealErrorCode } from './errors.js';
import type { DataKey, EncryptionContext, KeyService } from './types.js';

export interface KmsKeyServiceOptions {
  client: KMSClient;
  /** Key id, key ARN, alias name (`alias/…`) or alias ARN. */
  keyId: string;
}

/** A view on the SDK's bytes (not a copy), so zeroing it zeroes the only plaintext copy we hold. */
function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

const KEY_ARN = /^arn:aws[a-z-]*:kms:([a-z0-9-]+):(\d{12}):key\/([A-Za-z0-9-]+)$/;
const KEY_UUID = /^(mrk-)?[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$|^mrk-[0-9a-f]{32}$/;

/**
 * Whether two key references name the same KMS key, when that is decidable without a
 * call (key ARNs and key ids); undefined for aliases, which only KMS can resolve.
 * Lets "another master key" be SEAL_WRONG_KEY everywhere: KMS itself answers
 * IncorrectKeyException, and some emulators AccessDenied.
 */
export function sameKmsKey(configured: string, sealedWith: string): boolean | undefined {
  const sealed = KEY_ARN.exec(sealedWith);
  if (sealed === null) return undefined;
  const arn = KEY_ARN.exec(configured);
  if (arn !== null) return configured === sealedWith;
  if (KEY_UUID.test(configured)) return configured === sealed[3];
  return undefined;
}

/**
 * Data keys from AWS KMS, bound to the build by the encryption context. Decrypt always
 * names the configured key: KMS would otherwise decrypt under whichever key the
 * ciphertext names, as long as the caller may use it.
 */
export class KmsKeyService implements KeyService {
  readonly provider = 'kms';
  readonly keyId: string;
  readonly #client: KMSClient;

  constructor(options: KmsKeyServiceOptions) {
    this.#client = options.client;
    this.keyId = options.keyId;
  }

  async generateDataKey(context: EncryptionContext, signal?: AbortSignal): Promise<DataKey> {
    let output;
    try {
      output = await this.#client.send(
        new GenerateDataKeyCommand({ KeyId: this.keyId, KeySpec: 'AES_256', EncryptionContext: { ...context } }),
        { abortSignal: signal },
      );
    } catch (error) {
      throw this.#wrap('GenerateDataKey', error, signal);
    }
    if (output.Plaintext === undefined || output.CiphertextBlob === undefined || output.KeyId === undefined) {
      if (output.Plaintext !== undefined) asBuffer(output.Plaintext).fill(0);
      throw new CbactionsError(SealErrorCode.KmsError, `KMS GenerateDataKey for key ${this.keyId} returned no key material`);
    }
    return { plaintext: asBuffer(output.Plaintext), encrypted: Buffer.from(output.CiphertextBlob), keyId: output.KeyId };
  }

  async decryptDataKey(encrypted: Buffer, keyId: string, context: EncryptionContext, signal?: AbortSignal): Promise<Buffer> {
    if (sameKmsKey(this.keyId, keyId) === false) {
      throw new CbactionsError(SealErrorCode.WrongKey, `payload was sealed with KMS key ${keyId}, but this process opens payloads with KMS key ${this.keyId}`);
    }
    let output;
    try {
      output = await this.#client.send(
        new DecryptCommand({ KeyId: this.keyId, CiphertextBlob: encrypted, EncryptionContext: { ...context } }),
        { abortSignal: signal },
      );
    } catch (error) {
      throw this.#wrap('Decrypt', error, signal, keyId);
    }
    if (output.Plaintext === undefined) {
      throw new CbactionsError(SealErrorCode.KmsError, `KMS Decrypt with key ${this.keyId} returned no plaintext`);
    }
    return asBuffer(output.Plaintext);
  }

  #wrap(operation: string, error: unknown, signal: AbortSignal | undefined, sealedWith?: string): unknown {
    throwIfAborted(signal);
    const name = awsErrorName(error);
    const which = sealedWith === undefined || sealedWith === this.keyId ? `key ${this.keyId}` : `key ${this.keyId} (payload names ${sealedWith})`;
    switch (name) {
      case 'InvalidCiphertextException':
        // KMS says the same for a different key and for a context that does not match.
        return wrapAwsError(
          SealErrorCode.WrongKey,
          `KMS ${operation} refused the payload's data key (InvalidCiphertextException): it was sealed under another key or for another build's encryption context (${which})`,
          error,
        );
      case 'IncorrectKeyException':
        return wrapAwsError(SealErrorCode.WrongKey, `KMS ${operation}: the payload's data key was not encrypted under ${which} (IncorrectKeyException)`, error);
      case 'AccessDeniedException':
        return wrapAwsError(
          SealErrorCode.KmsAccessDenied,
          `KMS ${operation} on ${which} was denied (AccessDeniedException): check the key policy and this role's kms:${operation} permission and its encryption-context conditions`,
          error,
        );
      case 'NotFoundException':
        return wrapAwsError(SealErrorCode.KmsKeyNotFound, `KMS ${operation}: ${which} does not exist in this account and region (NotFoundException)`, error);
      case 'DisabledException':
      case 'KMSInvalidStateException':
      case 'KeyUnavailableException':
        return wrapAwsError(SealErrorCode.KmsKeyUnusable, `KMS ${operation}: ${which} can't be used now (${name})`, error);
      default:
        return wrapAwsError(SealErrorCode.KmsError, `KMS ${operation} on ${which} failed (${name})`, error);
    }
  }
}
