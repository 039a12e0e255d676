/**
 * What a mux that died hard (SIGKILL, OOM, a crash of the host process) left behind, and how
 * the next mux on the same state directory finds and removes it.
 *
 * - `mux.lock` (pid + process start time): a live mux is never cleaned up; a second mux on
 *   the same state directory refuses to start.
 * - `mux-journal.json` (atomic writes, 0600): this life's instance id, the registrations it
 *   holds (runner id, name, slot) and the builds its workers started. Written synchronously
 *   at each change, so a SIGKILL leaves the last complete state.
 * - On start, a journal left by a dead mux is read as untrusted input (schema-checked; a
 *   corrupt one is a warning, never a crash), its builds that still run are stopped, its
 *   registrations deleted and its slots' registration files (the runners' private keys)
 *   removed — only under `<stateDir>/slots/<slot>` and `<stateDir>/roots/<slot>`, where the
 *   slot id must look like one the mux makes.
 */
import { closeSync, fsyncSync, lstatSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { z } from 'zod';
import { REDIRECTED_FILE_NAMES } from '../preload/contract.js';
import { awsErrorName } from '../util/aws-errors.js';
import { CbactionsError, describeError } from '../util/errors.js';
import { readProcStat } from '../util/proc.js';
import type { Logger } from '../util/logger.js';
import type { CodeBuildApi } from '../dispatch/codebuild-api.js';
import type { RunnerRegistry } from './runner-registry.js';

export const JOURNAL_FILE = 'mux-journal.json';
export const LOCK_FILE = 'mux.lock';

export const PreviousLifeErrorCode = {
  StateDirInUse: 'MUX_STATE_DIR_IN_USE',
  Lock: 'MUX_STATE_LOCK',
} as const;

/** `<pool>-<index>` as Mux names slots (pool names: src/config/schema.ts). Never a path. */
const SLOT_ID = /^[a-z0-9][a-z0-9-]{0,30}-\d{1,4}$/;
/** Per list; the schema accepts up to 10,000, so a journal this life writes always reads back. */
const MAX_JOURNALED = 5_000;

const journalSchema = z.strictObject({
  version: z.literal(1),
  instance: z.string().max(2048),
  pid: z.number().int().positive(),
  processStart: z.string().regex(/^\d{1,20}$/),
  registrations: z.array(z.strictObject({ runnerId: z.number().int().positive(), name: z.string().min(1).max(200), slot: z.string().regex(SLOT_ID) })).max(10_000),
  builds: z.array(z.strictObject({ buildId: z.string().min(1).max(400), slot: z.string().regex(SLOT_ID).optional() })).max(10_000),
});

export type JournalContents = z.infer<typeof journalSchema>;
export type JournalRegistration = JournalContents['registrations'][number];
export type JournalBuild = JournalContents['builds'][number];

const lockSchema = z.strictObject({ pid: z.number().int().positive(), processStart: z.string().regex(/^\d{1,20}$/) });

/** Who a process is: its pid alone can be reused, pid + start time (clock ticks since boot) cannot. */
export interface ProcessIdentity {
  pid: number;
  processStart: string;
}

/** The process's start time (readProcStat), or undefined when it is gone or a zombie. */
export function processStartTime(pid: number): string | undefined {
  const stat = readProcStat(pid);
  return stat === undefined || stat.state === 'Z' ? undefined : stat.startTime;
}

export function currentProcessIdentity(): ProcessIdentity {
  return { pid: process.pid, processStart: processStartTime(process.pid) ?? '0' };
}

function isAlive(holder: ProcessIdentity, self: ProcessIdentity): boolean {
  if (holder.pid === self.pid && holder.processStart === self.processStart) return false;
  return processStartTime(holder.pid) === holder.processStart;
}

function errno(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | undefined)?.code;
}

/** Temp file beside the target, fsync, rename: a reader (or the next life) sees all of it or none. */
function writeFileAtomically(path: string, text: string): void {
  const temp = `${path}.tmp-${randomBytes(6).toString('hex')}`;
  const fd = openSync(temp, 'wx', 0o600);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    renameSync(temp, path);
  } catch (error) {
    rmSync(temp, { force: true });
    throw error;
  }
}

/** The state directory's lock. Held for the mux's whole life; `release` on a clean exit. */
export class StateDirLock {
  private constructor(
    readonly path: string,
    private readonly self: ProcessIdentity,
  ) {}

