import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  cleanPreviousLife,
  currentProcessIdentity,
  JOURNAL_FILE,
  LOCK_FILE,
  MuxJournal,
  readPreviousJournal,
  StateDirLock,
  type JournalContents,
} from '../../src/mux/previous-life.js';
import type { RunnerRegistry } from '../../src/mux/runner-registry.js';
import { awsError, InMemoryBuilds } from '../support/in-memory-builds.js';
import { captureLogger } from './capture-logger.js';

function stateDir(): string {
  return mkdtempSync(join(tmpdir(), 'mux-previous-life-'));
}

/** The pid of a process that has ended (and was reaped). */
function deadPid(): number {
  const result = spawnSync('/bin/sh', ['-c', 'echo $$']);
  return Number(result.stdout.toString().trim());
}

/** Only deleteRunner is used here; the rest refuses loudly. */
function recordingRegistry(failIds: number[] = []): RunnerRegistry & { deleted: number[] } {
  const deleted: number[] = [];
  const refuse = () => Promise.reject(new Error('not used by this test'));
  return {
    deleted,
    generateJitConfig: refuse,
    createRegistrationToken: refuse,
    listRunners: refuse,
    findRunnerGroup: refuse,
    deleteRunner: async (id) => {
      if (failIds.includes(id)) throw Object.assign(new Error('GitHub said 500'), { code: 'GITHUB_REQUEST_FAILED' });
      deleted.push(id);
      return true;
    },
  };
}

describe('MuxJournal', () => {
  it('keeps registrations and builds on disk at every change, owner-only, whole files only', () => {
    const dir = stateDir();
    const { logger } = captureLogger();
    const journal = new MuxJournal(dir, { instance: 'host-a:/state', ...currentProcessIdentity() }, logger);
    journal.addRegistration({ runnerId: 7, name: 'cbt-host-a-default-0-abc123', slot: 'default-0' });
    journal.addRegistration({ runnerId: 8, name: 'cbt-host-a-default-1-def456', slot: 'default-1' });
    journal.addBuild({ buildId: 'cbactions:1111', slot: 'default-0' });
    journal.removeRegistration(8);
    const read = readPreviousJournal(dir);
    expect(read).toEqual({
      kind: 'found',
      journal: {
        version: 1,
        instance: 'host-a:/state',
        pid: process.pid,
        processStart: expect.stringMatching(/^\d+$/),
        registrations: [{ runnerId: 7, name: 'cbt-host-a-default-0-abc123', slot: 'default-0' }],
        builds: [{ buildId: 'cbactions:1111', slot: 'default-0' }],
      },
    });
    journal.removeBuild('cbactions:1111');
    expect(readPreviousJournal(dir)).toMatchObject({ kind: 'found', journal: { builds: [] } });
    expect(statSync(join(dir, JOURNAL_FILE)).mode & 0o777).toBe(0o600);
    // No temp files are left beside it.
    expect(readdirSync(dir)).toEqual([JOURNAL_FILE]);
  });

  it('drops a slot id from the watcher socket that is not one the mux makes (never a path)', () => {
    const dir = stateDir();
    const journal = new MuxJournal(dir, { instance: 'x', ...currentProcessIdentity() }, captureLogger().logger);
    journal.addBuild({ buildId: 'cbactions:2222', slot: '../../etc' });
    expect(readPreviousJournal(dir)).toMatchObject({ kind: 'found', journal: { builds: [{ buildId: 'cbactions:2222' }] } });
  });

  it('a missing journal is "none"; a corrupt one is a clear reason, never a throw', () => {
    const dir = stateDir();
    expect(readPreviousJournal(dir)).toEqual({ kind: 'none' });
    writeFileSync(join(dir, JOURNAL_FILE), '{"version":1,"inst');
    expect(readPreviousJournal(dir)).toEqual({ kind: 'corrupt', reason: expect.stringContaining('is not JSON') });
    const evil: unknown = { version: 1, instance: 'x', pid: 1, processStart: '1', registrations: [{ runnerId: 1, name: 'r', slot: '../../../home/user' }], builds: [] };
    writeFileSync(join(dir, JOURNAL_FILE), JSON.stringify(evil));
    const corrupt = readPreviousJournal(dir);
    expect(corrupt.kind).toBe('corrupt');
    expect(corrupt.kind === 'corrupt' && corrupt.reason).toContain('registrations.0.slot');
    writeFileSync(join(dir, JOURNAL_FILE), JSON.stringify({ version: 2 }));
    expect(readPreviousJournal(dir).kind).toBe('corrupt');
  });
});

describe('StateDirLock', () => {
  it('refuses a second mux on a state directory whose lock holder lives', () => {
    const dir = stateDir();
    const { logger } = captureLogger();
    const lock = StateDirLock.acquire(dir, currentProcessIdentity(), logger);
    // Another process (any identity but ours) finds this live process holding it.
    expect(() => StateDirLock.acquire(dir, { pid: deadPid(), processStart: '1' }, logger)).toThrow(expect.objectContaining({ code: 'MUX_STATE_DIR_IN_USE' }));
    lock.release();
    expect(existsSync(join(dir, LOCK_FILE))).toBe(false);
  });

  it('takes over the lock of a mux that is gone (dead pid, or a reused pid with another start time, or a torn file)', () => {
    const { logger, records } = captureLogger();
    for (const content of [JSON.stringify({ pid: deadPid(), processStart: '12345' }), JSON.stringify({ pid: process.ppid, processStart: '1' }), '{"pid":']) {
      const dir = stateDir();
      writeFileSync(join(dir, LOCK_FILE), content);
      const lock = StateDirLock.acquire(dir, currentProcessIdentity(), logger);
      expect(JSON.parse(readFileSync(join(dir, LOCK_FILE), 'utf8'))).toEqual(currentProcessIdentity());
      lock.release();
    }
    expect(records.filter((record) => record.event === 'mux.stale-lock-taken')).toHaveLength(3);
  });
});

