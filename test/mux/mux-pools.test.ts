/**
 * Process tests of the built `cbactions mux` against the fake GitHub and the fake
 * Runner.Listener: registration, jobs, re-registration, clean-up, isolation.
 */
import { existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, realpathSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { hostNamePrefix } from '../../src/mux/naming.js';
import { startFakeGitHub, type FakeGitHub } from '../support/fake-github.js';
import { eventsNamed, killEverything, makeMuxRunnerRoot, muxConfig, namedJob, PRELOAD_SO, startMux, waitFor, writeConfig } from './helpers.js';

describe('cbactions mux: pools of real listeners', () => {
  let fake: FakeGitHub | undefined;

  afterEach(async () => {
    await killEverything([fake]);
    await fake?.stop();
    fake = undefined;
  });

  it('registers two pools of three runners, runs jobs on them, re-registers after each, and removes its registrations on exit', async () => {
    fake = await startFakeGitHub({ tokens: ['ghp_fake_test_token'] });
    const dir = mkdtempSync(join(tmpdir(), 'mux-pools-'));
    const runnerRoot = makeMuxRunnerRoot(join(dir, 'runner'));
    const stateDir = join(dir, 'state');
    const pools = [
      { name: 'small', labels: ['cbactions', 'small'], slots: 3 },
      { name: 'large', labels: ['cbactions', 'large', 'arm64'], slots: 3 },
    ];
    const configPath = writeConfig(dir, muxConfig({ fake, runnerRoot, stateDir, pools, mux: { isolation: 'preload', preloadPath: PRELOAD_SO } }));
    // A stray runner input in the mux's environment must not reach the listeners.
    const mux = await startMux(configPath, { ACTIONS_RUNNER_INPUT_JITCONFIG: Buffer.from('{"not":"ours"}').toString('base64') });

    // Six runners, each polling the broker (so the fake listener read its own files).
    const runners = await waitFor('six online runners', () => {
      const online = [...(fake?.runners.values() ?? [])].filter((runner) => runner.lastPollDisableUpdate !== undefined);
      return online.length === 6 ? online : undefined;
    });
    const prefix = hostNamePrefix('cbt', hostname());
    for (const pool of pools) {
      const mine = runners.filter((runner) => runner.name.startsWith(`${prefix}${pool.name}-`));
      expect(mine).toHaveLength(3);
      for (const runner of mine) {
        expect(runner.labels).toEqual(pool.labels);
        expect(runner.name).toMatch(new RegExp(`^${prefix}${pool.name}-[0-2]-[0-9a-z]{6}$`));
        expect(runner.name.length).toBeLessThanOrEqual(64);
        // The JIT .runner had no disableUpdate: the mux put it there before the listener read it.
        expect(runner.lastPollDisableUpdate).toBe(true);
      }
      expect(new Set(mine.map((runner) => runner.name.split('-').at(-2))).size).toBe(3);
    }
    expect(mux.logs.find((record) => record.event === 'mux.isolation-chosen')).toMatchObject({ isolation: 'preload' });

    // Preload: one shared root, every slot's files in its own directory, none in the root.
    expect(existsSync(join(runnerRoot, '.runner'))).toBe(false);
    const slotDirs = readdirSync(join(stateDir, 'slots')).sort();
    expect(slotDirs).toEqual(['large-0', 'large-1', 'large-2', 'small-0', 'small-1', 'small-2']);
    const slotAgentNames = slotDirs.map((slot) => JSON.parse(readFileSync(join(stateDir, 'slots', slot, '.runner'), 'utf8')).agentName as string);
    expect(new Set(slotAgentNames)).toEqual(new Set(runners.map((runner) => runner.name)));
    for (const slot of slotDirs) {
      expect((lstatSync(join(stateDir, 'slots', slot, '.credentials_rsaparams')).mode & 0o777).toString(8)).toBe('600');
    }

    // The listeners' environment: how they were started (recorded by the fake listener).
    const evidence = readdirSync(join(runnerRoot, '_diag'))
      .filter((name) => name.startsWith('fake-listener-'))
      .map((name) => JSON.parse(readFileSync(join(runnerRoot, '_diag', name), 'utf8')) as { argv: string[]; cwd: string; env: Record<string, string | undefined>; envNames: string[] });
    expect(evidence).toHaveLength(6);
    for (const started of evidence) {
      const slot = started.env.CBACTIONS_SLOT as string;
      expect(slotDirs).toContain(slot);
      // Without --jitconfig: the mux wrote the files, the key is not on argv.
      expect(started.argv).toEqual(['run']);
      expect(started.cwd).toBe(realpathSync(runnerRoot));
      expect(started.env).toEqual({
        CBACTIONS_CONFIG: configPath,
        CBACTIONS_RUNNER_ROOT: realpathSync(runnerRoot),
        CBACTIONS_POOL: slot.replace(/-\d+$/, ''),
        CBACTIONS_SLOT: slot,
        CBACTIONS_WORKER_LOG: join(stateDir, 'logs', `${slot}.worker.log`),
        CBACTIONS_PRELOAD_ROOT: realpathSync(runnerRoot),
        CBACTIONS_PRELOAD_SLOT_DIR: join(stateDir, 'slots', slot),
        LD_PRELOAD: PRELOAD_SO,
        RUNNER_ALLOW_RUNASROOT: process.getuid?.() === 0 ? '1' : undefined,
        ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_EXIT_CODE: '1',
      });
      // The variable holding the GitHub token is not passed on.
      expect(started.envNames).not.toContain('FAKE_GH_TOKEN');
      expect(started.envNames).not.toContain('ACTIONS_RUNNER_INPUT_JITCONFIG');
      expect(started.envNames).toContain('PATH');
    }

    // Four jobs per pool: more jobs than slots, so slots must re-register to take them all.
    const jobs = [
      ...[1, 2, 3, 4].map((n) => fake?.queueJob(['small'], namedJob(`small job ${n}`, { action: n === 2 ? 'fail' : 'succeed' }))),
      ...[1, 2, 3, 4].map((n) => fake?.queueJob(['large', 'arm64'], namedJob(`large job ${n}`))),
    ];
    await waitFor('eight completed jobs', () => jobs.every((job) => job?.status === 'completed'), 40_000);
    for (const job of jobs) {
      const pool = job?.labels.includes('small') ? 'small' : 'large';
      expect(job?.runnerName?.startsWith(`${prefix}${pool}-`)).toBe(true);
      expect(job?.result).toBe(job?.displayName === 'small job 2' ? 'Failed' : 'Succeeded');
    }
    // Each runner took at most one job (ephemeral): eight distinct runners.
    expect(new Set(jobs.map((job) => job?.runnerName)).size).toBe(8);
    // Back to six idle registrations after the jobs.
    await waitFor('six idle registrations again', async () => {
      const status = await mux.status();
      return status.slots.every((slot) => slot.state === 'idle') && fake?.runners.size === 6;
    });
    const status = await mux.status();
    expect(status.slots.reduce((sum, slot) => sum + slot.restarts, 0)).toBe(8);
    expect(eventsNamed(mux.logs, 'mux.job-started')).toHaveLength(8);

    mux.kill('SIGTERM');
    expect(await mux.exited).toEqual({ code: 0, signal: null });
    expect(fake.runners.size).toBe(0);
    const removedByMux = fake.deleted.filter((entry) => entry.by === 'api').map((entry) => entry.runner.name);
    expect(removedByMux).toEqual(expect.arrayContaining(runners.filter((runner) => !jobs.some((job) => job?.runnerName === runner.name)).map((runner) => runner.name)));
    // No private key left on disk.
    for (const slot of slotDirs) expect(existsSync(join(stateDir, 'slots', slot, '.credentials_rsaparams'))).toBe(false);
  });
});