  /**
   * Takes `<stateDir>/mux.lock`. A lock whose holder is gone (pid dead or reused) is taken
   * over; one whose holder lives is refused with MUX_STATE_DIR_IN_USE.
   */
  static acquire(stateDir: string, self: ProcessIdentity, logger: Logger): StateDirLock {
    const path = join(stateDir, LOCK_FILE);
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        const fd = openSync(path, 'wx', 0o600);
        try {
          writeSync(fd, `${JSON.stringify(self)}\n`);
          fsyncSync(fd);
        } finally {
          closeSync(fd);
        }
        return new StateDirLock(path, self);
      } catch (error) {
        if (errno(error) !== 'EEXIST') throw new CbactionsError(PreviousLifeErrorCode.Lock, `cannot create the state lock ${path}: ${describeError(error)}`, { cause: error });
      }
      let holder: ProcessIdentity | undefined;
      try {
        const parsed = lockSchema.safeParse(JSON.parse(readFileSync(path, 'utf8')));
        if (parsed.success) holder = parsed.data;
      } catch {
        // Unreadable or not JSON: a lock torn by a crash; nobody can hold it.
      }
      if (holder && isAlive(holder, self)) {
        throw new CbactionsError(
          PreviousLifeErrorCode.StateDirInUse,
          `mux.stateDir ${stateDir} is in use by a running mux (pid ${holder.pid}, ${path}); two muxes must not share a state directory`,
        );
      }
      logger.warn({ event: 'mux.stale-lock-taken', lock: path, previousPid: holder?.pid ?? null }, 'taking over the lock of a mux that is gone');
      rmSync(path, { force: true });
    }
    throw new CbactionsError(PreviousLifeErrorCode.Lock, `could not take the state lock ${path}: another mux keeps creating it`);
  }

  release(): void {
    try {
      const parsed = lockSchema.safeParse(JSON.parse(readFileSync(this.path, 'utf8')));
      if (parsed.success && parsed.data.pid === this.self.pid && parsed.data.processStart === this.self.processStart) rmSync(this.path, { force: true });
    } catch {
      // Gone already.
    }
  }
}

export type PreviousJournal = { kind: 'none' } | { kind: 'corrupt'; reason: string } | { kind: 'found'; journal: JournalContents };