describe('cleanPreviousLife', () => {
  function journalOf(partial: Partial<JournalContents>): JournalContents {
    return { version: 1, instance: 'old', pid: deadPid(), processStart: '1', registrations: [], builds: [], ...partial };
  }

  it('stops builds still running, leaves ended and unknown ones, deletes registrations and the slots\' registration files', async () => {
    const dir = stateDir();
    const builds = new InMemoryBuilds();
    const running = (await builds.startBuild({ projectName: 'p', idempotencyToken: 'a', environmentVariables: {} })).id;
    const ended = (await builds.startBuild({ projectName: 'p', idempotencyToken: 'b', environmentVariables: {} })).id;
    builds.finish(ended);
    for (const slot of ['default-0', 'default-1']) {
      mkdirSync(join(dir, 'slots', slot), { recursive: true });
      for (const name of ['.runner', '.credentials', '.credentials_rsaparams']) writeFileSync(join(dir, 'slots', slot, name), 'x');
    }
    mkdirSync(join(dir, 'roots', 'default-0'), { recursive: true });
    writeFileSync(join(dir, 'roots', 'default-0', '.credentials_rsaparams'), 'x');
    writeFileSync(join(dir, 'roots', 'default-0', 'config.sh'), 'kept');
    mkdirSync(join(dir, 'slots', 'other-9'), { recursive: true });
    writeFileSync(join(dir, 'slots', 'other-9', '.runner'), 'not in the journal');
    // A slot directory that is a symlink leads elsewhere: never followed.
    const elsewhere = mkdtempSync(join(tmpdir(), 'elsewhere-'));
    writeFileSync(join(elsewhere, '.runner'), 'not ours');
    symlinkSync(elsewhere, join(dir, 'roots', 'default-1'));
    const registry = recordingRegistry();
    const { logger, records } = captureLogger();
    const result = await cleanPreviousLife({
      stateDir: dir,
      journal: journalOf({
        registrations: [
          { runnerId: 11, name: 'cbt-a-default-0-aaaaaa', slot: 'default-0' },
          { runnerId: 12, name: 'cbt-a-default-1-bbbbbb', slot: 'default-1' },
        ],
        builds: [{ buildId: running, slot: 'default-0' }, { buildId: ended, slot: 'default-1' }, { buildId: 'p:unknown' }],
      }),
      registry,
      builds,
      logger,
    });
    expect(result).toEqual({ counts: { registrationsRemoved: 2, buildsStopped: 1, buildsEnded: 2, filesRemoved: 7, failures: 0 }, leftovers: { registrations: [], builds: [] } });
    expect(builds.builds.get(running)?.status).toBe('STOPPED');
    expect(builds.calls.filter((call) => call.op === 'stop').map((call) => call.arg)).toEqual([running]);
    expect(registry.deleted).toEqual([11, 12]);
    expect(readdirSync(join(dir, 'slots', 'default-0'))).toEqual([]);
    expect(readdirSync(join(dir, 'roots', 'default-0'))).toEqual(['config.sh']);
    expect(readFileSync(join(dir, 'slots', 'other-9', '.runner'), 'utf8')).toBe('not in the journal');
    expect(readFileSync(join(elsewhere, '.runner'), 'utf8')).toBe('not ours');
    expect(records.filter((record) => record.event === 'mux.previous-life-build-stopped')).toEqual([expect.objectContaining({ buildId: running })]);
  });

  it('counts what fails (StopBuild denied, GitHub down) and goes on; with BatchGetBuilds failing it tries to stop every build', async () => {
    const builds = new InMemoryBuilds();
    const first = (await builds.startBuild({ projectName: 'p', idempotencyToken: 'a', environmentVariables: {} })).id;
    const second = (await builds.startBuild({ projectName: 'p', idempotencyToken: 'b', environmentVariables: {} })).id;
    builds.failures.push({ op: 'get', error: awsError('ThrottlingException') }, { op: 'stop', error: awsError('AccessDeniedException') });
    const registry = recordingRegistry([21]);
    const result = await cleanPreviousLife({
      stateDir: stateDir(),
      journal: journalOf({ registrations: [{ runnerId: 21, name: 'r1', slot: 'default-0' }, { runnerId: 22, name: 'r2', slot: 'default-1' }], builds: [{ buildId: first }, { buildId: second }] }),
      registry,
      builds,
      logger: captureLogger().logger,
    });
    expect(result).toEqual({
      counts: { registrationsRemoved: 1, buildsStopped: 1, buildsEnded: 0, filesRemoved: 0, failures: 2 },
      // Tried again by this life's exit sweep and kept in its journal for the next.
      leftovers: { registrations: [{ runnerId: 21, name: 'r1', slot: 'default-0' }], builds: [{ buildId: first }] },
    });
    expect(builds.builds.get(second)?.status).toBe('STOPPED');
    expect(registry.deleted).toEqual([22]);
  });
});
