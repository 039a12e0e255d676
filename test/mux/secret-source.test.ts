/** Secrets named by the config: file, environment variable, AWS Secrets Manager (moto). */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateSecretCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readSecret, SecretErrorCode, secretEnvNames } from '../../src/mux/secret-source.js';
import { isCbactionsError } from '../../src/util/errors.js';
import { startMoto, type Moto } from '../support/moto.js';

async function failure(promise: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await promise;
  } catch (error) {
    return { code: isCbactionsError(error) ? error.code : 'other', message: (error as Error).message };
  }
  throw new Error('expected a rejection');
}

describe('readSecret', () => {
  it('reads a file and an environment variable, trimmed', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'secret-'));
    writeFileSync(join(dir, 'token'), 'ghp_from_file\n');
    expect(await readSecret({ file: join(dir, 'token') }, 'github.auth.token', { env: {} })).toBe('ghp_from_file');
    expect(await readSecret({ env: 'MY_TOKEN' }, 'github.auth.token', { env: { MY_TOKEN: ' ghp_env ' } })).toBe('ghp_env');
  });

  it('names the field and the source when it cannot read the secret, never the value', async () => {
    const missingFile = await failure(readSecret({ file: '/nonexistent/key.pem' }, 'github.auth.app.privateKey', { env: {} }));
    expect(missingFile).toMatchObject({ code: SecretErrorCode.Unavailable });
    expect(missingFile.message).toContain('github.auth.app.privateKey.file');
    expect(missingFile.message).toContain('ENOENT');
    const missingEnv = await failure(readSecret({ env: 'NOT_SET' }, 'github.auth.token', { env: {} }));
    expect(missingEnv.message).toBe('github.auth.token.env: environment variable NOT_SET is not set');
    const empty = await failure(readSecret({ env: 'EMPTY' }, 'github.auth.token', { env: { EMPTY: '  ' } }));
    expect(empty).toMatchObject({ code: SecretErrorCode.Empty });
  });

  it('lists the environment variables that hold secrets (kept from the listeners)', () => {
    expect(secretEnvNames([{ env: 'GITHUB_TOKEN' }, { file: '/x' }, { secretsManager: 'y' }])).toEqual(['GITHUB_TOKEN']);
  });

  describe('from AWS Secrets Manager (moto)', () => {
    let moto: Moto;
    let client: SecretsManagerClient;
    beforeAll(async () => {
      moto = await startMoto();
      client = new SecretsManagerClient(moto.clientConfig());
      await client.send(new CreateSecretCommand({ Name: 'cbactions/pat', SecretString: 'ghp_from_sm' }));
      await client.send(new CreateSecretCommand({ Name: 'cbactions/app', SecretString: JSON.stringify({ pem: '-----BEGIN RSA PRIVATE KEY-----\nabc\n-----END RSA PRIVATE KEY-----', other: 1 }) }));
    });
    afterAll(async () => {
      client?.destroy();
      await moto?.stop();
    });

    it('reads a plain secret and a key of a JSON secret', async () => {
      const readers = { env: {}, secretsManager: () => client };
      expect(await readSecret({ secretsManager: 'cbactions/pat' }, 'github.auth.token', readers)).toBe('ghp_from_sm');
      expect(await readSecret({ secretsManager: 'cbactions/app', jsonKey: 'pem' }, 'github.auth.app.privateKey', readers)).toMatch(/^-----BEGIN RSA PRIVATE KEY-----/);
    });

    it('names the field, the secret and the AWS error', async () => {
      const readers = { env: {}, secretsManager: () => client };
      const missing = await failure(readSecret({ secretsManager: 'cbactions/none' }, 'github.auth.token', readers));
      expect(missing.message).toMatch(/^github\.auth\.token\.secretsManager: cannot read secret cbactions\/none: ResourceNotFoundException/);
      const badKey = await failure(readSecret({ secretsManager: 'cbactions/app', jsonKey: 'nope' }, 'github.auth.app.privateKey', readers));
      expect(badKey.message).toContain('github.auth.app.privateKey.jsonKey');
      const notJson = await failure(readSecret({ secretsManager: 'cbactions/pat', jsonKey: 'pem' }, 'github.auth.token', readers));
      expect(notJson.message).toContain('is not a JSON object');
      expect(notJson.message).not.toContain('ghp_from_sm');
    });

    it('uses the endpoint from AWS_ENDPOINT_URL_SECRETS_MANAGER like main does', async () => {
      const saved = { ...process.env };
      Object.assign(process.env, { AWS_ENDPOINT_URL_SECRETS_MANAGER: moto.endpoint, AWS_REGION: moto.region, AWS_ACCESS_KEY_ID: 'testing', AWS_SECRET_ACCESS_KEY: 'testing' });
      const fromEnv = new SecretsManagerClient({});
      try {
        expect(await readSecret({ secretsManager: 'cbactions/pat' }, 'github.auth.token', { env: {}, secretsManager: () => fromEnv })).toBe('ghp_from_sm');
      } finally {
        fromEnv.destroy();
        for (const key of ['AWS_ENDPOINT_URL_SECRETS_MANAGER', 'AWS_REGION', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY']) {
          if (saved[key] === undefined) delete process.env[key];
          else process.env[key] = saved[key];
        }
      }
    });
  });
});
