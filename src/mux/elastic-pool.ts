/**
 * One pool's capacity: how many slots exist, which of them listen, which hold a registration
 * ahead of need, and which retire. A fixed pool (`slots: N`) is the case idle = max = N.
 *
 * - Idle target: at least `idle` listeners idle or starting. When a listener takes a job a
 *   replacement starts; every job started within the last cool-down adds one more to the
 *   target, so under a burst each job taken starts two listeners and the number started
 *   doubles per wave (1, 2, 4, …) instead of growing one at a time — up to `max` listeners.
 * - Prepared: `prepared` registrations (JIT configs) held with the listener not started. An
 *   offline runner gets no job, so holding them is safe; starting one costs no GitHub write,
 *   which is what a burst would otherwise wait on (the Octokit throttling spaces writes ≥ 1 s
 *   apart). They count against `max` slot directories, never as listeners.
 * - Retirement: an idle listener above the target, idle for the cool-down, and a surplus
 *   prepared registration as old, are retired — registration deleted first (Slot.retire), so
 *   a busy runner is never stopped. A prepared registration is also renewed after
 *   PREPARED_MAX_AGE_MS: GitHub removes an ephemeral runner that has not connected for a day.
 */
import { systemClock, type Clock } from '../util/clock.js';
import type { Logger } from '../util/logger.js';
import type { MuxMetrics } from './metrics.js';
import type { Slot, SlotGate } from './slot.js';
import type { SlotState } from './status-model.js';

/** Half of the day after which GitHub removes an ephemeral runner that never connected. */
export const PREPARED_MAX_AGE_MS = 12 * 3600_000;
/** A job taken this soon after its listener became idle was already waiting in GitHub's queue. */
const PICKED_AT_ONCE_MS = 5_000;

export interface PoolCapacitySettings {
  idle: number;
  max: number;
  prepared: number;
  coolDownMs: number;
}

/** Live counts of one pool (the shape `Mux.capacity()` returns, contracts.md). */
export interface PoolCapacity {
  pool: string;
  /** Listeners running a job (or finishing one while the mux drains). */
  busy: number;
  /** Listeners polling for a job. */
  idle: number;
  /** Listeners started and not yet polling, or restarting after an exit. */
  starting: number;
  /** Registrations held ahead of need, listener not started. */
  prepared: number;
  /** Registrations being obtained. */
  registering: number;
  /** Idle listeners the pool keeps ready now: `idle` plus one per job started within the cool-down, within max. */
  idleTarget: number;
  preparedTarget: number;
  max: number;
}

export interface ElasticPoolOptions {
  name: string;
  settings: PoolCapacitySettings;
  /** Makes the slot with this index (`<pool>-<index>`), its gate this pool's. */
  createSlot: (index: number, gate: SlotGate) => Promise<Slot>;
  logger: Logger;
  metrics: MuxMetrics;
  clock?: Clock;
}

interface Tracked {
  slot: Slot;
  /** Allowed to run its listener with its current registration. */
  granted: boolean;
  /** Set while the slot waits in `prepared` for a start. */
  grant?: () => void;
  preparedSince?: number;
  idleSince?: number;
  lastState: SlotState;
}

export class ElasticPool {
  readonly name: string;
  readonly #settings: PoolCapacitySettings;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #tracked = new Map<Slot, Tracked>();
  readonly #running = new Set<Promise<void>>();
  readonly #creating = new Set<number>();
  /** Slots that ended once the pool was stopping: still shown (state `stopped`) until the mux exits. */
  readonly #ended: Slot[] = [];
  /** Times of the jobs started within the last cool-down. */
  #starts: number[] = [];
  #stop: AbortSignal | undefined;
  #reconciling = false;
  #again = false;
  #cancelTimer: (() => void) | undefined;
  #fullSince: number | undefined;
  #lastFull: { since: number; until: number } | undefined;
  #idleTarget: number;

  constructor(private readonly options: ElasticPoolOptions) {
    this.name = options.name;
    this.#settings = options.settings;
    this.#clock = options.clock ?? systemClock;
    this.#log = options.logger.child({ pool: options.name });
    this.#idleTarget = options.settings.idle;
  }

  get settings(): PoolCapacitySettings {
    return this.#settings;
  }

