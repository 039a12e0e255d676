/** `cbactions create-local-key FILE`, run as the built binary. */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LocalKeyService, localKeyFingerprint } from '../../src/seal/local-key-service.js';
import { CBACTIONS_BIN } from '../support/runner-root.js';

// Under a permissive umask, so the 0600 is the command's doing, not the shell's.
function createLocalKey(file: string) {
  const result = spawnSync('sh', ['-c', 'umask 000; exec "$0" create-local-key "$1"', CBACTIONS_BIN, file], { encoding: 'utf8', timeout: 60_000 });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('cbactions create-local-key', () => {
  it('writes 32 random bytes, mode 0600, that the local key service accepts, and prints the key id but not the key', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'create-local-key-')), 'payload.key');
    const result = createLocalKey(path);
    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const key = readFileSync(path);
    expect(key.length).toBe(32);
    const keyId = localKeyFingerprint(key);
    expect(result.stdout).toBe(`created local payload key ${path} (mode 0600, key id ${keyId})\nuse it in the config as: payloads: { key: { local: { file: ${path} } } }\n`);
    expect(result.stdout).not.toContain(key.toString('hex'));
    expect(result.stdout).not.toContain(key.toString('base64'));
    expect((await LocalKeyService.fromFile(path)).keyId).toBe(keyId);
  });

  it('never replaces an existing key: exit 1, naming the file, the key unchanged', () => {
    const path = join(mkdtempSync(join(tmpdir(), 'create-local-key-')), 'payload.key');
    expect(createLocalKey(path).code).toBe(0);
    const before = readFileSync(path);
    const again = createLocalKey(path);
    expect(again.code).toBe(1);
    expect(again.stderr).toBe(`cbactions create-local-key: local key file ${path} already exists; refusing to replace a key (SEAL_KEY_FILE_EXISTS)\n`);
    expect(readFileSync(path).equals(before)).toBe(true);
  });

  it('names the file when it cannot be created', () => {
    const path = join(mkdtempSync(join(tmpdir(), 'create-local-key-')), 'no-such-dir', 'payload.key');
    const result = createLocalKey(path);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(`cbactions create-local-key: cannot create local key file ${path} (ENOENT) (SEAL_KEY_FILE_INVALID)\n`);
  });

  it('wants the file argument (usage error, exit 2)', () => {
    const result = spawnSync(CBACTIONS_BIN, ['create-local-key'], { encoding: 'utf8', timeout: 60_000 });
    expect(result.status).toBe(2);
    expect(result.stderr).toContain("missing required argument 'file'");
  });
});