/** The journal a previous life left, checked against the schema. Call only while holding the lock. */
export function readPreviousJournal(stateDir: string): PreviousJournal {
  const path = join(stateDir, JOURNAL_FILE);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if (errno(error) === 'ENOENT') return { kind: 'none' };
    return { kind: 'corrupt', reason: `cannot read ${path}: ${describeError(error)}` };
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { kind: 'corrupt', reason: `${path} is not JSON (${text.length} bytes)` };
  }
  const parsed = journalSchema.safeParse(value);
  if (!parsed.success) {
    const issues = parsed.error.issues.slice(0, 5).map((issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`);
    return { kind: 'corrupt', reason: `${path} does not match the journal format: ${issues.join('; ')}` };
  }
  return { kind: 'found', journal: parsed.data };
}

/** This life's journal: every change is on disk before the call returns. */
export class MuxJournal {
  readonly path: string;
  #contents: JournalContents;
  readonly #log: Logger;
  #warned = false;

  constructor(stateDir: string, identity: { instance: string } & ProcessIdentity, logger: Logger) {
    this.path = join(stateDir, JOURNAL_FILE);
    this.#log = logger;
    this.#contents = { version: 1, instance: identity.instance, pid: identity.pid, processStart: identity.processStart, registrations: [], builds: [] };
    this.#write();
  }

  get contents(): JournalContents {
    return structuredClone(this.#contents);
  }

  addRegistration(registration: JournalRegistration): void {
    this.#contents.registrations = [...this.#contents.registrations.filter((entry) => entry.runnerId !== registration.runnerId), registration].slice(-MAX_JOURNALED);
    this.#write();
  }

  removeRegistration(runnerId: number): void {
    const before = this.#contents.registrations.length;
    this.#contents.registrations = this.#contents.registrations.filter((entry) => entry.runnerId !== runnerId);
    if (this.#contents.registrations.length !== before) this.#write();
  }

  addBuild(build: JournalBuild): void {
    // Untrusted ids from the watcher socket must not make the journal one the next life rejects.
    if (build.buildId.length === 0 || build.buildId.length > 400) return;
    const slot = build.slot !== undefined && SLOT_ID.test(build.slot) ? build.slot : undefined;
    const builds = [...this.#contents.builds.filter((entry) => entry.buildId !== build.buildId), { buildId: build.buildId, ...(slot ? { slot } : {}) }];
    // Bounded (builds whose end the watcher never saw would pile up): the oldest go first, and their lease ends them anyway.
    this.#contents.builds = builds.slice(-MAX_JOURNALED);
    this.#write();
  }

  removeBuild(buildId: string): void {
    const before = this.#contents.builds.length;
    this.#contents.builds = this.#contents.builds.filter((entry) => entry.buildId !== buildId);
    if (this.#contents.builds.length !== before) this.#write();
  }

  #write(): void {
    try {
      writeFileAtomically(this.path, `${JSON.stringify(this.#contents)}\n`);
    } catch (error) {
      // The journal helps the next life clean up; failing to write it must not stop this one.
      if (!this.#warned) this.#log.warn({ event: 'mux.journal-write-failed', path: this.path, error: describeError(error) }, 'cannot write the mux journal');
      this.#warned = true;
    }
  }
}

export interface PreviousLifeCleanup {
  registrationsRemoved: number;
  buildsStopped: number;
  buildsEnded: number;
  filesRemoved: number;
  failures: number;
}

/** What could not be undone: carried into this life's journal, so it is tried again. */
export interface PreviousLifeLeftovers {
  registrations: JournalRegistration[];
  builds: JournalBuild[];
}

export interface CleanPreviousLifeOptions {
  stateDir: string;
  journal: JournalContents;
  registry: RunnerRegistry;
  /** The same CodeBuild client the mux uses; absent in setups without one (in-process tests). */
  builds?: Pick<CodeBuildApi, 'getBuilds' | 'stopBuild'>;
  logger: Logger;
  signal?: AbortSignal;
}

const BATCH = 100;

/**
 * Undoes what a dead mux left: stops its builds still IN_PROGRESS (ended or unknown ones
 * are fine), deletes its registrations (already gone is fine), removes its slots'
 * registration files. Each failure is logged and counted, never thrown.
 */
export async function cleanPreviousLife(options: CleanPreviousLifeOptions): Promise<{ counts: PreviousLifeCleanup; leftovers: PreviousLifeLeftovers }> {
  const { journal, logger, signal } = options;
  const result: PreviousLifeCleanup = { registrationsRemoved: 0, buildsStopped: 0, buildsEnded: 0, filesRemoved: 0, failures: 0 };
  const leftovers: PreviousLifeLeftovers = { registrations: [], builds: [] };
  const slotOf = new Map(journal.builds.map((build) => [build.buildId, build.slot]));
  const leftBuild = (buildId: string) => {
    const slot = slotOf.get(buildId);
    leftovers.builds.push({ buildId, ...(slot ? { slot } : {}) });
  };
  const buildIds = [...new Set(journal.builds.map((build) => build.buildId))];
  if (options.builds && buildIds.length > 0) {
    for (let start = 0; start < buildIds.length; start += BATCH) {
      const ids = buildIds.slice(start, start + BATCH);
      let running: string[];
      try {
        const { builds, notFound } = await options.builds.getBuilds(ids, signal);
        running = builds.filter((build) => !build.complete && build.status === 'IN_PROGRESS').map((build) => build.id);
        result.buildsEnded += builds.length - running.length + notFound.length;
      } catch (error) {
        // Cannot tell which still run: try to stop them all; StopBuild of an ended build only fails.
        logger.warn({ event: 'mux.previous-life-builds-unknown', error: awsErrorName(error) });
        running = ids;
      }
      for (const buildId of running) {
        try {
          await options.builds.stopBuild(buildId, signal);
          result.buildsStopped += 1;
          logger.info({ event: 'mux.previous-life-build-stopped', buildId });
        } catch (error) {
          result.failures += 1;
          leftBuild(buildId);
          logger.warn({ event: 'mux.previous-life-build-stop-failed', buildId, error: awsErrorName(error) });
        }
      }
    }
  } else if (buildIds.length > 0) {
    result.failures += buildIds.length;
    buildIds.forEach(leftBuild);
    logger.warn({ event: 'mux.previous-life-builds-not-stopped', builds: buildIds, reason: 'no CodeBuild client' });
  }
  for (const registration of journal.registrations) {
    try {
      const existed = await options.registry.deleteRunner(registration.runnerId, { signal });
      result.registrationsRemoved += 1;
      logger.info({ event: 'mux.previous-life-registration-removed', runner: registration.name, runnerId: registration.runnerId, existed });
    } catch (error) {
      result.failures += 1;
      // GitHub refuses to delete a runner it still thinks busy: the exit sweep or a next life retries.
      leftovers.registrations.push(registration);
      logger.warn({ event: 'mux.previous-life-registration-remove-failed', runner: registration.name, runnerId: registration.runnerId, error: describeError(error) });
    }
  }
  const slots = new Set([...journal.registrations.map((entry) => entry.slot), ...journal.builds.flatMap((entry) => (entry.slot ? [entry.slot] : []))]);
  for (const slot of slots) {
    // The schema already refused anything but `<pool>-<n>`; check again right where paths are made.
    if (!SLOT_ID.test(slot)) continue;
    for (const dir of [join(options.stateDir, 'slots', slot), join(options.stateDir, 'roots', slot)]) {
      // Only a real directory of ours: a symlink there would lead the deletes elsewhere.
      let isDirectory = false;
      try {
        isDirectory = lstatSync(dir).isDirectory();
      } catch {
        // not there: nothing to remove
      }
      if (!isDirectory) continue;
      for (const name of REDIRECTED_FILE_NAMES) {
        const path = join(dir, name);
        try {
          rmSync(path);
          result.filesRemoved += 1;
        } catch (error) {
          if (errno(error) === 'ENOENT' || errno(error) === 'ENOTDIR') continue;
          result.failures += 1;
          logger.warn({ event: 'mux.previous-life-file-remove-failed', path, error: describeError(error) });
        }
      }
    }
  }
  return { counts: result, leftovers };
}
