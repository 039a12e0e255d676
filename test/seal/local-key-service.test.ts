import { mkdtemp, readFile, rm, stat, writeFile, chmod, mkdir, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SealErrorCode } from '../../src/seal/errors.js';
import { encryptionContextFor } from '../../src/seal/context.js';
import { LocalKeyService, createLocalKeyFile, localKeyFingerprint } from '../../src/seal/local-key-service.js';
import { isCbactionsError } from '../../src/util/errors.js';
import { BUILD_A, BUILD_B, rejection } from './fixtures.js';

let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cbactions-seal-key-'));
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('createLocalKeyFile', () => {
  it('writes 32 random bytes with mode 0600 and returns the key id', async () => {
    const path = join(dir, 'payload.key');
    const { keyId } = await createLocalKeyFile(path);
    const stats = await stat(path);
    expect(stats.mode & 0o777).toBe(0o600);
    const bytes = await readFile(path);
    expect(bytes.length).toBe(32);
    expect(keyId).toBe(localKeyFingerprint(bytes));
    expect(keyId).toMatch(/^local:[0-9a-f]{32}$/);
    expect((await LocalKeyService.fromFile(path)).keyId).toBe(keyId);
  });

  it('never overwrites an existing key', async () => {
    const path = join(dir, 'payload.key');
    await createLocalKeyFile(path);
    const before = await readFile(path);
    const error = await rejection(() => createLocalKeyFile(path));
    expect(isCbactionsError(error, SealErrorCode.KeyFileExists)).toBe(true);
    expect((await readFile(path)).equals(before)).toBe(true);
  });
});

describe('LocalKeyService.fromFile', () => {
  it('refuses a key file other users can read, naming the file and the fix', async () => {
    const path = join(dir, 'payload.key');
    await createLocalKeyFile(path);
    await chmod(path, 0o644);
    const error = await rejection(() => LocalKeyService.fromFile(path));
    expect(isCbactionsError(error, SealErrorCode.KeyFileInsecure)).toBe(true);
    expect((error as Error).message).toContain(path);
    expect((error as Error).message).toContain('0644');
    expect((error as Error).message).toContain('chmod 600');
  });

  it('refuses a key file its group can read or write, and one behind a symlink, by the mode of the target', async () => {
    const path = join(dir, 'payload.key');
    await createLocalKeyFile(path);
    for (const mode of [0o640, 0o620, 0o660, 0o610, 0o604, 0o602]) {
      await chmod(path, mode);
      const error = await rejection(() => LocalKeyService.fromFile(path));
      expect(isCbactionsError(error, SealErrorCode.KeyFileInsecure)).toBe(true);
      expect((error as Error).message).toContain(path);
      expect((error as Error).message).toContain(`mode ${mode.toString(8).padStart(4, '0')}`);
      expect((error as Error).message).toContain(`chmod 600 ${path}`);
    }
    const link = join(dir, 'linked.key');
    await symlink(path, link);
    await chmod(path, 0o640);
    expect(isCbactionsError(await rejection(() => LocalKeyService.fromFile(link)), SealErrorCode.KeyFileInsecure)).toBe(true);
    for (const mode of [0o600, 0o400]) {
      await chmod(path, mode);
      await expect(LocalKeyService.fromFile(path)).resolves.toBeInstanceOf(LocalKeyService);
      await expect(LocalKeyService.fromFile(link)).resolves.toBeInstanceOf(LocalKeyService);
    }
  });

  it('refuses a key of the wrong size', async () => {
    for (const size of [0, 31, 33, 64]) {
      const path = join(dir, `key-${size}`);
      await writeFile(path, randomBytes(size), { mode: 0o600 });
      const error = await rejection(() => LocalKeyService.fromFile(path));
      expect(isCbactionsError(error, SealErrorCode.KeyFileInvalid)).toBe(true);
      expect((error as Error).message).toContain(`${size} bytes`);
    }
  });

  it('refuses a missing file or a directory', async () => {
    const missing = await rejection(() => LocalKeyService.fromFile(join(dir, 'nope')));
    expect(isCbactionsError(missing, SealErrorCode.KeyFileInvalid)).toBe(true);
    expect((missing as Error).message).toContain('ENOENT');
    const sub = join(dir, 'sub');
    await mkdir(sub, { mode: 0o700 });
    const directory = await rejection(() => LocalKeyService.fromFile(sub));
    expect(isCbactionsError(directory, SealErrorCode.KeyFileInvalid)).toBe(true);
  });
});

describe('LocalKeyService', () => {
  const keys = new LocalKeyService(randomBytes(32));

  it('unwraps a data key only under the context it was wrapped for', async () => {
    const contextA = encryptionContextFor({ buildId: BUILD_A });
    const dataKey = await keys.generateDataKey(contextA);
    expect(dataKey.keyId).toBe(keys.keyId);
    expect(dataKey.plaintext.length).toBe(32);
    const back = await keys.decryptDataKey(dataKey.encrypted, dataKey.keyId, contextA);
    expect(back.equals(dataKey.plaintext)).toBe(true);

    const error = await rejection(() => keys.decryptDataKey(dataKey.encrypted, dataKey.keyId, encryptionContextFor({ buildId: BUILD_B })));
    expect(isCbactionsError(error, SealErrorCode.WrongKey)).toBe(true);
    expect(await keys.probeContext(dataKey.encrypted, dataKey.keyId, contextA)).toBe(true);
    expect(await keys.probeContext(dataKey.encrypted, dataKey.keyId, encryptionContextFor({ buildId: BUILD_B }))).toBe(false);
  });

  it('refuses a master key that is not 32 bytes', () => {
    expect(() => new LocalKeyService(randomBytes(16))).toThrow(expect.objectContaining({ code: SealErrorCode.KeyFileInvalid }));
  });
});
