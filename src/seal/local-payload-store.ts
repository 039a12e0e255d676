import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { sleep } from '../util/backoff.js';
import { CbactionsError } from '../util/errors.js';
import { SealErrorCode } from './errors.js';
import { formatLeaseFile, parseLeaseFile } from './lease.js';
import type { JobLease, PayloadBinding, PayloadStore, TakeOptions } from './types.js';

export interface LocalPayloadStoreOptions {
  /** Directory holding payloads; created (mode 0700) on first write. */
  dir: string;
  /** How often `take` looks for a payload that has not arrived yet. */
  pollMs?: number;
}

/**
 * File name for a build: build ids are `project:uuid` (':' is not portable in names, and
 * an id must never become a path), so keep a readable, sanitized prefix plus a hash of
 * the exact id so two ids that sanitize alike never share a file.
 */
export function localObjectName(binding: PayloadBinding): string {
  if (binding.buildId.length === 0) {
    throw new CbactionsError(SealErrorCode.InvalidInput, 'payload binding has an empty buildId');
  }
  const readable = binding.buildId.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 100);
  const hash = createHash('sha256').update(binding.buildId, 'utf8').digest('hex').slice(0, 16);
  return `${readable}-${hash}`;
}

function errno(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | undefined)?.code;
}

/**
 * Payloads as files in one directory, for local mode and tests. Same contract as S3:
 * `take` waits for the payload, claims it by an atomic rename (only one taker wins),
 * deletes it, and leaves a tombstone so a second take says "already used".
 */
export class LocalPayloadStore implements PayloadStore {
  readonly dir: string;
  readonly #pollMs: number;

  constructor(options: LocalPayloadStoreOptions) {
    this.dir = options.dir;
    this.#pollMs = options.pollMs ?? 100;
  }

  describe(binding: PayloadBinding): string {
    return this.#path(binding, '.sealed');
  }

  async put(binding: PayloadBinding, sealed: Buffer, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    if (await this.#exists(this.#path(binding, '.used'))) {
      throw new CbactionsError(
        SealErrorCode.AlreadyUsed,
        `payload for build ${binding.buildId} was already taken from ${this.dir}; a build's payload is delivered once`,
      );
    }
    await this.#writeAtomically(this.#path(binding, '.sealed'), sealed);
  }

  async take(binding: PayloadBinding, options: TakeOptions = {}): Promise<Buffer> {
    const { waitMs = 0, signal } = options;
    const deadline = Date.now() + waitMs;
    const sealedPath = this.#path(binding, '.sealed');
    const usedPath = this.#path(binding, '.used');
    for (;;) {
      signal?.throwIfAborted();
      const claimed = this.#path(binding, `.taking-${randomBytes(6).toString('hex')}`);
      try {
        await rename(sealedPath, claimed);
      } catch (error) {
        if (errno(error) !== 'ENOENT') throw this.#ioError('claim', sealedPath, error);
        const used = await this.#readTombstone(usedPath);
        if (used !== undefined) {
          throw new CbactionsError(
            SealErrorCode.AlreadyUsed,
            `payload for build ${binding.buildId} was already taken${used}; a payload opens once`,
          );
        }
        const remaining = deadline - Date.now();
        if (remaining <= 0) {
          throw new CbactionsError(
            SealErrorCode.NotFound,
            `no payload for build ${binding.buildId} at ${sealedPath} after waiting ${waitMs} ms: it was never uploaded, or deleted after a failed start`,
          );
        }
        await sleep(Math.min(this.#pollMs, remaining), signal);
        continue;
      }
      // Tombstone before reading, so a racing second take fails as "already used" at once.
      try {
        await this.#writeAtomically(usedPath, Buffer.from(`${new Date().toISOString()}\n`, 'utf8'));
        return await readFile(claimed);
      } catch (error) {
        throw error instanceof CbactionsError ? error : this.#ioError('read', claimed, error);
      } finally {
        await rm(claimed, { force: true });
      }
    }
  }

  async isPending(binding: PayloadBinding, signal?: AbortSignal): Promise<boolean> {
    signal?.throwIfAborted();
    return this.#exists(this.#path(binding, '.sealed'));
  }

  async delete(binding: PayloadBinding, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    await this.#remove(this.#path(binding, '.sealed'));
  }

  async requestCancel(binding: PayloadBinding, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    await this.#writeAtomically(this.#path(binding, '.cancel'), Buffer.from(`${new Date().toISOString()}\n`, 'utf8'));
  }

  async isCancelRequested(binding: PayloadBinding, signal?: AbortSignal): Promise<boolean> {
    signal?.throwIfAborted();
    return this.#exists(this.#path(binding, '.cancel'));
  }

  async clearCancel(binding: PayloadBinding, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    await this.#remove(this.#path(binding, '.cancel'));
  }

  async renewLease(binding: PayloadBinding, lease: JobLease, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    await this.#writeAtomically(this.#path(binding, '.lease'), Buffer.from(formatLeaseFile(lease), 'utf8'));
  }

  async readLease(binding: PayloadBinding, signal?: AbortSignal): Promise<JobLease | undefined> {
    signal?.throwIfAborted();
    const path = this.#path(binding, '.lease');
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (error) {
      if (errno(error) === 'ENOENT') return undefined;
      throw this.#ioError('read', path, error);
    }
    return parseLeaseFile(text, path);
  }

  async releaseLease(binding: PayloadBinding, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    await this.#remove(this.#path(binding, '.lease'));
  }

  #path(binding: PayloadBinding, suffix: string): string {
    return join(this.dir, `${localObjectName(binding)}${suffix}`);
  }

  async #exists(path: string): Promise<boolean> {
    try {
      await stat(path);
      return true;
    } catch (error) {
      if (errno(error) === 'ENOENT') return false;
      throw this.#ioError('check', path, error);
    }
  }

  /** `" at <time>"` from a tombstone, `""` if it has no readable time, undefined if absent. */
  async #readTombstone(path: string): Promise<string | undefined> {
    try {
      const text = (await readFile(path, 'utf8')).trim();
      return /^\d{4}-\d\d-\d\dT[\d:.]+Z$/.test(text) ? ` at ${text}` : '';
    } catch (error) {
      if (errno(error) === 'ENOENT') return undefined;
      throw this.#ioError('read', path, error);
    }
  }

  async #remove(path: string): Promise<void> {
    try {
      await rm(path, { force: true });
    } catch (error) {
      throw this.#ioError('delete', path, error);
    }
  }

  // Temp file in the same directory, fsync, rename: readers see the whole file or none.
  async #writeAtomically(path: string, bytes: Buffer): Promise<void> {
    const temp = join(this.dir, `.tmp-${randomBytes(8).toString('hex')}`);
    try {
      await mkdir(this.dir, { recursive: true, mode: 0o700 });
      const handle = await open(temp, 'wx', 0o600);
      try {
        await handle.write(bytes, 0, bytes.length, 0);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(temp, path);
    } catch (error) {
      await rm(temp, { force: true }).catch(() => undefined);
      throw this.#ioError('write', path, error);
    }
  }

  #ioError(action: string, path: string, error: unknown): CbactionsError {
    return new CbactionsError(SealErrorCode.StoreIo, `cannot ${action} ${path} (${errno(error) ?? String(error)})`, { cause: error });
  }
}
