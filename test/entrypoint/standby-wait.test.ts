/**
 * The entrypoint of a standby build: ready, one take per poll until its deadline (checked
 * before each poll, so no payload is ever taken after it), STANDBY_EXPIRED / STANDBY_STOPPED
 * without a job, and the normal path once it has one.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { standbySettings } from '../../src/entrypoint/main.js';
import { runEntrypoint, STANDBY_EXPIRED, STANDBY_STOPPED, type EntrypointDependencies } from '../../src/entrypoint/run-entrypoint.js';
import { sealPayload } from '../../src/seal/envelope.js';
import { LocalKeyService } from '../../src/seal/local-key-service.js';
import { LocalPayloadStore } from '../../src/seal/local-payload-store.js';
import type { PayloadBinding, TakeOptions } from '../../src/seal/types.js';
import { isCbactionsError } from '../../src/util/errors.js';
import { FAKE_WORKER_JS, jobMessage, makeFakeRunnerRoot, PROJECT_ROOT, runnerFileJson } from '../support/runner-root.js';

const binding: PayloadBinding = { buildId: 'cbactions:6f1d2c9e-0000-4000-8000-00000000000a' };

/** A store that tells the test about every take (and may act right after one). */
class WatchedTakes extends LocalPayloadStore {
  takes: number[] = [];
  afterTake: (() => Promise<void> | void) | undefined;
  constructor(
    dir: string,
    private readonly now: () => number,
  ) {
    super({ dir, pollMs: 5 });
  }
  override async take(target: PayloadBinding, options?: TakeOptions): Promise<Buffer> {
    this.takes.push(this.now());
    try {
      return await super.take(target, options);
    } finally {
      await this.afterTake?.();
    }
  }
}

describe('runEntrypoint as a standby', () => {
  let dir: string;
  let keys: LocalKeyService;
  let store: WatchedTakes;
  let clock: number;
  const start = Date.parse('2026-12-02T12:00:00Z');

  beforeAll(() => {
    if (!existsSync(FAKE_WORKER_JS)) throw new Error(`${FAKE_WORKER_JS} is missing: run "npm run build" first (npm test does)`);
  });
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'standby-wait-'));
    keys = new LocalKeyService(randomBytes(32));
    clock = start;
    store = new WatchedTakes(join(dir, 'payloads'), () => clock);
  });

  async function deliver(): Promise<void> {
    const sealed = await sealPayload(keys, { jobMessage: Buffer.from(jobMessage({ jobId: 'job-w' }), 'utf16le'), runnerFile: Buffer.from(runnerFileJson()), ids: { buildId: binding.buildId, jobId: 'job-w' } }, binding);
    await store.put(binding, sealed);
  }

  function deps(options: { stop?: AbortController; waitMs?: number; logger?: pino.Logger } = {}): EntrypointDependencies {
    return {
      keys,
      store,
      resolveBinding: async () => binding,
      runnerRoot: makeFakeRunnerRoot(join(dir, 'runner')),
      resultDir: join(dir, 'result'),
      logger: options.logger ?? pino({ level: 'silent' }),
      facts: { buildId: binding.buildId },
      cbactionsCommand: ['cbactions'],
      payloadWaitMs: 0,
      cancelPollMs: 50,
      leaseCheckMs: 50,
      leaseCancelGraceMs: 10_000,
      now: () => clock,
      stopSignal: (options.stop ?? new AbortController()).signal,
      workerEnv: { ...process.env, ACTIONS_RUNNER_HOOK_JOB_STARTED: undefined },
      runnerInstall: { installer: join(PROJECT_ROOT, 'docker', 'install-runner.sh'), checksums: join(dir, 'no-checksums.txt') },
      standby: { waitMs: options.waitMs ?? 1_000, pollMs: 5 },
    };
  }

  it('gets ready, then takes the job that arrives while it waits and runs it the normal way', async () => {
    let ready!: () => void;
    const isReady = new Promise<void>((resolve) => (ready = resolve));
    const logger = pino({ level: 'info' }, { write: (line: string) => (line.includes('"event":"entrypoint.standby-ready"') ? ready() : undefined) });
    const result = runEntrypoint(deps({ logger, waitMs: 3_600_000 }));
    await isReady;
    await deliver();
    expect(await result).toEqual({ kind: 'exit-code', exitCode: 100 });
    expect(await store.isPending(binding)).toBe(false);
  });

  it('checks its deadline before every poll: a payload arriving at the deadline is never taken', async () => {
    // Each poll moves time on by 100 ms; the payload lands right after the poll that reaches the deadline.
    store.afterTake = async () => {
      clock += 100;
      if (clock >= start + 1_000 && !(await store.isPending(binding))) await deliver();
    };
    const result = await runEntrypoint(deps({ waitMs: 1_000 }));
    expect(result).toMatchObject({ kind: 'failure', code: STANDBY_EXPIRED });
    expect(store.takes.every((at) => at < start + 1_000)).toBe(true);
    expect(store.takes).toHaveLength(10);
    expect(await store.isPending(binding)).toBe(true);
  });

  it('stopped while waiting: STANDBY_STOPPED, and its payload (if one came) stays untaken', async () => {
    const stop = new AbortController();
    store.afterTake = () => {
      if (store.takes.length === 3) stop.abort();
    };
    const result = await runEntrypoint(deps({ stop, waitMs: 3_600_000 }));
    expect(result).toMatchObject({ kind: 'failure', code: STANDBY_STOPPED });
    expect(store.takes).toHaveLength(3);
  });

  it('reads its settings from the environment: no wait variable, no standby; the poll is at most 250 ms', () => {
    expect(standbySettings({})).toBeUndefined();
    expect(standbySettings({ CBACTIONS_STANDBY_WAIT_SECONDS: '600' })).toEqual({ waitMs: 600_000, pollMs: 200 });
    expect(standbySettings({ CBACTIONS_STANDBY_WAIT_SECONDS: '60', CBACTIONS_PAYLOAD_POLL_MS: '50' })).toEqual({ waitMs: 60_000, pollMs: 50 });
    for (const env of [{ CBACTIONS_STANDBY_WAIT_SECONDS: '60', CBACTIONS_PAYLOAD_POLL_MS: '251' }, { CBACTIONS_STANDBY_WAIT_SECONDS: '0' }, { CBACTIONS_STANDBY_WAIT_SECONDS: 'soon' }]) {
      let caught: unknown;
      try {
        standbySettings(env);
      } catch (error) {
        caught = error;
      }
      expect(isCbactionsError(caught, 'CONFIG_INVALID'), JSON.stringify(env)).toBe(true);
    }
  });
});
