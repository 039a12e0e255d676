import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { open } from 'node:fs/promises';
import { CbactionsError } from '../util/errors.js';
import { canonicalContext } from './context.js';
import { SealErrorCode } from './errors.js';
import type { DataKey, EncryptionContext, KeyService } from './types.js';

export const LOCAL_KEY_BYTES = 32;

// Wrapped data key: version byte | 12-byte IV | 32-byte encrypted key | 16-byte GCM tag.
const WRAP_VERSION = 1;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const WRAPPED_BYTES = 1 + IV_BYTES + LOCAL_KEY_BYTES + TAG_BYTES;

/**
 * Key id of a local master key: a domain-separated SHA-256 of it. Recorded in each
 * envelope so "sealed with another key file" is told apart from tampering; a hash of a
 * 256-bit random key reveals nothing usable about it.
 */
export function localKeyFingerprint(masterKey: Buffer): string {
  const digest = createHash('sha256').update('cbactions local master key\0').update(masterKey).digest('hex');
  return `local:${digest.slice(0, 32)}`;
}

/**
 * Envelope keys without KMS, for local mode and tests: a 32-byte master key (from a file
 * only its owner can read) wraps each data key with AES-256-GCM, the canonical
 * encryption context as AAD, so a key wrapped for build A does not unwrap for build B.
 */
export class LocalKeyService implements KeyService {
  readonly provider = 'local';
  readonly keyId: string;
  readonly #masterKey: Buffer;

  constructor(masterKey: Buffer) {
    if (masterKey.length !== LOCAL_KEY_BYTES) {
      throw new CbactionsError(SealErrorCode.KeyFileInvalid, `a local master key is exactly ${LOCAL_KEY_BYTES} bytes, not ${masterKey.length}`);
    }
    this.#masterKey = Buffer.from(masterKey);
    this.keyId = localKeyFingerprint(this.#masterKey);
  }

  /** Reads a key file made by `createLocalKeyFile` (`cbactions create-local-key`). */
  static async fromFile(path: string): Promise<LocalKeyService> {
    const key = await readLocalKeyFile(path);
    try {
      return new LocalKeyService(key);
    } finally {
      key.fill(0);
    }
  }

  async generateDataKey(context: EncryptionContext, signal?: AbortSignal): Promise<DataKey> {
    signal?.throwIfAborted();
    const plaintext = randomBytes(LOCAL_KEY_BYTES);
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.#masterKey, iv, { authTagLength: TAG_BYTES });
    cipher.setAAD(canonicalContext(context));
    const encrypted = Buffer.concat([Buffer.from([WRAP_VERSION]), iv, cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
    return { plaintext, encrypted, keyId: this.keyId };
  }

  async decryptDataKey(encrypted: Buffer, keyId: string, context: EncryptionContext, signal?: AbortSignal): Promise<Buffer> {
    signal?.throwIfAborted();
    if (keyId !== this.keyId) {
      throw new CbactionsError(
        SealErrorCode.WrongKey,
        `payload was sealed with local key ${keyId}, but this key file is ${this.keyId}: use the key file the sender used`,
      );
    }
    const plaintext = this.#unwrap(encrypted, context);
    if (plaintext === undefined) {
      throw new CbactionsError(
        SealErrorCode.WrongKey,
        `the payload's data key does not unwrap with local key ${this.keyId} under this encryption context (sealed for another build, or altered)`,
      );
    }
    return plaintext;
  }

  async probeContext(encrypted: Buffer, keyId: string, context: EncryptionContext): Promise<boolean> {
    if (keyId !== this.keyId) return false;
    const plaintext = this.#unwrap(encrypted, context);
    plaintext?.fill(0);
    return plaintext !== undefined;
  }

  #unwrap(encrypted: Buffer, context: EncryptionContext): Buffer | undefined {
    if (encrypted.length !== WRAPPED_BYTES || encrypted[0] !== WRAP_VERSION) return undefined;
    const iv = encrypted.subarray(1, 1 + IV_BYTES);
    const body = encrypted.subarray(1 + IV_BYTES, 1 + IV_BYTES + LOCAL_KEY_BYTES);
    const tag = encrypted.subarray(1 + IV_BYTES + LOCAL_KEY_BYTES);
    const decipher = createDecipheriv('aes-256-gcm', this.#masterKey, iv, { authTagLength: TAG_BYTES });
    decipher.setAAD(canonicalContext(context));
    decipher.setAuthTag(tag);
    const plaintext = decipher.update(body);
    try {
      decipher.final();
      return plaintext;
    } catch {
      plaintext.fill(0);
      return undefined;
    }
  }
}

/**
 * Reads a local master key, refusing one its group or other users can read or replace.
 * Checks the opened file (fstat), so the file checked is the file read; a symbolic link
 * is followed and its target is what must be a private regular file.
 */
export async function readLocalKeyFile(path: string): Promise<Buffer> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'error';
    throw new CbactionsError(SealErrorCode.KeyFileInvalid, `cannot open local key file ${path} (${code})`, { cause: error });
  }
  try {
    const stats = await handle.stat();
    if (!stats.isFile()) {
      throw new CbactionsError(SealErrorCode.KeyFileInvalid, `local key file ${path} is not a regular file`);
    }
    // Owner only, as ssh demands of a private key: a group bit lets every member of the
    // group read (or replace) the key that opens every payload. 0400 is fine too.
    const mode = stats.mode & 0o777;
    if ((mode & 0o077) !== 0) {
      throw new CbactionsError(
        SealErrorCode.KeyFileInsecure,
        `local key file ${path} is accessible to its group or other users (mode ${mode.toString(8).padStart(4, '0')}); ` +
          `only its owner may read it: run \`chmod 600 ${path}\``,
      );
    }
    if (stats.size !== LOCAL_KEY_BYTES) {
      throw new CbactionsError(
        SealErrorCode.KeyFileInvalid,
        `local key file ${path} holds ${stats.size} bytes; a local key is exactly ${LOCAL_KEY_BYTES} random bytes ` +
          `(create a new one with \`cbactions create-local-key FILE\`)`,
      );
    }
    const key = Buffer.alloc(LOCAL_KEY_BYTES);
    const { bytesRead } = await handle.read(key, 0, LOCAL_KEY_BYTES, 0);
    if (bytesRead !== LOCAL_KEY_BYTES) {
      key.fill(0);
      throw new CbactionsError(SealErrorCode.KeyFileInvalid, `local key file ${path} changed while it was read`);
    }
    return key;
  } finally {
    await handle.close();
  }
}

/**
 * Creates a new random local master key file, mode 0600. Never overwrites: payloads
 * sealed under an existing key would become unreadable. Returns the new key's id.
 */
export async function createLocalKeyFile(path: string): Promise<{ keyId: string }> {
  const key = randomBytes(LOCAL_KEY_BYTES);
  let handle;
  try {
    handle = await open(path, 'wx', 0o600);
  } catch (error) {
    key.fill(0);
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') {
      throw new CbactionsError(SealErrorCode.KeyFileExists, `local key file ${path} already exists; refusing to replace a key`, { cause: error });
    }
    throw new CbactionsError(SealErrorCode.KeyFileInvalid, `cannot create local key file ${path} (${code ?? 'error'})`, { cause: error });
  }
  try {
    // open()'s mode applies only to a new file and passes through the umask: state it outright.
    await handle.chmod(0o600);
    await handle.write(key, 0, LOCAL_KEY_BYTES, 0);
    await handle.sync();
    return { keyId: localKeyFingerprint(key) };
  } finally {
    key.fill(0);
    await handle.close();
  }
}
