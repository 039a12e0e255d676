import { describe, expect, it } from 'vitest';
import { ConfigErrorCode, parseConfig } from '../../src/config/load.js';
import { runtimeProblems, type ConfigInput } from '../../src/config/schema.js';
import { runtimeConfig } from '../../src/infra/runtime-config.js';

const ROLE_ARN = 'arn:aws:iam::123456789012:role/jobs';

function config(overrides: Partial<ConfigInput> = {}): ConfigInput {
  return {
    github: { scope: { organization: 'octo' }, auth: { token: { env: 'GITHUB_TOKEN' } } },
    codebuild: { projectName: 'cbactions' },
    payloads: { key: { kms: { keyId: 'alias/cbactions' } }, store: { s3: { bucket: 'cbactions-payloads' } } },
    pools: [{ name: 'small', labels: ['cbactions'] }, { name: 'large', labels: ['cbactions-large'] }],
    ...overrides,
  };
}

function runtimeLines(input: ConfigInput): string[] {
  try {
    parseConfig(input, 'test config', { runtime: true });
  } catch (error) {
    expect(error).toMatchObject({ code: ConfigErrorCode.Invalid });
    return String((error as Error).message).split('\n').slice(1).map((line) => line.trim());
  }
  return [];
}

describe('role ids for payloads bound to the build role (runtime only)', () => {
  it('refuses an S3 store and KMS key without codebuild.buildRoleId, naming the field and the pools', () => {
    const lines = runtimeLines(config());
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^codebuild\.buildRoleId: required: pools "small", "large" run as the project's service role, and an S3 payload store and a KMS payload key bind each job to its build role's unique id/);
    expect(lines[0]).toContain('aws iam get-role --role-name NAME --query Role.RoleId');
  });

  it('refuses an S3 store alone, and a KMS key alone (with a local store): the entrypoint binds both to its identity', () => {
    const local = { local: { file: '/k' } };
    expect(runtimeLines(config({ payloads: { key: local, store: { s3: { bucket: 'cbactions-payloads' } } } }))[0]).toMatch(/^codebuild\.buildRoleId: .*an S3 payload store binds/);
    expect(runtimeLines(config({ payloads: { key: { kms: { keyId: 'k' } }, store: { local: { dir: '/p' } } } }))[0]).toMatch(/^codebuild\.buildRoleId: .*a KMS payload key binds/);
  });

  it('refuses a pool with its own service role but no roleId, even when codebuild.buildRoleId is set (that is another role)', () => {
    const lines = runtimeLines(
      config({
        codebuild: { projectName: 'cbactions', buildRoleId: 'AROAPROJECTROLE00001' },
        pools: [{ name: 'small', labels: ['a'] }, { name: 'own', labels: ['b'], build: { serviceRole: { arn: ROLE_ARN } } }],
      }),
    );
    expect(lines).toEqual([expect.stringMatching(new RegExp(`^pools\\[1\\]\\.build\\.serviceRole\\.roleId: pool "own" runs as ${ROLE_ARN} but has no roleId;`))]);
  });

  it('accepts role ids from codebuild.buildRoleId or each pool, and local sealing without any', () => {
    expect(runtimeLines(config({ codebuild: { projectName: 'cbactions', buildRoleId: 'AROAPROJECTROLE00001' } }))).toEqual([]);
    const withOwnRoles = config({ pools: [{ name: 'small', labels: ['a'], build: { serviceRole: { arn: ROLE_ARN, roleId: 'AROAPOOLROLE00000001' } } }] });
    expect(runtimeLines(withOwnRoles)).toEqual([]);
    expect(runtimeLines(config({ payloads: { key: { local: { file: '/k' } }, store: { local: { dir: '/p' } } } }))).toEqual([]);
  });

  it('is not required where the stack fills role ids in: deploy, init and local load without it', () => {
    expect(() => parseConfig(config(), 'test config')).not.toThrow();
    expect(runtimeProblems(parseConfig(config()))).toHaveLength(1);
  });

  it('holds for the config the stack delivers to the task (every pool gets its role and id)', () => {
    const user = parseConfig(config());
    const deployed = runtimeConfig(user, {
      region: 'us-east-1',
      payloadKeyArn: 'arn:aws:kms:us-east-1:123456789012:key/0b4f2b1e-0000-4000-8000-000000000000',
      payloadBucketName: 'cbactions-payloads-123',
      projectName: 'cbactions',
      buildRoles: new Map(user.pools.map((pool) => [pool.name, { arn: ROLE_ARN, roleId: 'AROAPROJECTROLE00001' }])),
      poolImages: new Map(),
    });
    expect(runtimeLines(deployed)).toEqual([]);
  });

  it('reports schema problems without tripping over them when the config is broken elsewhere', () => {
    const lines = runtimeLines({ ...config(), pools: [{ name: 'Bad Name', labels: [] }] } as ConfigInput);
    expect(lines.some((line) => line.startsWith('pools[0].name:'))).toBe(true);
  });
});
