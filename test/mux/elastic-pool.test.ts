/**
 * ElasticPool's decisions on a manual clock, with scripted slots: replacements after each
 * job, the doubling under a burst, the maximum, retirement after the cool-down (never a busy
 * slot), prepared registrations used first and renewed when old.
 */
import { describe, expect, it } from 'vitest';
import { ElasticPool, PREPARED_MAX_AGE_MS, type PoolCapacitySettings } from '../../src/mux/elastic-pool.js';
import { MuxMetrics } from '../../src/mux/metrics.js';
import type { Slot, SlotGate } from '../../src/mux/slot.js';
import type { SlotState } from '../../src/mux/status-model.js';
import { createLogger } from '../../src/util/logger.js';
import { ManualClock } from '../support/manual-clock.js';

/** Lets every pending promise continuation run. */
async function settle(): Promise<void> {
  for (let round = 0; round < 20; round++) await new Promise((resolve) => setImmediate(resolve));
}

/** A slot that registers at once and runs its listener until the test gives it a job and ends it. */
class ScriptedSlot {
  state: SlotState = 'registering';
  retiring = false;
  retiredFor: string | undefined;
  registrations = 0;
  #end: (() => void) | undefined;
  readonly #stopSelf = new AbortController();

  constructor(
    readonly index: number,
    private readonly gate: SlotGate,
    private readonly pool: () => ElasticPool,
  ) {}

  get busy(): boolean {
    return this.state === 'busy' || this.state === 'draining';
  }

