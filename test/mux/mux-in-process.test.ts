/**
 * The Mux class wired in-process (as `cbactions local` or another engineer's code would):
 * the build-id hook, the shim installation, and the exit when every pool has stopped.
 */
import { mkdirSync, mkdtempSync, readFileSync, statSync, existsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { createGitHubClient } from '../../src/mux/github-client.js';
import { Mux } from '../../src/mux/mux.js';
import { currentProcessIdentity, JOURNAL_FILE, MuxJournal, readPreviousJournal } from '../../src/mux/previous-life.js';
import { OctokitRunnerRegistry } from '../../src/mux/octokit-registry.js';
import { formatStatus } from '../../src/mux/status-table.js';
import { probePreload } from '../../src/preload/probe.js';
import { builtPreloadArtifacts } from '../../src/preload/contract.js';
import { installWorkerShim, NATIVE_SHIM_MARKER, SHIM_MARKER } from '../../src/worker/install.js';
import { startFakeGitHub, type FakeGitHub } from '../support/fake-github.js';
import { CBACTIONS_BIN } from '../support/runner-root.js';
import { captureLogger } from './capture-logger.js';
import { makeMuxRunnerRoot, muxConfig, namedJob, PRELOAD_SO, waitFor } from './helpers.js';

const TOKEN = 'ghp_in_process';

describe('Mux in-process', () => {
  let fake: FakeGitHub | undefined;
  let stop: (() => Promise<unknown>) | undefined;
  afterEach(async () => {
    await stop?.();
    stop = undefined;
    await fake?.stop();
    fake = undefined;
  });

  async function start(pools: { name: string; labels: string[]; slots: number }[], mux: Parameters<typeof muxConfig>[0]['mux'] = {}, prepareState?: (stateDir: string) => void) {
    fake = await startFakeGitHub({ tokens: [TOKEN] });
    const dir = mkdtempSync(join(tmpdir(), 'mux-in-process-'));
    const runnerRoot = makeMuxRunnerRoot(join(dir, 'runner'));
    const stateDir = join(dir, 'state');
    prepareState?.(stateDir);
    const config = parseConfig(muxConfig({ fake, runnerRoot, stateDir, pools, mux: { isolation: 'hardlink', ...mux } }));
    const logs = captureLogger();
    const octokit = await createGitHubClient({ url: fake.url, scope: config.github.scope, auth: config.github.auth, secrets: { env: { FAKE_GH_TOKEN: TOKEN } }, logger: logs.logger });
    const instance = new Mux({
      config,
      configPath: join(dir, 'cbactions.json'),
      registry: new OctokitRunnerRegistry(octokit, config.github.scope),
      logger: logs.logger,
      env: { PATH: process.env.PATH },
      secretEnvNames: ['FAKE_GH_TOKEN'],
      hostname: 'in-process-host.example',
      isRoot: false,
      ecsAgentUri: undefined,
      defaultPreloadPath: () => PRELOAD_SO,
      probePreload,
      installWorkerShim: (root) => installWorkerShim(root, process.execPath, CBACTIONS_BIN, builtPreloadArtifacts().workerShimPath),
      ...(prepareState ? { lifecycle: { previous: readPreviousJournal(stateDir), open: () => new MuxJournal(stateDir, { instance: 'in-process', ...currentProcessIdentity() }, logs.logger) } } : {}),
    });
    const controller = new AbortController();
    const done = instance.run(controller.signal);
    stop = async () => {
      controller.abort();
      return done;
    };
    await waitFor('the status endpoint', () => instance.statusUrl);
    return { mux: instance, done, controller, logs, runnerRoot, stateDir };
  }

  it('setSlotBuild: the build id shows on the busy slot and is cleared when its job ends', async () => {
    const { mux, controller, done } = await start([{ name: 'hook', labels: ['hook'], slots: 2 }]);
    const github = fake as FakeGitHub;
    await waitFor('two polling runners', () => [...github.runners.values()].filter((runner) => runner.lastPollDisableUpdate === true).length === 2);
    expect([...github.runners.values()].every((runner) => runner.name.startsWith('cbt-in-process-host-hook-'))).toBe(true);
    const job = github.queueJob(['hook'], namedJob('hooked job', { action: 'sleep', seconds: 2 }));
    const busy = await waitFor('a busy slot', () => mux.status().slots.find((slot) => slot.state === 'busy'));
    const idle = mux.status().slots.find((slot) => slot.state === 'idle');
    expect(mux.setSlotBuild(busy.id, 'cbactions:0123-abcd')).toBe(true);
    expect(mux.setSlotBuild(idle?.id ?? '', 'cbactions:other')).toBe(false);
    expect(mux.setSlotBuild('no-such-slot', 'cbactions:other')).toBe(false);
    const status = mux.status();
    expect(status.slots.find((slot) => slot.id === busy.id)).toMatchObject({ state: 'busy', job: 'hooked job', buildId: 'cbactions:0123-abcd' });
    expect(formatStatus(status)).toMatch(new RegExp(`^${busy.id}\\s+busy\\s+\\S+\\s+hooked job\\s+cbactions:0123-abcd\\s+0\\s+-$`, 'm'));
    await waitFor('the job to finish', () => job.status === 'completed');
    await waitFor('the slot idle with a new registration', () => mux.status().slots.find((slot) => slot.id === busy.id && slot.state === 'idle'));
    expect(mux.status().slots.find((slot) => slot.id === busy.id)?.buildId).toBeNull();
    controller.abort();
    expect(await done).toBe(0);
  });

  it('a corrupt journal left by a previous life is a warning, deletes nothing, and this life journals its registrations', async () => {
    const outside = mkdtempSync(join(tmpdir(), 'mux-outside-'));
    writeFileSync(join(outside, '.runner'), 'not the mux\'s');
    const { controller, done, logs, stateDir } = await start([{ name: 'journal', labels: ['journal'], slots: 2 }], {}, (dir) => {
      mkdirSync(dir, { recursive: true });
      // Valid JSON that tries to walk out of the state directory: refused as a whole.
      writeFileSync(join(dir, JOURNAL_FILE), JSON.stringify({ version: 1, instance: 'x', pid: 1, processStart: '1', registrations: [{ runnerId: 1, name: 'r', slot: `../../../..${outside}` }], builds: [] }));
    });
    const github = fake as FakeGitHub;
    await waitFor('two polling runners', () => [...github.runners.values()].filter((runner) => runner.lastPollDisableUpdate === true).length === 2);
    expect(logs.records.find((record) => record.event === 'mux.previous-life-unreadable')).toMatchObject({ reason: expect.stringContaining('registrations.0.slot') });
    expect(logs.events()).not.toContain('mux.previous-life-cleaned');
    expect(readFileSync(join(outside, '.runner'), 'utf8')).toBe("not the mux's");
    const journaled = readPreviousJournal(stateDir);
    expect(journaled.kind === 'found' && journaled.journal.registrations.map((entry) => [entry.runnerId, entry.slot]).sort()).toEqual(
      [...github.runners.values()].map((runner) => [runner.id, runner.name.includes('-journal-0-') ? 'journal-0' : 'journal-1']).sort(),
    );
    controller.abort();
    expect(await done).toBe(0);
    // A clean drain removed every registration, and the journal says so.
    expect(readPreviousJournal(stateDir)).toMatchObject({ kind: 'found', journal: { registrations: [], builds: [] } });
  });

  it('installs the Runner.Worker shim into the runner root before the slot roots are made', async () => {
    const { controller, done, runnerRoot, stateDir, logs } = await start([{ name: 'shim', labels: ['shim'], slots: 1 }], { installWorkerShim: true });
    await waitFor('the slot root', () => existsSync(join(stateDir, 'roots', 'shim-0', 'bin', 'Runner.Worker')));
    const shim = join(runnerRoot, 'bin', 'Runner.Worker');
    expect(readFileSync(shim, 'latin1')).toContain(NATIVE_SHIM_MARKER);
    expect(readFileSync(`${shim}.fallback`, 'utf8')).toContain(SHIM_MARKER);
    expect(readFileSync(`${shim}.fallback`, 'utf8')).toContain(CBACTIONS_BIN);
    expect(existsSync(`${shim}.orig`)).toBe(true);
    // The slot root has both (the shim finds its fallback next to itself).
    expect(statSync(join(stateDir, 'roots', 'shim-0', 'bin', 'Runner.Worker')).ino).toBe(statSync(shim).ino);
    expect(statSync(join(stateDir, 'roots', 'shim-0', 'bin', 'Runner.Worker.fallback')).ino).toBe(statSync(`${shim}.fallback`).ino);
    expect(logs.records.find((record) => record.event === 'mux.worker-shim-installed')).toMatchObject({ shimPath: shim, keptOriginal: `${shim}.orig` });
    controller.abort();
    expect(await done).toBe(0);
  });

  it('returns 1 once every pool has stopped (an alert nobody can fix from here)', async () => {
    const { done, logs } = await start([{ name: 'old', labels: ['old'], slots: 1 }]);
    const github = fake as FakeGitHub;
    await waitFor('a polling runner', () => [...github.runners.values()].some((runner) => runner.lastPollDisableUpdate === true));
    github.instruct({ kind: 'exit', code: 7, labels: ['old'] });
    expect(await done).toBe(1);
    expect(logs.events()).toContain('mux.all-pools-stopped');
    expect(github.runners.size).toBe(0);
  });
});
