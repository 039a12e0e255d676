import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { contextTree } from './context-data.js';

export const PROJECT_ROOT = resolve(import.meta.dirname, '../..');
export const CBACTIONS_BIN = join(PROJECT_ROOT, 'bin', 'cbactions');
export const FAKE_WORKER_JS = join(PROJECT_ROOT, 'dist', 'test', 'fixtures', 'fake-runner-worker.js');
export const FAKE_LISTENER_JS = join(PROJECT_ROOT, 'dist', 'test', 'fixtures', 'fake-listener.js');

/** A `.runner` as a JIT config writes it (no BOM), camelCase per RUNNER-PROTOCOL §4. */
export function runnerFileJson(name = 'cbactions-test-runner'): string {
  return JSON.stringify({
    agentId: 42,
    agentName: name,
    poolId: 1,
    poolName: 'Default',
    serverUrl: 'https://pipelines.actions.githubusercontent.com/abc',
    gitHubUrl: 'https://github.com/octo/repo',
    workFolder: '_work',
    disableUpdate: true,
    ephemeral: true,
    useV2Flow: true,
  });
}

export function credentialsFileJson(): string {
  return JSON.stringify({
    scheme: 'OAuth',
    data: { clientId: '11111111-2222-3333-4444-555555555555', authorizationUrl: 'https://vstoken.actions.githubusercontent.com/_apis/oauth2/token/x', requireFipsCryptography: 'False' },
  });
}

/**
 * A runner root whose `bin/Runner.Worker` is the fake worker (for the build side).
 * Without `.runner`: the entrypoint must write it from the payload.
 */
export function makeFakeRunnerRoot(parent = mkdtempSync(join(tmpdir(), 'runner-root-'))): string {
  const bin = join(parent, 'bin');
  mkdirSync(bin, { recursive: true });
  const wrapper = `#!/bin/sh\nFAKE_RUNNER_BIN_DIR="$(cd "$(dirname "$0")" && pwd -P)" exec "${process.execPath}" "${FAKE_WORKER_JS}" "$@"\n`;
  writeFileSync(join(bin, 'Runner.Worker'), wrapper);
  chmodSync(join(bin, 'Runner.Worker'), 0o755);
  return parent;
}

/**
 * A listener-side runner root: `.runner`/`.credentials`/`.credentials_rsaparams` as a
 * registered runner has them, and `bin/` ready for `cbactions install-worker`.
 */
export function makeListenerRoot(parent = mkdtempSync(join(tmpdir(), 'listener-root-'))): string {
  mkdirSync(join(parent, 'bin'), { recursive: true });
  writeFileSync(join(parent, '.runner'), `\uFEFF${runnerFileJson()}`);
  writeFileSync(join(parent, '.credentials'), credentialsFileJson());
  writeFileSync(join(parent, '.credentials_rsaparams'), JSON.stringify({ d: 'PRIVATE-KEY-MATERIAL-NEVER-SHIPPED', modulus: 'AQAB' }));
  return parent;
}

/** A job message shaped like a RunnerJobRequest, with the fake worker's instructions. */
export function jobMessage(
  options: {
    jobId?: string;
    action?: string;
    seconds?: number;
    secret?: string;
    padding?: string;
    crashCode?: number;
    exitCode?: number;
    rendezvousDir?: string;
    /** The `github` context (plain values; encoded as the runner's typed tree). */
    github?: Record<string, unknown>;
  } = {},
): string {
  const variables: Record<string, { value: string; isSecret?: boolean }> = {
    'fake.action': { value: options.action ?? 'succeed' },
    'fake.seconds': { value: String(options.seconds ?? 1) },
    'system.github.token': { value: options.secret ?? 'ghs_not-a-real-token', isSecret: true },
  };
  if (options.crashCode !== undefined) variables['fake.crashCode'] = { value: String(options.crashCode) };
  if (options.exitCode !== undefined) variables['fake.exitCode'] = { value: String(options.exitCode) };
  if (options.rendezvousDir !== undefined) variables['fake.rendezvousDir'] = { value: options.rendezvousDir };
  return JSON.stringify({
    messageType: 'RunnerJobRequest',
    plan: { planId: 'p1', planType: 'actions', version: 8, scopeIdentifier: 's1' },
    timeline: { id: 't1' },
    jobId: options.jobId ?? 'job-1',
    jobDisplayName: 'build (ubuntu)',
    jobName: '__default',
    requestId: 1234,
    lockedUntil: '0001-01-01T00:00:00',
    resources: {
      endpoints: [
        {
          name: 'SystemVssConnection',
          url: 'https://pipelines.actions.githubusercontent.com/abc/',
          authorization: { scheme: 'OAuth', parameters: { AccessToken: options.secret ?? 'eyJ-not-a-real-token' } },
        },
      ],
    },
    contextData: { github: options.github ? contextTree(options.github) : { t: 2, d: [{ k: 'repository', v: 'octo/repo' }] } },
    variables,
    steps: [],
    mask: [{ type: 'regex', value: options.secret ?? 'ghs_not-a-real-token' }],
    padding: options.padding ?? '',
  });
}
