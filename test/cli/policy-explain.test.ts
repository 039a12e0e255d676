import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { runPolicyExplainCommand } from '../../src/cli/policy-explain.js';
import { renderStarterConfig } from '../../src/infra/init.js';
import { githubContext, pullRequestContext } from '../support/context-data.js';
import { jobMessage } from '../support/runner-root.js';

const dir = mkdtempSync(join(tmpdir(), 'policy-explain-'));
const configPath = join(dir, 'cbactions.json');

async function explain(options: { config?: string; job?: string; pool?: string }) {
  let stdout = '';
  let stderr = '';
  const code = await runPolicyExplainCommand(options, { stdout: (text) => (stdout += text), stderr: (text) => (stderr += text) });
  return { code, stdout, stderr };
}

function jobFile(name: string, body: string | Buffer): string {
  const path = join(dir, name);
  writeFileSync(path, body);
  return path;
}

beforeAll(() => {
  writeFileSync(
    configPath,
    JSON.stringify({
      github: { scope: { organization: 'acme' }, auth: { token: { env: 'GITHUB_TOKEN' } } },
      codebuild: { projectName: 'cbactions' },
      payloads: { key: { kms: { keyId: 'alias/x' } }, store: { s3: { bucket: 'cbactions-payloads' } } },
      pools: [
        { name: 'default', labels: ['cbactions'], overridable: ['computeType'] },
        { name: 'docker', labels: ['cbactions-docker'], build: { privileged: true } },
      ],
      policy: {
        roles: { deployer: { arn: 'arn:aws:iam::123456789012:role/acme-deployer', roleId: 'AROADEPLOY0000000001' } },
        rules: [
          { name: 'deploy-main', match: { repository: 'acme/app', ref: 'refs/heads/main' }, role: 'deployer' },
          { name: 'nightly', match: { event: ['schedule'], pool: ['default'] }, build: { computeType: 'BUILD_GENERAL1_LARGE' } },
        ],
      },
    }),
  );
});

describe('cbactions policy explain', () => {
  it('prints the context, the rule, the role and the settings of a job that would run (exit 0)', async () => {
    const result = await explain({ config: configPath, job: jobFile('push.json', jobMessage({ jobId: 'job-7', github: githubContext('acme/app') })), pool: 'default' });
    expect(result).toEqual({
      code: 0,
      stderr: '',
      stdout: [
        'job:      job-7',
        'context:  repository acme/app',
        '          owner      acme',
        '          event      push',
        '          ref        refs/heads/main',
        '          workflow   .github/workflows/ci.yml',
        '          actor      octocat',
        '          fork       no',
        'pool:     default',
        'rule:     deploy-main (policy.rules[0])',
        'decision: run',
        'role:     deployer (arn:aws:iam::123456789012:role/acme-deployer)',
        'settings: BUILD_GENERAL1_SMALL LINUX_CONTAINER, privileged no',
        '',
      ].join('\n'),
    });
  });

  it('names the overridden settings, and reads a UTF-16LE file with its BOM as the pipe carries it', async () => {
    const body = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(jobMessage({ github: githubContext('acme/app', { event_name: 'schedule', ref: 'refs/heads/dev' }) }), 'utf16le')]);
    const result = await explain({ config: configPath, job: jobFile('nightly.json', body), pool: 'default' });
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('rule:     nightly (policy.rules[1])\n');
    expect(result.stdout).toContain("role:     the CodeBuild project's service role\n");
    expect(result.stdout).toContain('settings: BUILD_GENERAL1_LARGE LINUX_CONTAINER, privileged no (set by the rule: computeType)\n');
  });

  it('says why a job would be refused (exit 1)', async () => {
    const result = await explain({ config: configPath, job: jobFile('fork.json', jobMessage({ github: pullRequestContext('acme/lib', 'mallory/lib') })), pool: 'docker' });
    expect(result.code).toBe(1);
    expect(result.stdout).toContain('          fork       yes\npool:     docker\nrule:     none matched: policy.defaultEffect (run)\ndecision: refuse (POLICY_REFUSED)\n');
    expect(result.stdout).toContain('reason:   the policy default matched, but pull requests from forks may not use privileged (Docker) builds (pool "docker") (policy.forkProtection)\n');
    const unreadable = await explain({ config: configPath, job: jobFile('bare.json', JSON.stringify({ jobId: 'x' })), pool: 'default' });
    expect(unreadable.code).toBe(1);
    expect(unreadable.stdout).toContain("context:  unreadable: the job message has no contextData\n");
    expect(unreadable.stdout).toContain('decision: refuse (JOB_CONTEXT_UNREADABLE)\n');
  });

  it.each<[string, { config?: string; job?: string; pool?: string }, string]>([
    ['no --pool with several pools', { pool: undefined }, 'the config has 2 pools (default, docker): say which one the job would run on with --pool NAME (CONFIG_POLICY_EXPLAIN_USAGE)'],
    ['an unknown pool', { pool: 'gpu' }, '--pool gpu names no pool in the config (pools: default, docker) (CONFIG_POLICY_EXPLAIN_USAGE)'],
    ['a missing job file', { job: join(dir, 'nope.json') }, `cannot read job file ${join(dir, 'nope.json')}: ENOENT`],
    ['a job file that is not JSON', { job: 'not-json' }, 'is not valid JSON (CONFIG_JOB_FILE_INVALID)'],
    ['a job file that is a JSON array', { job: 'array' }, 'is not a JSON object (CONFIG_JOB_FILE_INVALID)'],
    ['a missing config', { config: join(dir, 'none.yml') }, `cannot read config file ${join(dir, 'none.yml')}`],
  ])('%s: a clear error, exit 2', async (_name, change, message) => {
    const job = change.job === 'not-json' ? jobFile('bad.json', '{"jobId":') : change.job === 'array' ? jobFile('array.json', '[1]') : (change.job ?? jobFile('ok.json', jobMessage()));
    const result = await explain({ config: change.config ?? configPath, job, ...('pool' in change ? (change.pool ? { pool: change.pool } : {}) : { pool: 'default' }) });
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr).toContain(message);
    expect(result.stderr.startsWith('cbactions policy explain: ')).toBe(true);
  });
});

describe('cbactions init writes a commented example policy', () => {
  it('that loads, and whose example rules load once uncommented', () => {
    const text = renderStarterConfig({ scope: { organization: 'acme' }, auth: { kind: 'pat' }, pools: [{ name: 'small', labels: ['small'] }], projectName: 'cbactions', stackName: 'cbactions' });
    const config = parseConfig(parseYaml(text));
    expect(config.policy).toEqual({ roles: {}, rules: [], defaultEffect: 'run', forkProtection: true });
    const uncommented = text
      .replace('  rules: []\n', '')
      .replace('    overridable: []', '    overridable: [computeType]')
      .replace(/^ {2}# (roles:|rules:| {2}deployer:| {2}- name:| {4}\w+:)/gm, '  $1');
    const withRules = parseConfig(parseYaml(uncommented));
    expect(withRules.policy.rules.map((rule) => rule.name)).toEqual(['no-archived', 'deploy-from-main', 'nightly-large']);
    expect(Object.keys(withRules.policy.roles)).toEqual(['deployer']);
  });
});
