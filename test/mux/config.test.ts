/** The mux's part of the config schema: defaults, and errors that name their field. */
import { describe, expect, it } from 'vitest';
import { ConfigErrorCode, parseConfig } from '../../src/config/load.js';
import { isCbactionsError } from '../../src/util/errors.js';

/** A config as parsed from YAML, loose enough to break on purpose. */
interface Loose {
  github: Record<string, unknown>;
  pools: Record<string, unknown>[];
  [key: string]: unknown;
}

function base(): Loose {
  return {
    github: { scope: { organization: 'octo' }, auth: { token: { env: 'GITHUB_TOKEN' } } },
    codebuild: { projectName: 'cbactions' },
    payloads: { key: { local: { file: '/k' } }, store: { local: { dir: '/p' } } },
    pools: [{ name: 'linux', labels: ['cbactions'] }],
  };
}

function problems(mutate: (config: Loose) => void): string {
  const config = base();
  mutate(config);
  try {
    parseConfig(config, 'test config');
  } catch (error) {
    expect(isCbactionsError(error, ConfigErrorCode.Invalid)).toBe(true);
    return (error as Error).message;
  }
  throw new Error('the config was accepted');
}

describe('config: github and mux sections', () => {
  it('fills in the defaults the mux relies on', () => {
    const config = parseConfig(base());
    expect(config.github).toMatchObject({ url: 'https://github.com', runnerGroup: 'Default', namePrefix: 'cbactions', registration: 'jit' });
    expect(config.mux).toMatchObject({
      runnerRoot: '/actions-runner',
      isolation: 'auto',
      installWorkerShim: true,
      dispatch: 'in-process',
      statusPort: 8080,
      listenerBackoff: { initialMs: 1_000, maxMs: 300_000, healthyAfterSeconds: 60 },
      listenerStopTimeoutSeconds: 30,
      taskProtectionMinutes: 60,
    });
    expect(config.pools[0]).toMatchObject({ idle: 1, max: 1, prepared: 0, coolDownSeconds: 300 });
  });

  it('pool capacity: slots is the shorthand for idle = max; idle + max make it elastic; contradictions name their field', () => {
    const pool = (fields: Record<string, unknown>) => parseConfig({ ...base(), pools: [{ name: 'linux', labels: ['cbactions'], ...fields }] }).pools[0];
    expect(pool({ slots: 4 })).toMatchObject({ idle: 4, max: 4, prepared: 0 });
    expect(pool({ slots: 4 })).toMatchObject({ slots: 4 });
    expect(pool({ slots: 4, idle: 4, max: 4 })).toMatchObject({ slots: 4, idle: 4, max: 4 });
    expect(pool({ idle: 2, max: 50, prepared: 10, coolDownSeconds: 60 })).toMatchObject({ idle: 2, max: 50, prepared: 10, coolDownSeconds: 60 });
    expect(pool({ max: 8 })).toMatchObject({ idle: 1, max: 8 });
    // A parsed config parses again to the same (the CDK app re-serializes it).
    const parsed = parseConfig({ ...base(), pools: [{ name: 'linux', labels: ['cbactions'], slots: 3 }] });
    expect(parseConfig(JSON.parse(JSON.stringify(parsed))).pools).toEqual(parsed.pools);
    expect(problems((config) => (config.pools[0] = { name: 'linux', labels: ['x'], slots: 2, max: 4 }))).toMatch(/pools\[0\]\.slots.*shorthand/);
    expect(problems((config) => (config.pools[0] = { name: 'linux', labels: ['x'], idle: 2 }))).toMatch(/pools\[0\]\.max/);
    expect(problems((config) => (config.pools[0] = { name: 'linux', labels: ['x'], idle: 5, max: 4 }))).toMatch(/pools\[0\]\.idle.*cannot exceed max/);
    expect(problems((config) => (config.pools[0] = { name: 'linux', labels: ['x'], idle: 0, max: 4 }))).toMatch(/pools\[0\]\.idle/);
    expect(problems((config) => (config.pools[0] = { name: 'linux', labels: ['x'], max: 4, prepared: 5 }))).toMatch(/pools\[0\]\.prepared/);
    expect(problems((config) => (config.pools[0] = { name: 'linux', labels: ['x'], max: 101 }))).toMatch(/pools\[0\]\.max/);
    expect(
      problems((config) => {
        config.github.registration = 'token';
        config.pools[0] = { name: 'linux', labels: ['x'], max: 4, prepared: 2 };
      }),
    ).toMatch(/pools\[0\]\.prepared.*JIT/);
  });

  it('mux.dispatch is in-process or worker, and nothing else', () => {
    expect(parseConfig({ ...base(), mux: { dispatch: 'worker' } }).mux.dispatch).toBe('worker');
    expect(problems((config) => (config.mux = { dispatch: 'thread' }))).toMatch(/mux\.dispatch/);
  });

  it('accepts an App with a key from Secrets Manager, a GHES URL and a runner group id', () => {
    const config = parseConfig({
      ...base(),
      github: {
        url: 'https://ghes.example.com',
        scope: { enterprise: 'acme' },
        runnerGroup: 7,
        auth: { app: { appId: '123', privateKey: { secretsManager: 'cbactions/app', jsonKey: 'pem' } } },
        registration: 'token',
      },
    });
    expect(config.github.runnerGroup).toBe(7);
  });

  it.each([
    ['github.scope', (c: Loose) => (c.github.scope = { organization: 'bad org' })],
    ['github.scope', (c: Loose) => (c.github.scope = { repository: 'no-slash' })],
    ['github.url', (c: Loose) => (c.github.url = 'ftp://example.com')],
    ['github.namePrefix', (c: Loose) => (c.github.namePrefix = 'has space')],
    ['github.namePrefix', (c: Loose) => (c.github.namePrefix = 'x'.repeat(25))],
    ['github.runnerGroup', (c: Loose) => (c.github.runnerGroup = 0)],
    ['github.registration', (c: Loose) => (c.github.registration = 'pat')],
    ['github.auth', (c: Loose) => (c.github.auth = { token: { env: 'lower-case-is-fine-but-not-dashes' } })],
    ['github.auth', (c: Loose) => (c.github.auth = { app: { appId: 'abc', privateKey: { file: '/k.pem' } } })],
    ['github.auth', (c: Loose) => (c.github.auth = { token: { vault: 'x' } })],
    ['pools[0].labels[0]', (c: Loose) => ((c.pools[0] as Record<string, unknown>).labels = ['a,b'])],
    ['pools[0].slots', (c: Loose) => ((c.pools[0] as Record<string, unknown>).slots = 0)],
    ['pools[1].name', (c: Loose) => c.pools.push({ name: 'linux', labels: ['x'] })],
    ['mux.isolation', (c: Loose) => (c.mux = { isolation: 'chroot' })],
    ['mux.statusPort', (c: Loose) => (c.mux = { statusPort: 70000 })],
    ['mux.listenerBackoff.maxMs', (c: Loose) => (c.mux = { listenerBackoff: { initialMs: 5_000, maxMs: 1_000 } })],
    ['mux.listenerBackoff.initialMs', (c: Loose) => (c.mux = { listenerBackoff: { initialMs: 1 } })],
    ['mux.taskProtectionMinutes', (c: Loose) => (c.mux = { taskProtectionMinutes: 3000 })],
    ['mux.listenerStopTimeoutSeconds', (c: Loose) => (c.mux = { listenerStopTimeoutSeconds: 0 })],
    ['mux.installWorkerShim', (c: Loose) => (c.mux = { installWorkerShim: 'yes' })],
    ['mux.drainTimeoutSeconds', (c: Loose) => (c.mux = { drainTimeoutSeconds: -1 })],
  ])('names %s in the error', (field, mutate) => {
    const message = problems(mutate);
    expect(message).toContain(field);
  });

  it('names the section and the key of an unknown field', () => {
    const message = problems((c) => (c.mux = { surprise: true }));
    expect(message).toMatch(/mux: .*surprise/);
  });

  it('prints every problem, one line each', () => {
    const message = problems((c) => {
      c.github.namePrefix = '!';
      c.mux = { isolation: 'nope', statusPort: -1 };
    });
    expect(message.split('\n').filter((line) => line.startsWith('  '))).toHaveLength(3);
  });
});
