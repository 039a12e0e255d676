import { mkdtempSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigErrorCode, loadConfigFile, MAX_CONFIG_FILE_BYTES } from '../../src/config/load.js';

const VALID = [
  'github: { scope: { organization: octo }, auth: { token: { env: GITHUB_TOKEN } } }',
  'codebuild: { projectName: cbactions }',
  'payloads: { key: { local: { file: /k } }, store: { local: { dir: /p } } }',
  'pools: [ { name: default, labels: [cbactions] } ]',
  '',
].join('\n');

function fileOfSize(bytes: number): string {
  const path = join(mkdtempSync(join(tmpdir(), 'config-limits-')), 'cbactions.yml');
  const padding = '#'.repeat(bytes - VALID.length - 1);
  writeFileSync(path, `${VALID}${padding}\n`);
  return path;
}

describe('config file size limit', () => {
  it('loads a file of exactly the limit, and refuses one byte more, naming the file, its size and the limit', async () => {
    await expect(loadConfigFile(fileOfSize(MAX_CONFIG_FILE_BYTES))).resolves.toMatchObject({ pools: [{ name: 'default' }] });
    const path = fileOfSize(MAX_CONFIG_FILE_BYTES + 1);
    await expect(loadConfigFile(path)).rejects.toMatchObject({
      code: ConfigErrorCode.TooLarge,
      message: `config file ${path} is ${MAX_CONFIG_FILE_BYTES + 1} bytes; the limit is ${MAX_CONFIG_FILE_BYTES} bytes (1024 KiB): is it the right file?`,
    });
  });

  it('refuses a 40 MB file from its size, without reading it', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'config-limits-')), 'huge.yml');
    writeFileSync(path, VALID);
    truncateSync(path, 40 * 1024 * 1024);
    await expect(loadConfigFile(path)).rejects.toMatchObject({ code: ConfigErrorCode.TooLarge, message: expect.stringContaining(`is ${40 * 1024 * 1024} bytes`) });
  });

  it('stops reading an endless stream one byte past the limit', async () => {
    // /dev/zero has no size to check first; an unbounded read would never end (or run out of memory).
    await expect(loadConfigFile('/dev/zero')).rejects.toMatchObject({
      code: ConfigErrorCode.TooLarge,
      message: `config file /dev/zero is more than ${MAX_CONFIG_FILE_BYTES} bytes; the limit is ${MAX_CONFIG_FILE_BYTES} bytes (1024 KiB): is it the right file?`,
    });
  });

  it('refuses a YAML alias bomb as a syntax error instead of expanding it', async () => {
    const lines = ['a0: &a0 [x, x, x, x, x, x, x, x, x, x]'];
    for (let level = 1; level < 9; level += 1) lines.push(`a${level}: &a${level} [${Array.from({ length: 10 }, () => `*a${level - 1}`).join(', ')}]`);
    const path = join(mkdtempSync(join(tmpdir(), 'config-limits-')), 'bomb.yml');
    writeFileSync(path, `${VALID}${lines.join('\n')}\n`);
    await expect(loadConfigFile(path)).rejects.toMatchObject({ code: ConfigErrorCode.Syntax, message: expect.stringContaining(`config file ${path} is not valid YAML/JSON`) });
  });

  it('still accepts a few aliases, e.g. build settings shared by two pools', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'config-limits-')), 'aliases.yml');
    writeFileSync(path, VALID.replace(/pools: .*\n/, 'pools:\n  - { name: a, labels: [a], build: &big { computeType: BUILD_GENERAL1_LARGE } }\n  - { name: b, labels: [b], build: *big }\n'));
    const config = await loadConfigFile(path);
    expect(config.pools.map((pool) => pool.build.computeType)).toEqual(['BUILD_GENERAL1_LARGE', 'BUILD_GENERAL1_LARGE']);
  });

  it('names the file when it cannot be opened', async () => {
    const path = join(tmpdir(), 'no-such-dir-cbactions', 'cbactions.yml');
    await expect(loadConfigFile(path)).rejects.toMatchObject({ code: ConfigErrorCode.Unreadable, message: expect.stringContaining(`cannot read config file ${path}`) });
  });
});
