import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { PolicyMatch } from '../../src/config/policy-schema.js';
import { parseConfig } from '../../src/config/load.js';
import type { Config, Pool } from '../../src/config/schema.js';
import { AdmissionCode, decideAdmission, DEFAULT_RULE, matchRule, type AdmissionDecision } from '../../src/dispatch/admission.js';
import { readJobContext, type JobContextField } from '../../src/dispatch/job-context.js';
import { parseJobMessage } from '../../src/dispatch/job-request.js';
import { contextTree, githubContext, pullRequestContext } from '../support/context-data.js';
import { fuzzParameters } from '../support/fuzz.js';
import { jobMessage } from '../support/runner-root.js';

const ROLE_DEPLOY = { arn: 'arn:aws:iam::123456789012:role/acme-deploy', roleId: 'AROADEPLOY0000000001' };
const ROLE_APP = { arn: 'arn:aws:iam::123456789012:role/acme-app', roleId: 'AROAAPPROLE000000001' };

/** A policy as an organization would write it: deploys from main, a nightly on big machines, PR roles, a blocked repository. */
const config: Config = parseConfig({
  github: { scope: { organization: 'acme' }, auth: { token: { env: 'GITHUB_TOKEN' } } },
  codebuild: { projectName: 'cbactions' },
  payloads: { key: { local: { file: 'key' } }, store: { local: { dir: 'payloads' } } },
  pools: [
    { name: 'default', labels: ['cbactions'], overridable: ['computeType', 'timeoutMinutes'] },
    { name: 'docker', labels: ['cbactions-docker'], build: { privileged: true, computeType: 'BUILD_GENERAL1_MEDIUM' } },
  ],
  policy: {
    roles: { 'acme-deploy': ROLE_DEPLOY, 'acme-app': ROLE_APP },
    rules: [
      { name: 'no-archived', match: { repository: 'acme/legacy-*' }, effect: 'refuse', reason: 'archived repositories do not run CI' },
      { name: 'deploy-main', match: { repository: 'acme/app', ref: 'refs/heads/main', event: ['push', 'workflow_dispatch'], workflow: '.github/workflows/{deploy,ci}.yml' }, role: 'acme-deploy' },
      { name: 'nightly', match: { event: ['schedule'], pool: ['default'] }, build: { computeType: 'BUILD_GENERAL1_LARGE', timeoutMinutes: 240 } },
      { name: 'own-prs', match: { owner: 'acme', event: ['pull_request'], fork: false }, role: 'acme-app' },
    ],
  },
});

function pool(name: string): Pool {
  const found = config.pools.find((candidate) => candidate.name === name);
  if (!found) throw new Error(`no pool ${name}`);
  return found;
}

/** The decision for a job message (as the listener's UTF-16LE body). */
function decide(body: string, poolName = 'default', policy = config.policy): AdmissionDecision {
  return decideAdmission(policy, pool(poolName), readJobContext(parseJobMessage(Buffer.from(body, 'utf16le'))));
}

/** A job message whose contextData is `contextData` exactly. */
function withContextData(contextData: unknown): string {
  const message = JSON.parse(jobMessage()) as Record<string, unknown>;
  if (contextData === undefined) delete message.contextData;
  else message.contextData = contextData;
  return JSON.stringify(message);
}

type Expected = { rule: string; effect: 'run'; role?: string; computeType?: string; privileged?: boolean } | { rule: string; effect: 'refuse'; code: string; reason: RegExp };