  /** The slots that exist now, by index. */
  slots(): Slot[] {
    return [...this.#tracked.keys(), ...this.#ended].sort((a, b) => a.index - b.index);
  }

  capacity(): PoolCapacity {
    let busy = 0;
    let idle = 0;
    let starting = 0;
    let prepared = 0;
    let registering = 0;
    for (const entry of this.#tracked.values()) {
      const state = entry.slot.state;
      if (state === 'stopped') continue;
      if (entry.slot.busy) busy += 1;
      else if (entry.granted) {
        if (state === 'idle') idle += 1;
        else starting += 1;
      } else if (state === 'prepared') prepared += 1;
      else registering += 1;
    }
    return { pool: this.name, busy, idle, starting, prepared, registering, idleTarget: this.#idleTarget, preparedTarget: this.#settings.prepared, max: this.#settings.max };
  }

  /** Runs until `stop` aborts and every slot has ended. */
  async run(stop: AbortSignal): Promise<void> {
    this.#stop = stop;
    this.#reconcile();
    await new Promise<void>((resolve) => {
      if (stop.aborted) resolve();
      else stop.addEventListener('abort', () => resolve(), { once: true });
    });
    this.#cancelTimer?.();
    while (this.#running.size > 0) await Promise.allSettled([...this.#running]);
  }

  /** The gate of this pool's slots. */
  readonly gate: SlotGate = {
    shouldRegister: (slot) => {
      const entry = this.#tracked.get(slot);
      if (!entry) return false;
      entry.granted = false;
      // Asked as its listener has ended: its job is over, so it no longer counts as busy.
      const { desiredTotal } = this.#targets(slot);
      return this.#tracked.size + this.#creating.size <= desiredTotal;
    },
    waitForStart: (slot, stop) =>
      new Promise<void>((resolve) => {
        const entry = this.#tracked.get(slot);
        if (!entry || stop.aborted) return resolve();
        const onAbort = () => {
          entry.grant = undefined;
          resolve();
        };
        entry.preparedSince = this.#clock.now();
        entry.grant = () => {
          stop.removeEventListener('abort', onAbort);
          entry.grant = undefined;
          entry.granted = true;
          entry.preparedSince = undefined;
          resolve();
        };
        stop.addEventListener('abort', onAbort, { once: true });
        this.#reconcile();
      }),
  };

  /** Every state change of one of its slots (Slot's onChange). */
  slotChanged(slot: Slot): void {
    const entry = this.#tracked.get(slot);
    if (!entry) return;
    const now = this.#clock.now();
    const state = slot.state;
    if (state === entry.lastState) return;
    const wasBusy = entry.lastState === 'busy' || entry.lastState === 'draining';
    if (slot.busy && !wasBusy) this.#jobStarted(entry, now);
    entry.idleSince = state === 'idle' ? now : undefined;
    entry.lastState = state;
    this.#reconcile();
  }

  #jobStarted(entry: Tracked, now: number): void {
    this.#starts.push(now);
    const full = this.#lastFull;
    // A listener that started after the pool was full and took a job at once: that job was
    // queued, at the longest since the pool filled up (the job message carries no queue time).
    if (full && entry.idleSince !== undefined && entry.idleSince >= full.until && now - entry.idleSince <= PICKED_AT_ONCE_MS) {
      this.options.metrics.jobWaitAtMax.observe({ pool: this.name }, (now - full.since) / 1000);
    }
  }

  #targets(done?: Slot): { busy: number; desiredAvailable: number; desiredTotal: number } {
    const { idle, max, prepared, coolDownMs } = this.#settings;
    const now = this.#clock.now();
    this.#starts = this.#starts.filter((at) => now - at < coolDownMs);
    let busy = 0;
    for (const entry of this.#tracked.values()) if (entry.slot.busy && entry.slot !== done) busy += 1;
    const desiredAvailable = Math.max(0, Math.min(idle + this.#starts.length, max - busy));
    this.#idleTarget = desiredAvailable;
    return { busy, desiredAvailable, desiredTotal: Math.min(max, busy + desiredAvailable + prepared) };
  }

  #reconcile(): void {
    if (this.#reconciling) {
      this.#again = true;
      return;
    }
    this.#reconciling = true;
    try {
      do {
        this.#again = false;
        this.#step();
      } while (this.#again);
    } finally {
      this.#reconciling = false;
    }
  }

  #step(): void {
    const stop = this.#stop;
    if (!stop || stop.aborted) return;
    const now = this.#clock.now();
    const { coolDownMs, max, prepared: preparedTarget } = this.#settings;
    const { busy, desiredAvailable, desiredTotal } = this.#targets();
    const entries = [...this.#tracked.values()].filter((entry) => entry.slot.state !== 'stopped' && !entry.slot.retiring);
    let available = entries.filter((entry) => entry.granted && !entry.slot.busy).length;

    // Start listeners on prepared registrations, oldest first.
    const waiting = entries.filter((entry) => entry.grant !== undefined).sort((a, b) => (a.preparedSince ?? 0) - (b.preparedSince ?? 0));
    for (const entry of waiting) {
      if (available >= desiredAvailable) break;
      entry.grant?.();
      available += 1;
    }

    // More slots (each obtains a registration; GitHub's write rate paces them).
    for (let total = this.#tracked.size + this.#creating.size; total < desiredTotal; total++) {
      const index = this.#freeIndex();
      if (index === undefined) break;
      this.#create(index, stop);
    }

    // Idle listeners above the target, idle for the whole cool-down: longest idle first.
    let surplus = available - desiredAvailable;
    const idle = entries.filter((entry) => entry.granted && entry.slot.state === 'idle' && entry.idleSince !== undefined).sort((a, b) => (a.idleSince ?? 0) - (b.idleSince ?? 0));
    for (const entry of idle) {
      if (surplus <= 0) break;
      if (now - (entry.idleSince ?? now) < coolDownMs) break;
      surplus -= 1;
      void entry.slot.retire('idle-above-target');
    }

    // Prepared registrations beyond what may still start, and old ones (renewed).
    const keep = Math.max(0, Math.min(preparedTarget, max - busy - desiredAvailable));
    const held = entries.filter((entry) => entry.grant !== undefined && entry.slot.state === 'prepared').sort((a, b) => (a.preparedSince ?? 0) - (b.preparedSince ?? 0));
    let extra = held.length - keep;
    for (const entry of held) {
      const age = now - (entry.preparedSince ?? now);
      if (age >= PREPARED_MAX_AGE_MS) void entry.slot.retire('prepared-expired');
      else if (extra > 0 && age >= coolDownMs) {
        extra -= 1;
        void entry.slot.retire('prepared-surplus');
      }
    }

    this.#trackFull(busy, now);
    this.#schedule(now, entries, desiredAvailable, available);
  }

  #trackFull(busy: number, now: number): void {
    const full = busy >= this.#settings.max;
    if (full && this.#fullSince === undefined) {
      this.#fullSince = now;
      this.#log.info({ event: 'mux.pool-at-max', max: this.#settings.max });
    } else if (!full && this.#fullSince !== undefined) {
      this.options.metrics.poolAtMaxSeconds.inc({ pool: this.name }, (now - this.#fullSince) / 1000);
      this.#lastFull = { since: this.#fullSince, until: now };
      this.#fullSince = undefined;
    }
  }

  /** Wakes the pool when the next cool-down ends (the next decision time-alone can change). */
  #schedule(now: number, entries: Tracked[], desiredAvailable: number, available: number): void {
    this.#cancelTimer?.();
    this.#cancelTimer = undefined;
    const { coolDownMs } = this.#settings;
    const due: number[] = [];
    const oldestStart = this.#starts[0];
    if (oldestStart !== undefined) due.push(oldestStart + coolDownMs);
    if (available > desiredAvailable) for (const entry of entries) if (entry.slot.state === 'idle' && entry.idleSince !== undefined) due.push(entry.idleSince + coolDownMs);
    for (const entry of entries) if (entry.grant !== undefined && entry.preparedSince !== undefined) due.push(entry.preparedSince + Math.min(coolDownMs, PREPARED_MAX_AGE_MS), entry.preparedSince + PREPARED_MAX_AGE_MS);
    const next = due.filter((at) => at > now).reduce((soonest, at) => Math.min(soonest, at), Number.POSITIVE_INFINITY);
    if (next === Number.POSITIVE_INFINITY) return;
    this.#cancelTimer = this.#clock.setTimer(() => this.#reconcile(), next - now);
  }

  #freeIndex(): number | undefined {
    const used = new Set([...this.#tracked.keys()].map((slot) => slot.index));
    for (let index = 0; index < this.#settings.max; index++) if (!used.has(index) && !this.#creating.has(index)) return index;
    return undefined;
  }

  #create(index: number, stop: AbortSignal): void {
    this.#creating.add(index);
    const running = (async () => {
      let slot: Slot;
      try {
        slot = await this.options.createSlot(index, this.gate);
      } finally {
        this.#creating.delete(index);
      }
      if (stop.aborted) return;
      this.#tracked.set(slot, { slot, granted: false, lastState: slot.state });
      try {
        await slot.run(stop);
      } finally {
        this.#tracked.delete(slot);
        if (stop.aborted) this.#ended.push(slot);
        this.#reconcile();
      }
    })().catch((error: unknown) => {
      // The slot directory could not be made (disk, permissions): log; the next change retries.
      this.#log.error({ event: 'mux.slot-create-failed', index, error: error instanceof Error ? error.message : String(error) });
    });
    this.#running.add(running);
    void running.finally(() => this.#running.delete(running));
  }
}
