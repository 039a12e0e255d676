/**
 * The example configs in examples/ load with the real loader, stay complete (every field of
 * every section appears, set or in a comment), and are linked from the README.
 */
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { z } from 'zod';
import { loadConfigFile, parseConfig } from '../../src/config/load.js';
import { AlarmsSchema, DeploySchema, NetworkSchema } from '../../src/config/deploy-schema.js';
import { BuildSettingsSchema, CodeBuildSchema, GitHubSchema, MuxSchema, PoolFieldsSchema, ServiceRoleSchema } from '../../src/config/schema.js';
import { PolicyMatchSchema, PolicyRuleSchema, PolicySchema } from '../../src/config/policy-schema.js';
import { runtimeConfig } from '../../src/infra/runtime-config.js';
import { synthesizeConfig } from '../../src/infra/synth.js';
import { PROJECT_ROOT } from '../support/runner-root.js';

const EXAMPLES = join(PROJECT_ROOT, 'examples');
const AWS_EXAMPLE = join(EXAMPLES, 'cbactions.yml');
const LOCAL_EXAMPLE = join(EXAMPLES, 'cbactions-local.yml');

describe('example configs', () => {
  it('there are the AWS and the local one, and every example loads', async () => {
    const files = readdirSync(EXAMPLES).filter((name) => name.endsWith('.yml'));
    expect(files.sort()).toEqual(['cbactions-local.yml', 'cbactions.yml']);
    for (const name of files) await expect(loadConfigFile(join(EXAMPLES, name)), name).resolves.toMatchObject({ pools: expect.any(Array) });
  });

  it('the AWS example names every field of every section', () => {
    const text = readFileSync(AWS_EXAMPLE, 'utf8');
    const sections: [string, z.ZodObject][] = [
      ['github', GitHubSchema],
      ['codebuild', CodeBuildSchema],
      ['pools[]', PoolFieldsSchema],
      ['pools[].build', BuildSettingsSchema],
      ['pools[].build.serviceRole', ServiceRoleSchema],
      ['mux', MuxSchema],
      ['policy', PolicySchema],
      ['policy.rules[]', PolicyRuleSchema],
      ['policy.rules[].match', PolicyMatchSchema],
      ['deploy', DeploySchema],
      ['deploy.network', NetworkSchema],
      ['deploy.alarms', AlarmsSchema],
    ];
    const missing = sections.flatMap(([section, schema]) =>
      Object.keys(schema.shape)
        .filter((field) => !new RegExp(`\\b${field}:`).test(text))
        .map((field) => `${section}.${field}`),
    );
    expect(missing).toEqual([]);
    for (const field of ['installationId', 'privateKey', 'token', 'secretsManager', 'jsonKey', 'file', 'keyId', 'bucket', 'prefix', 'listener', 'build', 'managedPolicyArns', 'statements', 'effect', 'actions', 'resources']) {
      expect(text, field).toMatch(new RegExp(`\\b${field}\\b`));
    }
  });

  it('the AWS example runs once deployed: the config the stack delivers passes the runtime checks', async () => {
    const config = await loadConfigFile(AWS_EXAMPLE);
    const deployed = runtimeConfig(config, {
      region: 'us-east-1',
      payloadKeyArn: 'arn:aws:kms:us-east-1:123456789012:key/0b4f2b1e-0000-4000-8000-000000000000',
      payloadBucketName: 'cbactions-payloads-123',
      projectName: 'cbactions',
      buildRoles: new Map(config.pools.map((pool) => [pool.name, { arn: 'arn:aws:iam::123456789012:role/builds', roleId: 'AROAEXAMPLEROLEID01' }])),
      poolImages: new Map(),
    });
    expect(() => parseConfig(deployed, 'deployed example', { runtime: true })).not.toThrow();
    // As its comment says: run directly with S3/KMS payloads, it would need codebuild.buildRoleId.
    await expect(loadConfigFile(AWS_EXAMPLE, { runtime: true })).rejects.toThrow(/codebuild\.buildRoleId: required/);
  });

  it('the AWS example synthesizes offline as `cbactions deploy --dry-run` does, without warnings (cdk-nag included)', async () => {
    const result = synthesizeConfig(await loadConfigFile(AWS_EXAMPLE), { outdir: mkdtempSync(join(tmpdir(), 'cbactions-example-synth-')) });
    expect(result.stackName).toBe('cbactions');
    expect(result.warnings).toEqual([]);
  }, 180_000);

  it('the local example is what the mux runs with, no role ids needed', async () => {
    const config = await loadConfigFile(LOCAL_EXAMPLE, { runtime: true });
    expect(config.payloads).toEqual({ key: { local: { file: expect.any(String) } }, store: { local: { dir: expect.any(String) } } });
  });

  it('the README links both', () => {
    const readme = readFileSync(join(PROJECT_ROOT, 'README.md'), 'utf8');
    expect(readme).toContain('(examples/cbactions.yml)');
    expect(readme).toContain('(examples/cbactions-local.yml)');
  });
});