  #set(state: SlotState): void {
    this.state = state;
    this.pool().slotChanged(this as unknown as Slot);
  }

  async run(outer: AbortSignal): Promise<void> {
    const stop = AbortSignal.any([outer, this.#stopSelf.signal]);
    while (!stop.aborted && this.gate.shouldRegister(this as unknown as Slot)) {
      this.#set('registering');
      this.registrations += 1;
      this.#set('prepared');
      await this.gate.waitForStart(this as unknown as Slot, stop);
      if (stop.aborted) break;
      this.#set('idle');
      await new Promise<void>((resolve) => {
        this.#end = resolve;
        stop.addEventListener('abort', () => resolve(), { once: true });
      });
    }
    this.#set('stopped');
  }

  takeJob(): void {
    if (this.state !== 'idle') throw new Error(`slot ${this.index} is ${this.state}, not idle`);
    this.#set('busy');
  }

  /** The job ended: the listener exits and the slot goes round again. */
  finishJob(): void {
    this.#end?.();
  }

  async retire(reason: string): Promise<boolean> {
    if (this.retiring || (this.state !== 'idle' && this.state !== 'prepared')) return false;
    this.retiring = true;
    this.retiredFor = reason;
    this.#stopSelf.abort();
    return true;
  }
}

function setUp(settings: Partial<PoolCapacitySettings> & { max: number }) {
  const clock = new ManualClock();
  const metrics = new MuxMetrics(() => []);
  const made: ScriptedSlot[] = [];
  const pool: ElasticPool = new ElasticPool({
    name: 'p',
    settings: { idle: 2, prepared: 0, coolDownMs: 60_000, ...settings },
    createSlot: async (index, gate) => {
      const slot = new ScriptedSlot(index, gate, () => pool);
      made.push(slot);
      return slot as unknown as Slot;
    },
    logger: createLogger({ name: 'test', level: 'silent' }),
    metrics,
    clock,
  });
  const stop = new AbortController();
  const running = pool.run(stop.signal);
  const live = () => (pool.slots() as unknown as ScriptedSlot[]).filter((slot) => slot.state !== 'stopped');
  const idle = () => live().filter((slot) => slot.state === 'idle');
  return { clock, pool, made, stop, running, live, idle, metrics };
}

describe('ElasticPool', () => {
  it('starts a replacement for each job taken, and grows faster under a burst, never past max', async () => {
    const { pool, live, idle, stop, running } = setUp({ idle: 2, max: 20 });
    await settle();
    expect(pool.capacity()).toMatchObject({ idle: 2, busy: 0, idleTarget: 2 });
    idle()[0]?.takeJob();
    await settle();
    // One job within the cool-down: the target is 2 + 1 idle, beside the busy one.
    expect(pool.capacity()).toMatchObject({ busy: 1, idle: 3, idleTarget: 3 });

    // A burst: every idle listener is taken as soon as it is up; count the idle ones each wave.
    const waves: number[] = [];
    for (let wave = 0; wave < 6; wave++) {
      const ready = idle();
      waves.push(ready.length);
      for (const slot of ready) slot.takeJob();
      await settle();
      expect(live().length).toBeLessThanOrEqual(20);
    }
    // 3 → 6 → 10 (the 19 busy leave room for one more) → 1 → 0: doubling, then capped.
    expect(waves.slice(0, 2)).toEqual([3, 6]);
    expect(pool.capacity()).toMatchObject({ busy: 20, idle: 0, starting: 0, registering: 0, prepared: 0, idleTarget: 0 });
    expect(live()).toHaveLength(20);
    stop.abort();
    await running;
  });

  it('retires idle listeners above the target once the cool-down has passed, never a busy one', async () => {
    const { pool, idle, live, made, clock, stop, running } = setUp({ idle: 1, max: 10, coolDownMs: 60_000 });
    await settle();
    const first = idle()[0] as ScriptedSlot;
    first.takeJob();
    await settle();
    (idle()[0] as ScriptedSlot).takeJob();
    await settle();
    expect(pool.capacity()).toMatchObject({ busy: 2, idle: 3 });
    clock.advance(59_000);
    await settle();
    expect(live().filter((slot) => slot.retiring)).toEqual([]);
    clock.advance(2_000);
    await settle();
    // Back to the plain target of 1 idle; the two busy ones untouched.
    expect(pool.capacity()).toMatchObject({ busy: 2, idle: 1, idleTarget: 1 });
    const retired = made.filter((slot) => slot.retiredFor !== undefined);
    expect(retired.map((slot) => slot.retiredFor)).toEqual(['idle-above-target', 'idle-above-target']);
    expect(retired.some((slot) => slot.busy)).toBe(false);
    expect(first.state).toBe('busy');
    stop.abort();
    await running;
  });

  it('a finished job re-registers only when the pool needs the slot', async () => {
    const { pool, idle, live, made, clock, stop, running } = setUp({ idle: 1, max: 4, coolDownMs: 1_000 });
    await settle();
    const slot = idle()[0] as ScriptedSlot;
    slot.takeJob();
    await settle();
    clock.advance(5_000);
    await settle();
    // The job raised the target to 2 idle for the cool-down (3 registrations); then one retired.
    expect(pool.capacity()).toMatchObject({ busy: 1, idle: 1 });
    expect(made.filter((candidate) => candidate.retiredFor === 'idle-above-target')).toHaveLength(1);
    slot.finishJob();
    await settle();
    // One idle listener already waits: the finished slot ends instead of registering again.
    expect(slot.registrations).toBe(1);
    expect(slot.state).toBe('stopped');
    expect(live()).toHaveLength(1);
    expect(made.reduce((sum, candidate) => sum + candidate.registrations, 0)).toBe(3);
    stop.abort();
    await running;
  });

  it('holds prepared registrations, starts them first when jobs come, and renews one that is too old', async () => {
    const { pool, idle, made, clock, stop, running } = setUp({ idle: 1, max: 6, prepared: 2, coolDownMs: 60_000 });
    await settle();
    expect(pool.capacity()).toMatchObject({ idle: 1, prepared: 2 });
    const registrationsBefore = made.reduce((sum, slot) => sum + slot.registrations, 0);
    (idle()[0] as ScriptedSlot).takeJob();
    await settle();
    // Two listeners started at once from the prepared ones (target 1 + 1 job); new registrations refill.
    expect(pool.capacity()).toMatchObject({ busy: 1, idle: 2, prepared: 2 });
    expect(made.reduce((sum, slot) => sum + slot.registrations, 0)).toBe(registrationsBefore + 2);
    clock.advance(PREPARED_MAX_AGE_MS);
    await settle();
    expect(made.filter((slot) => slot.retiredFor === 'prepared-expired').length).toBe(2);
    expect(pool.capacity()).toMatchObject({ prepared: 2 });
    stop.abort();
    await running;
  });
});
