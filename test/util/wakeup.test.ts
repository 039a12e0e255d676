/** The wake-up primitive behind every "sleep unless woken" loop: no wake is ever lost. */
import { describe, expect, it } from 'vitest';
import { Wakeup } from '../../src/util/wakeup.js';
import { ManualClock } from '../support/manual-clock.js';

describe('Wakeup', () => {
  it('a wake that came while no one waited ends the next wait at once', async () => {
    const wakeup = new Wakeup(new ManualClock());
    const seen = wakeup.generation;
    wakeup.wake(); // e.g. while the loop had a request in flight
    await expect(wakeup.wait(seen)).resolves.toBe('woken');
  });

  it('waits for a wake newer than the generation it was given', async () => {
    const wakeup = new Wakeup(new ManualClock());
    wakeup.wake();
    const seen = wakeup.generation;
    let outcome: string | undefined;
    const waiting = wakeup.wait(seen).then((reason) => (outcome = reason));
    await Promise.resolve();
    expect(outcome).toBeUndefined();
    wakeup.wake();
    await waiting;
    expect(outcome).toBe('woken');
  });

  it('wakes every waiter, and each wait ends exactly once', async () => {
    const wakeup = new Wakeup(new ManualClock());
    const seen = wakeup.generation;
    const waits = [wakeup.wait(seen), wakeup.wait(seen), wakeup.wait(seen, { timeoutMs: 10 })];
    wakeup.wake();
    wakeup.wake();
    await expect(Promise.all(waits)).resolves.toEqual(['woken', 'woken', 'woken']);
  });

  it('times out on its clock, and a wake later does not matter', async () => {
    const clock = new ManualClock();
    const wakeup = new Wakeup(clock);
    const waiting = wakeup.wait(wakeup.generation, { timeoutMs: 1_000 });
    expect(clock.pending).toEqual([1_000]);
    clock.advance(1_000);
    await expect(waiting).resolves.toBe('timeout');
    wakeup.wake();
    expect(clock.pending).toEqual([]);
  });

  it('a wake cancels the timer', async () => {
    const clock = new ManualClock();
    const wakeup = new Wakeup(clock);
    const waiting = wakeup.wait(wakeup.generation, { timeoutMs: 60_000 });
    wakeup.wake();
    await expect(waiting).resolves.toBe('woken');
    expect(clock.pending).toEqual([]);
  });

  it('ends on abort, also when the signal aborted before the wait', async () => {
    const clock = new ManualClock();
    const wakeup = new Wakeup(clock);
    const controller = new AbortController();
    const waiting = wakeup.wait(wakeup.generation, { signal: controller.signal, timeoutMs: 5_000 });
    controller.abort();
    await expect(waiting).resolves.toBe('aborted');
    expect(clock.pending).toEqual([]);
    await expect(wakeup.wait(wakeup.generation, { signal: controller.signal })).resolves.toBe('aborted');
  });
});
