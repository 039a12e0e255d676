import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SealErrorCode } from '../../src/seal/errors.js';
import { LocalPayloadStore, localObjectName } from '../../src/seal/local-payload-store.js';
import { isCbactionsError } from '../../src/util/errors.js';
import { BUILD_A, BUILD_B, rejection } from './fixtures.js';

let root: string;
let dir: string;
let store: LocalPayloadStore;
const a = { buildId: BUILD_A };
const bytes = Buffer.from('sealed bytes \u0000\u00ff', 'latin1');

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'cbactions-seal-store-'));
  dir = join(root, 'payloads');
  store = new LocalPayloadStore({ dir, pollMs: 20 });
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('localObjectName', () => {
  it('keeps build ids with ":" or path characters inside one flat, distinct name', () => {
    const names = ['p:1', 'p_1', '../../etc/passwd:1', 'p/1', 'p\\1'].map((buildId) => localObjectName({ buildId }));
    for (const name of names) {
      expect(name).toMatch(/^[A-Za-z0-9._-]+$/);
      expect(name).not.toContain('/');
    }
    expect(new Set(names).size).toBe(names.length);
  });
});

describe('LocalPayloadStore', () => {
  it('put writes atomically with mode 0600 in a 0700 directory; take returns it and removes it', async () => {
    await store.put(a, bytes);
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
    expect((await stat(store.describe(a))).mode & 0o777).toBe(0o600);
    expect((await readdir(dir)).filter((name) => name.startsWith('.tmp-'))).toEqual([]);

    const taken = await store.take(a);
    expect(taken.equals(bytes)).toBe(true);
    const left = await readdir(dir);
    expect(left).toEqual([`${localObjectName(a)}.used`]);
  });

  it('a second take fails with PAYLOAD_ALREADY_USED, not "not found"; so does a second put', async () => {
    await store.put(a, bytes);
    await store.take(a);
    const again = await rejection(() => store.take(a, { waitMs: 50 }));
    expect(isCbactionsError(again, SealErrorCode.AlreadyUsed)).toBe(true);
    expect((again as Error).message).toContain(BUILD_A);
    const replay = await rejection(() => store.put(a, bytes));
    expect(isCbactionsError(replay, SealErrorCode.AlreadyUsed)).toBe(true);
  });

  it('of several concurrent takes exactly one wins; the others are told it was used', async () => {
    await store.put(a, bytes);
    const results = await Promise.allSettled(Array.from({ length: 6 }, () => store.take(a, { waitMs: 5_000 })));
    const won = results.filter((r) => r.status === 'fulfilled');
    const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(won).toHaveLength(1);
    expect(lost).toHaveLength(5);
    for (const r of lost) expect(isCbactionsError(r.reason, SealErrorCode.AlreadyUsed)).toBe(true);
  });

  it('take waits for a payload that is put later', async () => {
    const taking = store.take(a, { waitMs: 30_000 });
    setTimeout(() => void store.put(a, bytes), 150);
    expect((await taking).equals(bytes)).toBe(true);
  });

  it('take without a payload fails with PAYLOAD_NOT_FOUND once the wait is over', async () => {
    const error = await rejection(() => store.take(a, { waitMs: 60 }));
    expect(isCbactionsError(error, SealErrorCode.NotFound)).toBe(true);
    expect((error as Error).message).toContain(BUILD_A);
    const immediate = await rejection(() => store.take(a));
    expect(isCbactionsError(immediate, SealErrorCode.NotFound)).toBe(true);
  });

  it('take stops waiting when aborted, with the signal reason', async () => {
    const controller = new AbortController();
    const reason = new Error('shutting down');
    const taking = store.take(a, { waitMs: 60_000, signal: controller.signal });
    setTimeout(() => controller.abort(reason), 100);
    await expect(taking).rejects.toBe(reason);
    // The payload arriving afterwards is still there for a later take.
    await store.put(a, bytes);
    expect((await store.take(a)).equals(bytes)).toBe(true);
  });

  it('keeps builds apart', async () => {
    await store.put(a, Buffer.from('A'));
    await store.put({ buildId: BUILD_B }, Buffer.from('B'));
    expect((await store.take({ buildId: BUILD_B })).toString()).toBe('B');
    expect((await store.take(a)).toString()).toBe('A');
  });

  it('delete removes an unread payload and is idempotent', async () => {
    await store.delete(a);
    await store.put(a, bytes);
    await store.delete(a);
    await store.delete(a);
    const error = await rejection(() => store.take(a));
    expect(isCbactionsError(error, SealErrorCode.NotFound)).toBe(true);
  });

  it('cancel markers: request, observe, clear (idempotent)', async () => {
    expect(await store.isCancelRequested(a)).toBe(false);
    await store.requestCancel(a);
    expect(await store.isCancelRequested(a)).toBe(true);
    expect(await store.isCancelRequested({ buildId: BUILD_B })).toBe(false);
    await store.clearCancel(a);
    await store.clearCancel(a);
    expect(await store.isCancelRequested(a)).toBe(false);
  });

  it('job lease: none until renewed, the latest renewal wins, released (idempotent), per build', async () => {
    expect(await store.readLease(a)).toBeUndefined();
    await store.renewLease(a, { expiresAt: new Date('2026-12-01T12:05:00.000Z') });
    await store.renewLease(a, { expiresAt: new Date('2026-12-01T12:06:00.000Z') });
    expect(await store.readLease(a)).toEqual({ expiresAt: new Date('2026-12-01T12:06:00.000Z') });
    expect(await store.readLease({ buildId: BUILD_B })).toBeUndefined();
    expect((await stat(join(dir, `${localObjectName(a)}.lease`))).mode & 0o777).toBe(0o600);
    await store.releaseLease(a);
    await store.releaseLease(a);
    expect(await store.readLease(a)).toBeUndefined();
  });

  it("job lease facts for the job's log ride along; facts that are not the schema are dropped, the lease still holds", async () => {
    const facts = {
      waits: { submittedMs: 400, queuedMs: 500, provisioningMs: 19_400 },
      price: { computeType: 'BUILD_GENERAL1_SMALL', rule: 'per-minute' as const, region: 'us-east-1', perMinute: 0.005, currency: 'USD', asOf: '2026-05' },
    };
    const expiresAt = new Date('2026-12-01T12:05:00.000Z');
    await store.renewLease(a, { expiresAt, facts });
    expect(await store.readLease(a)).toEqual({ expiresAt, facts });
    const path = join(dir, `${localObjectName(a)}.lease`);
    for (const bad of ['{"waits":{"queuedMs":"soon"}}', '{"waits":', `{"note":"${'x'.repeat(2000)}"}`, '{"price":{"computeType":"$(rm -rf /)","rule":"per-minute","region":"us-east-1","currency":"USD","asOf":"2026-05"}}']) {
      await writeFile(path, `${expiresAt.toISOString()}\n${bad}\n`);
      expect(await store.readLease(a)).toEqual({ expiresAt });
    }
  });

  it('a lease file that holds no time is PAYLOAD_BAD_LEASE, naming the file', async () => {
    await store.renewLease(a, { expiresAt: new Date() });
    await writeFile(join(dir, `${localObjectName(a)}.lease`), 'tomorrow, probably');
    const error = await rejection(() => store.readLease(a));
    expect(isCbactionsError(error, SealErrorCode.BadLease)).toBe(true);
    expect((error as Error).message).toContain(`${localObjectName(a)}.lease`);
  });
});