describe('admission decisions over job messages shaped like the runner\'s', () => {
  const cases: [string, string, string, Expected][] = [
    ['push to main', jobMessage({ github: githubContext('acme/app') }), 'default', { rule: 'deploy-main', effect: 'run', role: 'acme-deploy', computeType: 'BUILD_GENERAL1_SMALL' }],
    ['push to main of a repository written in another case', jobMessage({ github: githubContext('ACME/App') }), 'default', { rule: 'deploy-main', effect: 'run', role: 'acme-deploy' }],
    ['push to a branch', jobMessage({ github: githubContext('acme/app', { ref: 'refs/heads/feature' }) }), 'default', { rule: DEFAULT_RULE, effect: 'run', computeType: 'BUILD_GENERAL1_SMALL' }],
    ['push to main from another workflow file', jobMessage({ github: githubContext('acme/app', { workflow_ref: 'acme/app/.github/workflows/lint.yml@refs/heads/main' }) }), 'default', { rule: DEFAULT_RULE, effect: 'run' }],
    ['workflow_dispatch on main', jobMessage({ github: githubContext('acme/app', { event_name: 'workflow_dispatch', workflow_ref: 'acme/app/.github/workflows/deploy.yml@refs/heads/main' }) }), 'default', { rule: 'deploy-main', effect: 'run', role: 'acme-deploy' }],
    ['schedule', jobMessage({ github: githubContext('acme/app', { event_name: 'schedule', event: { schedule: '0 3 * * *' } }) }), 'default', { rule: 'nightly', effect: 'run', computeType: 'BUILD_GENERAL1_LARGE' }],
    ['schedule on a pool the rule is not for', jobMessage({ github: githubContext('acme/app', { event_name: 'schedule' }) }), 'docker', { rule: DEFAULT_RULE, effect: 'run', privileged: true }],
    ['pull request from a branch', jobMessage({ github: pullRequestContext('acme/app', 'acme/app') }), 'default', { rule: 'own-prs', effect: 'run', role: 'acme-app' }],
    ['pull request from a branch, Docker pool', jobMessage({ github: pullRequestContext('acme/app', 'acme/app') }), 'docker', { rule: 'own-prs', effect: 'run', role: 'acme-app', privileged: true }],
    ['pull request from a fork', jobMessage({ github: pullRequestContext('acme/app', 'mallory/app') }), 'default', { rule: DEFAULT_RULE, effect: 'run', privileged: false }],
    [
      'pull request from a fork, Docker pool',
      jobMessage({ github: pullRequestContext('acme/app', 'mallory/app') }),
      'docker',
      { rule: DEFAULT_RULE, effect: 'refuse', code: AdmissionCode.Refused, reason: /^the policy default matched, but pull requests from forks may not use privileged \(Docker\) builds \(pool "docker"\) \(policy\.forkProtection\)$/ },
    ],
    [
      'pull request whose fork was deleted, Docker pool',
      jobMessage({ github: pullRequestContext('acme/app', 'acme/app', { event: { pull_request: { head: { repo: null }, base: { repo: { full_name: 'acme/app' } } } } }) }),
      'docker',
      { rule: DEFAULT_RULE, effect: 'refuse', code: AdmissionCode.Refused, reason: /pull requests from forks may not use privileged/ },
    ],
    ['unknown event', jobMessage({ github: githubContext('acme/app', { event_name: 'merge_group' }) }), 'default', { rule: DEFAULT_RULE, effect: 'run' }],
    ['a refused repository', jobMessage({ github: githubContext('acme/legacy-billing') }), 'default', { rule: 'no-archived', effect: 'refuse', code: AdmissionCode.Refused, reason: /^refused by policy rule "no-archived": archived repositories do not run CI$/ }],
    [
      'no contextData',
      withContextData(undefined),
      'default',
      { rule: 'no-archived', effect: 'refuse', code: AdmissionCode.ContextUnreadable, reason: /^policy rule "no-archived" matches on github\.repository, but the job message has no contextData; the job was refused/ },
    ],
    ['contextData.github is not a dictionary', withContextData({ github: { t: 1, a: ['acme/app'] } }), 'default', { rule: 'no-archived', effect: 'refuse', code: AdmissionCode.ContextUnreadable, reason: /contextData\.github is not a dictionary/ }],
    ['repository is a dictionary', withContextData({ github: contextTree({ repository: { name: 'app' } }) }), 'default', { rule: 'no-archived', effect: 'refuse', code: AdmissionCode.ContextUnreadable, reason: /github\.repository is not a string/ }],
    ['a key twice', withContextData({ github: { t: 2, d: [{ k: 'repository', v: 'acme/legacy-x' }, { k: 'Repository', v: 'acme/app' }] } }), 'default', { rule: 'no-archived', effect: 'refuse', code: AdmissionCode.ContextUnreadable, reason: /has the key "Repository" twice/ }],
    ['an oversized ref', jobMessage({ github: githubContext('acme/app', { ref: `refs/heads/${'x'.repeat(2000)}` }) }), 'default', { rule: 'no-archived', effect: 'refuse', code: AdmissionCode.ContextUnreadable, reason: /github\.ref is longer than 1024 characters/ }],
    ['a repository that is not owner/name', jobMessage({ github: githubContext('acme/app/extra') }), 'default', { rule: 'no-archived', effect: 'refuse', code: AdmissionCode.ContextUnreadable, reason: /github\.repository is not "owner\/name"/ }],
    [
      'a context without the ref a rule needs',
      jobMessage({ github: { repository: 'acme/app', event_name: 'push' } }),
      'default',
      { rule: 'deploy-main', effect: 'refuse', code: AdmissionCode.ContextUnreadable, reason: /^policy rule "deploy-main" matches on github\.ref, but the job's context has no github\.ref/ },
    ],
    [
      'a pull request event without its pull request, Docker pool',
      jobMessage({ github: githubContext('acme/app', { event_name: 'pull_request_target', event: {} }) }),
      'docker',
      { rule: DEFAULT_RULE, effect: 'refuse', code: AdmissionCode.ContextUnreadable, reason: /fork protection keeps pull requests from forks off privileged .*, but the job's context has no whether the pull request comes from a fork/ },
    ],
  ];

  it.each(cases)('%s', (_name, body, poolName, expected) => {
    const decision = decide(body, poolName);
    expect(decision.rule).toBe(expected.rule);
    expect(decision.effect).toBe(expected.effect);
    if (expected.effect === 'refuse') {
      if (decision.effect !== 'refuse') throw new Error('expected a refusal');
      expect(decision.code).toBe(expected.code);
      expect(decision.reason).toMatch(expected.reason);
      return;
    }
    if (decision.effect !== 'run') throw new Error(`expected a run, got: ${decision.reason}`);
    expect(decision.role).toBe(expected.role);
    const role = expected.role === 'acme-deploy' ? ROLE_DEPLOY : expected.role === 'acme-app' ? ROLE_APP : pool(poolName).build.serviceRole;
    expect(decision.build.serviceRole).toEqual(role);
    if (expected.computeType) expect(decision.build.computeType).toBe(expected.computeType);
    if (expected.privileged !== undefined) expect(decision.build.privileged).toBe(expected.privileged);
  });

  it('a job whose context cannot be read still runs where no rule and no protection depends on it', () => {
    const open = parseConfig({ ...configInput(), policy: {} });
    expect(decideAdmission(open.policy, pool('default'), readJobContext({}))).toMatchObject({ effect: 'run', rule: DEFAULT_RULE });
    expect(decideAdmission(open.policy, pool('docker'), readJobContext({}))).toMatchObject({ effect: 'refuse', code: AdmissionCode.ContextUnreadable });
  });

  it('fork protection also holds against a rule that names a role or sets privileged, and can be turned off', () => {
    const policy = parseConfig({
      ...configInput(),
      pools: [{ name: 'default', labels: ['x'], overridable: ['privileged'] }],
      policy: { roles: { 'acme-app': ROLE_APP }, rules: [{ name: 'all-acme', match: { owner: 'acme' }, role: 'acme-app' }, { name: 'docker', match: { event: ['push'] }, build: { privileged: true } }] },
    });
    const only = policy.pools[0] as Pool;
    const fork = readJobContext(parseJobMessage(Buffer.from(jobMessage({ github: pullRequestContext('acme/app', 'mallory/app') }), 'utf16le')));
    expect(decideAdmission(policy.policy, only, fork)).toMatchObject({ effect: 'refuse', rule: 'all-acme', reason: 'policy rule "all-acme" matched, but pull requests from forks may not use role "acme-app" (policy.forkProtection)' });
    const forkPush = { ...fork, owner: 'mallory', event: 'push' };
    expect(decideAdmission(policy.policy, only, forkPush)).toMatchObject({ effect: 'refuse', rule: 'docker', reason: 'policy rule "docker" matched, but pull requests from forks may not use privileged (Docker) builds (policy.forkProtection)' });
    expect(decideAdmission({ ...policy.policy, forkProtection: false }, only, fork)).toMatchObject({ effect: 'run', rule: 'all-acme', role: 'acme-app' });
  });

  it('a rule for every pool that sets what a pool does not allow refuses that pool\'s jobs, naming the setting', () => {
    const decision = decideAdmission(
      { ...config.policy, rules: [{ name: 'big', match: {}, effect: 'run', build: { computeType: 'BUILD_GENERAL1_LARGE' } }] },
      pool('docker'),
      readJobContext({}),
    );
    expect(decision).toMatchObject({ effect: 'refuse', code: AdmissionCode.RuleInapplicable, reason: 'policy rule "big" sets computeType, which pool "docker" does not let rules override (pools[].overridable)' });
  });
});

function configInput() {
  return {
    github: { scope: { organization: 'acme' }, auth: { token: { env: 'GITHUB_TOKEN' } } },
    codebuild: { projectName: 'cbactions' },
    payloads: { key: { local: { file: 'key' } }, store: { local: { dir: 'payloads' } } },
    pools: [
      { name: 'default', labels: ['cbactions'], overridable: ['computeType', 'timeoutMinutes'] },
      { name: 'docker', labels: ['cbactions-docker'], build: { privileged: true } },
    ],
  };
}

/** The context fields a match needs (pool is the job's, never missing). */
function needs(match: PolicyMatch): JobContextField[] {
  return (['repository', 'owner', 'event', 'ref', 'workflow', 'actor', 'fork'] as const).filter((field) => match[field] !== undefined);
}

describe('admission over random and malformed context (property)', () => {
  // Values GitHub could send and values it never would: any JSON, typed nodes of every kind, wrong types where strings go.
  const scalar = fc.oneof(fc.string({ maxLength: 40 }), fc.constantFrom('acme/app', 'acme', 'push', 'pull_request', 'refs/heads/main', 'acme/app/.github/workflows/ci.yml@refs/heads/main'), fc.boolean(), fc.integer(), fc.constant(null));
  const typed = fc.letrec<{ node: unknown }>((tie) => ({
    node: fc.oneof(
      { depthSize: 'small' },
      scalar,
      fc.record({ t: fc.constant(0), s: fc.string({ maxLength: 10 }) }),
      fc.record({ t: fc.constant(3), b: fc.boolean() }),
      fc.record({ t: fc.constantFrom(1, 6, -1, '2'), a: fc.array(tie('node'), { maxLength: 3 }) }),
      fc.record({
        t: fc.constantFrom(2, 5),
        d: fc.array(fc.record({ k: fc.constantFrom('repository', 'repository_owner', 'event_name', 'ref', 'workflow_ref', 'actor', 'event', 'pull_request', 'head', 'base', 'repo', 'full_name', 'fork', 'REF', 'x'), v: tie('node') }), { maxLength: 8 }),
      }),
      fc.anything({ maxDepth: 2 }),
    ),
  })).node;
  const message = fc.oneof(
    fc.record({ jobId: fc.constant('j'), contextData: fc.record({ github: typed }) }),
    fc.record({ jobId: fc.constant('j'), contextData: fc.anything({ maxDepth: 3 }) }),
    fc.dictionary(fc.string({ maxLength: 12 }), fc.anything({ maxDepth: 3 })),
  );

  it('never throws, and a run never comes from a rule (or a protection) needing a value the context lacks', () => {
    fc.assert(
      fc.property(message, fc.constantFrom('default', 'docker'), (input, poolName) => {
        const context = readJobContext(input as Record<string, unknown>);
        if (context.problem !== undefined) expect(Object.keys(context)).toEqual(['problem']);
        const decision = decideAdmission(config.policy, pool(poolName), context);
        if (decision.effect !== 'run') return;
        const rule = config.policy.rules.find((candidate) => candidate.name === decision.rule);
        for (const field of rule ? needs(rule.match) : []) expect(context[field]).toBeDefined();
        // Every rule before the deciding one was found not to match on values that were there.
        for (const earlier of config.policy.rules.slice(0, rule ? config.policy.rules.indexOf(rule) : undefined)) {
          if (earlier.match.pool !== undefined && !earlier.match.pool.includes(poolName)) continue;
          expect(matchRule(earlier.match, context)).toEqual({ matches: false });
        }
        if (decision.build.privileged || decision.role !== undefined) expect(context.fork).toBe(false);
      }),
      fuzzParameters(),
    );
  });
});
