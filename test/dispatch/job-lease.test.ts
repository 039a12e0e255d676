import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { BuildSettingsSchema } from '../../src/config/schema.js';
import { MessageType, type Frame } from '../../src/protocol/messages.js';
import { LocalKeyService } from '../../src/seal/local-key-service.js';
import { LocalPayloadStore } from '../../src/seal/local-payload-store.js';
import type { JobLease, PayloadBinding } from '../../src/seal/types.js';
import { PollingBuildWaiter } from '../../src/dispatch/build-waiter.js';
import { holdJobLease } from '../../src/dispatch/job-lease.js';
import { leaseSettings } from '../../src/dispatch/job-settings.js';
import { runJob } from '../../src/dispatch/run-job.js';
import { InMemoryBuilds } from '../support/in-memory-builds.js';
import { jobMessage, runnerFileJson } from '../support/runner-root.js';

const silent = pino({ level: 'silent' });

/** A local store that records lease and payload calls in order and wakes waiters on each renewal. */
function recordingStore() {
  const store = new LocalPayloadStore({ dir: join(mkdtempSync(join(tmpdir(), 'job-lease-')), 'payloads'), pollMs: 10 });
  const calls: string[] = [];
  const renewals: JobLease[] = [];
  let onRenew: (() => void) | undefined;
  const renewLease = store.renewLease.bind(store);
  store.renewLease = async (binding: PayloadBinding, lease: JobLease, signal?: AbortSignal) => {
    await renewLease(binding, lease, signal);
    calls.push('renewLease');
    renewals.push(lease);
    onRenew?.();
  };
  const put = store.put.bind(store);
  store.put = async (...args) => {
    calls.push('put');
    await put(...args);
  };
  const releaseLease = store.releaseLease.bind(store);
  store.releaseLease = async (...args) => {
    calls.push('releaseLease');
    await releaseLease(...args);
  };
  const renewedTimes = (count: number) =>
    new Promise<void>((resolve) => {
      const check = () => {
        if (renewals.length >= count) resolve();
      };
      onRenew = check;
      check();
    });
  return { store, calls, renewals, renewedTimes };
}

describe('holdJobLease', () => {
  it('writes the first lease at once, renews it with a fresh expiry, and stops and removes it on release', async () => {
    const { store, calls, renewals, renewedTimes } = recordingStore();
    const binding = { buildId: 'cbactions:lease-1' };
    let clock = 1_000_000;
    const handle = await holdJobLease({ store, binding, settings: { renewMs: 20, ttlMs: 60_000 }, logger: silent, now: () => clock });
    expect(await store.readLease(binding)).toEqual({ expiresAt: new Date(1_060_000) });
    clock = 2_000_000;
    await renewedTimes(3);
    expect(renewals.at(-1)).toEqual({ expiresAt: new Date(2_060_000) });
    await handle.release();
    expect(await store.readLease(binding)).toBeUndefined();
    const after = calls.length;
    // Well past several renewal intervals: nothing renews a released lease.
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(calls.slice(after)).toEqual([]);
    expect(calls.at(-1)).toBe('releaseLease');
  });
});

describe('leaseSettings (worker environment)', () => {
  it("carries the facts for the job's log: the first ones from the start, more added at once and kept by later renewals", async () => {
    const { store, renewals, renewedTimes } = recordingStore();
    const binding = { buildId: 'cbactions:lease-facts' };
    const price = { computeType: 'BUILD_GENERAL1_SMALL', rule: 'per-minute' as const, region: 'us-east-1', perMinute: 0.005, currency: 'USD', asOf: '2026-05' };
    const waits = { submittedMs: 1, queuedMs: 2, provisioningMs: 3 };
    // Renewals far apart: only addFacts renews now.
    const handle = await holdJobLease({ store, binding, settings: { renewMs: 3_600_000, ttlMs: 7_200_000 }, logger: silent, facts: { price } });
    expect((await store.readLease(binding))?.facts).toEqual({ price });
    await handle.addFacts({ waits });
    expect(renewals).toHaveLength(2);
    expect((await store.readLease(binding))?.facts).toEqual({ price, waits });
    await handle.release();
    await handle.addFacts({ waits });
    expect(await store.readLease(binding)).toBeUndefined();
    await renewedTimes(2);
  });

  it('defaults to renew every 60 s, valid 300 s; seconds from the environment; refuses nonsense naming the variable', () => {
    expect(leaseSettings({})).toEqual({ renewMs: 60_000, ttlMs: 300_000 });
    expect(leaseSettings({ CBACTIONS_LEASE_RENEW_SECONDS: '1', CBACTIONS_LEASE_TTL_SECONDS: '3' })).toEqual({ renewMs: 1000, ttlMs: 3000 });
    expect(() => leaseSettings({ CBACTIONS_LEASE_RENEW_SECONDS: '0.5' })).toThrow(/CBACTIONS_LEASE_RENEW_SECONDS must be whole seconds/);
    expect(() => leaseSettings({ CBACTIONS_LEASE_RENEW_SECONDS: '60', CBACTIONS_LEASE_TTL_SECONDS: '90' })).toThrow(/CBACTIONS_LEASE_TTL_SECONDS \(90 s\) must be at least twice/);
  });
});

describe('runJob holds the job lease', () => {
  it('writes the lease before the payload, renews it while the build runs, releases it when the build ended; the build names the mux', async () => {
    const { store, calls, renewedTimes } = recordingStore();
    const builds = new InMemoryBuilds();
    let finish: (() => void) | undefined;
    builds.onStart = (build) => {
      builds.update(build.id, { currentPhase: 'BUILD' });
      finish = () => builds.finish(build.id, { exported: { CBACTIONS_EXIT_CODE: '100' } });
    };
    const frames: AsyncIterator<Frame> = {
      next: (() => {
        let sent = false;
        return () => {
          if (sent) return new Promise<IteratorResult<Frame>>(() => undefined);
          sent = true;
          return Promise.resolve({ done: false, value: { type: MessageType.NewJobRequest, body: Buffer.from(jobMessage(), 'utf16le') } });
        };
      })(),
    };
    const running = runJob({
      frames,
      builds,
      waiter: new PollingBuildWaiter(builds, silent, { initialIntervalMs: 5, maxIntervalMs: 20, throttleMaxMs: 20 }),
      keys: new LocalKeyService(randomBytes(32)),
      store,
      runnerFiles: async () => ({ runnerFile: Buffer.from(runnerFileJson('runner-a')), runnerName: 'runner-a' }),
      logger: silent,
      settings: {
        projectName: 'cbactions',
        poolName: 'default',
        build: BuildSettingsSchema.parse({}),
        payloadReferences: { store: 'file:///payloads', key: 'file:///key' },
        cancelGraceMs: 100,
        firstMessageTimeoutMs: 1000,
        lease: { renewMs: 20, ttlMs: 60_000 },
        muxInstance: 'host-a:/var/lib/cbactions',
      },
    });
    await renewedTimes(3);
    finish?.();
    expect((await running).exitCode).toBe(100);
    expect(calls.slice(0, 2)).toEqual(['renewLease', 'put']);
    expect(calls.at(-1)).toBe('releaseLease');
    const request = builds.calls.find((call) => call.op === 'start')?.arg as { environmentVariables: Record<string, string> };
    expect(request.environmentVariables.CBACTIONS_MUX_INSTANCE).toBe('host-a:/var/lib/cbactions');
    const buildId = [...builds.builds.keys()][0] as string;
    expect(await store.readLease({ buildId })).toBeUndefined();
  });
});
