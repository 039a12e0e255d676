/** What `/status` returns and `cbactions status` prints. */
/**
 * `prepared`: registered, listener not started (offline: GitHub assigns it nothing);
 * `starting`: listener started, not yet "Listening for Jobs".
 */
export const SLOT_STATES = ['registering', 'prepared', 'starting', 'idle', 'busy', 'backing-off', 'stopped', 'draining'] as const;
export type SlotState = (typeof SLOT_STATES)[number];

export interface SlotStatus {
  /** `<pool>-<index>`; also the listener's CBACTIONS_SLOT. */
  id: string;
  pool: string;
  index: number;
  state: SlotState;
  /** ISO time the slot entered `state`. */
  since: string;
  runnerName: string | null;
  runnerId: number | null;
  /** The listener's "Running job: <name>" while a job runs. */
  job: string | null;
  /** CodeBuild build running the job, as fed by `setSlotBuild`. */
  buildId: string | null;
  /** Listener exits this slot has handled (each followed by a restart, a re-registration or a stop). */
  restarts: number;
  lastExit: { code: number | null; signal: string | null; at: string } | null;
  listenerPid: number | null;
  /** While backing off: the delay being waited. */
  backoffMs: number | null;
}

export interface PoolStatus {
  name: string;
  labels: string[];
  /** Slots that exist now (listeners and prepared registrations). */
  slots: number;
  stopped: { reason: string; at: string } | null;
  /** Live counts and targets (elastic-pool.ts PoolCapacity, without the pool name). */
  capacity?: { busy: number; idle: number; starting: number; prepared: number; registering: number; idleTarget: number; preparedTarget: number; max: number };
  coolDownSeconds?: number;
}

export interface MuxStatus {
  host: string;
  startedAt: string;
  draining: boolean;
  isolation: { kind: string; reason: string };
  registration: 'jit' | 'token';
  taskProtection: { available: boolean; enabled: boolean };
  pools: PoolStatus[];
  slots: SlotStatus[];
}
