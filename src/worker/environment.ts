// Type-only: the name is checked against the watcher's at compile time, and `--help` loads no zod.
import type { WATCHER_SOCKET_VARIABLE } from '../watcher/protocol.js';

/**
 * Environment variables `cbactions worker` reads, all set by the mux for its listeners.
 * Kept apart from main.ts (no SDK imports) so `cbactions worker --help` can list them.
 */
export const WorkerEnv = {
  Config: 'CBACTIONS_CONFIG',
  Pool: 'CBACTIONS_POOL',
  RunnerRoot: 'CBACTIONS_RUNNER_ROOT',
  SlotDir: 'CBACTIONS_PRELOAD_SLOT_DIR',
  Log: 'CBACTIONS_WORKER_LOG',
  CancelGrace: 'CBACTIONS_CANCEL_GRACE_SECONDS',
  RunnerVersion: 'CBACTIONS_RUNNER_VERSION',
  Slot: 'CBACTIONS_SLOT',
  WatcherSocket: 'CBACTIONS_WATCHER_SOCKET' satisfies typeof WATCHER_SOCKET_VARIABLE,
  MuxInstance: 'CBACTIONS_MUX_INSTANCE',
  LeaseRenew: 'CBACTIONS_LEASE_RENEW_SECONDS',
  LeaseTtl: 'CBACTIONS_LEASE_TTL_SECONDS',
} as const;

type WorkerVariable = (typeof WorkerEnv)[keyof typeof WorkerEnv] | 'AWS_REGION';

/** One line per variable the worker reads, for its `--help` and checked against the README. */
export const WORKER_ENVIRONMENT: Readonly<Record<WorkerVariable, string>> = {
  CBACTIONS_CONFIG: 'the config file (required)',
  CBACTIONS_POOL: 'the pool whose build settings the job gets (optional when the config has one pool)',
  CBACTIONS_SLOT: "the slot id (<pool>-<n>), told to the mux's build watcher",
  CBACTIONS_RUNNER_ROOT: "the slot's runner installation (default: the parent of the working directory)",
  CBACTIONS_PRELOAD_SLOT_DIR: "where the slot's .runner file is (preload isolation; default: the runner root)",
  CBACTIONS_WORKER_LOG: 'JSON log file (default: <runner root>/_diag/cbactions-worker-<time>-<pid>.log); never stderr',
  CBACTIONS_WATCHER_SOCKET: "the mux's shared build watcher; without it the worker polls CodeBuild itself",
  CBACTIONS_RUNNER_VERSION: 'the runner version, for builds whose image must install it',
  CBACTIONS_CANCEL_GRACE_SECONDS: 'after a cancel, seconds before StopBuild (default 30, at most 40)',
  CBACTIONS_MUX_INSTANCE: "the mux's name (ECS task ARN, else <host>:<stateDir>), put on every build so a next life or a person can find it",
  CBACTIONS_LEASE_RENEW_SECONDS: 'how often the job lease is renewed (default 60)',
  CBACTIONS_LEASE_TTL_SECONDS: 'how long each renewal of the job lease is valid (default 300, at least twice the renewal interval)',
  AWS_REGION: 'region when the config has no codebuild.region (the AWS SDK reads its other variables, e.g. AWS_ENDPOINT_URL_CODEBUILD)',
};
