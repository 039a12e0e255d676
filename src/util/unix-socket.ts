import { chmod, lstat, rm } from 'node:fs/promises';
import type { Server } from 'node:net';
import { CbactionsError } from './errors.js';

/** A socket file left by an earlier life is replaced; anything else at the path is refused. */
async function removeStaleSocket(path: string, errorCode: string): Promise<void> {
  try {
    const stats = await lstat(path);
    if (!stats.isSocket()) throw new CbactionsError(errorCode, `${path} exists and is not a socket; refusing to replace it`);
    await rm(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
}

/**
 * Listens on a Unix socket that only this user's processes (the listeners and what they
 * start) may use: a stale socket file is replaced, the socket gets mode 0600.
 * `errorCode` names the caller's error when the path holds something else.
 */
export async function listenOnPrivateSocket(server: Server, path: string, errorCode: string): Promise<void> {
  await removeStaleSocket(path, errorCode);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      resolve();
    });
  });
  await chmod(path, 0o600);
}
