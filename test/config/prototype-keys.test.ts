import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigErrorCode, loadConfigFile } from '../../src/config/load.js';

// zod 4 drops a `__proto__` key from a record without a word; the loader must refuse it,
// or `deploy.tags.__proto__` (say) would vanish between the file and the stack.
describe('a "__proto__" key in a config file', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cbactions-proto-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const base = [
    'github:',
    '  scope: { organization: octo }',
    '  auth: { token: { env: GITHUB_TOKEN } }',
    'codebuild: { projectName: cbactions }',
    'payloads:',
    '  key: { local: { file: /k } }',
    '  store: { local: { dir: /p } }',
    'pools:',
    '  - name: small',
    '    labels: [cbactions]',
  ];

  it('loads the same file without it', async () => {
    const path = join(dir, 'plain.yml');
    await writeFile(path, [...base, 'deploy:', '  tags: { team: ci }', ''].join('\n'));
    await expect(loadConfigFile(path)).resolves.toMatchObject({ deploy: { tags: { team: 'ci' } } });
  });

  it('is refused, naming the field, instead of being dropped', async () => {
    const path = join(dir, 'proto.yml');
    await writeFile(path, [...base, 'deploy:', '  tags: { team: ci, __proto__: evil }', ''].join('\n'));
    const failure = await loadConfigFile(path).catch((error: unknown) => error);
    expect(failure).toMatchObject({ code: ConfigErrorCode.Invalid });
    expect(String((failure as Error).message)).toContain('deploy.tags.__proto__: the key "__proto__" is not allowed');
  });
});
