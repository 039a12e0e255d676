/** The mux's choice between preload.so and per-slot hard-link roots, through the built binary. */
import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startFakeGitHub, type FakeGitHub } from '../support/fake-github.js';
import { killEverything, makeMuxRunnerRoot, muxConfig, namedJob, PRELOAD_SO, startMux, waitFor, writeConfig } from './helpers.js';

describe('cbactions mux: isolation', () => {
  let fake: FakeGitHub | undefined;
  afterEach(async () => {
    await killEverything([fake]);
    await fake?.stop();
    fake = undefined;
  });

  async function setup(mux: Parameters<typeof muxConfig>[0]['mux']) {
    fake = await startFakeGitHub({ tokens: ['ghp_fake_test_token'] });
    const dir = mkdtempSync(join(tmpdir(), 'mux-isolation-'));
    const runnerRoot = makeMuxRunnerRoot(join(dir, 'runner'));
    const stateDir = join(dir, 'state');
    const configPath = writeConfig(dir, muxConfig({ fake, runnerRoot, stateDir, pools: [{ name: 'iso', labels: ['iso'], slots: 2 }], mux }));
    return { dir, runnerRoot, stateDir, configPath };
  }

  async function runOneJob(name: string) {
    const job = fake?.queueJob(['iso'], namedJob(name));
    await waitFor(`job ${name}`, () => job?.status === 'completed', 30_000);
    return job;
  }

  it('hardlink (forced): each slot runs in its own root of hard links, the shared root stays clean', async () => {
    const { runnerRoot, stateDir, configPath } = await setup({ isolation: 'hardlink' });
    const mux = await startMux(configPath);
    expect(mux.logs.find((record) => record.event === 'mux.isolation-chosen')).toMatchObject({ isolation: 'hardlink', reason: 'mux.isolation is "hardlink"' });
    // No probe ran: nothing under the probe's work directory.
    expect(existsSync(join(stateDir, 'probe'))).toBe(false);
    await waitFor('two polling runners', () => [...(fake?.runners.values() ?? [])].filter((runner) => runner.lastPollDisableUpdate === true).length === 2);
    for (const slot of ['iso-0', 'iso-1']) {
      const slotRoot = join(stateDir, 'roots', slot);
      expect(statSync(join(slotRoot, 'bin', 'Runner.Listener')).ino).toBe(statSync(join(runnerRoot, 'bin', 'Runner.Listener')).ino);
      expect(statSync(join(slotRoot, 'bin', 'Runner.Listener')).nlink).toBeGreaterThanOrEqual(3);
      expect(JSON.parse(readFileSync(join(slotRoot, '.runner'), 'utf8'))).toMatchObject({ disableUpdate: true, ephemeral: true });
      // The listener (and so the worker) is told its own root, and gets no preload variables.
      const evidence = readdirSync(join(slotRoot, '_diag')).filter((name) => name.startsWith('fake-listener-'));
      expect(evidence).toHaveLength(1);
      const started = JSON.parse(readFileSync(join(slotRoot, '_diag', evidence[0] as string), 'utf8')) as { cwd: string; env: Record<string, string | undefined> };
      expect(started.cwd).toBe(slotRoot);
      expect(started.env).toMatchObject({ CBACTIONS_RUNNER_ROOT: slotRoot, CBACTIONS_SLOT: slot });
      expect([started.env.CBACTIONS_PRELOAD_ROOT, started.env.CBACTIONS_PRELOAD_SLOT_DIR, started.env.LD_PRELOAD]).toEqual([undefined, undefined, undefined]);
    }
    expect(existsSync(join(runnerRoot, '.runner'))).toBe(false);
    const job = await runOneJob('hardlink job');
    expect(job?.result).toBe('Succeeded');
    // The worker ran in the slot's root (its evidence lands in <slot root>/_diag). GitHub sees
    // the job complete before the listener exits, so wait for the mux to record that exit.
    const slot = await waitFor('the slot that ran the job to record its listener exit', async () => (await mux.status()).slots.find((candidate) => candidate.lastExit?.code === 0));
    expect(existsSync(join(stateDir, 'roots', slot.id, '_diag', 'fake-worker-hardlink_job.json'))).toBe(true);
    mux.kill('SIGTERM');
    expect((await mux.exited).code).toBe(0);
    expect(fake?.runners.size).toBe(0);
  });

  it('auto with a broken preload.so: falls back to hard links and says why', async () => {
    const { dir, configPath } = await setup({ isolation: 'auto', preloadPath: join(tmpdir(), 'no-such-dir', 'preload.so') });
    const mux = await startMux(configPath);
    const chosen = mux.logs.find((record) => record.event === 'mux.isolation-chosen');
    expect(chosen).toMatchObject({ isolation: 'hardlink', level: 'warn' });
    expect(String(chosen?.reason)).toMatch(/^falling back to per-slot hard-link roots: preload library .*no-such-dir\/preload\.so is not usable/);
    expect((await mux.status()).isolation.kind).toBe('hardlink');
    expect((await runOneJob('fallback job'))?.result).toBe('Succeeded');
    mux.kill('SIGTERM');
    expect((await mux.exited).code).toBe(0);
    expect(existsSync(join(dir, 'state', 'roots', 'iso-0'))).toBe(true);
  });

  it('auto with a working preload.so: probes it and uses it', async () => {
    const { stateDir, configPath } = await setup({ isolation: 'auto', preloadPath: PRELOAD_SO });
    const mux = await startMux(configPath);
    expect(mux.logs.find((record) => record.event === 'mux.isolation-chosen')).toMatchObject({ isolation: 'preload', level: 'info' });
    expect((await runOneJob('preload job'))?.result).toBe('Succeeded');
    expect(existsSync(join(stateDir, 'roots'))).toBe(false);
    mux.kill('SIGTERM');
    expect((await mux.exited).code).toBe(0);
  });

  it('preload (forced) with a broken preload.so: refuses to start, naming the library', async () => {
    const { configPath } = await setup({ isolation: 'preload', preloadPath: '/nonexistent/preload.so' });
    await expect(startMux(configPath, {}, 15_000)).rejects.toThrow(/mux exited \(1\) before it started.*mux\.isolation is \\"preload\\" but preload library \/nonexistent\/preload\.so is not usable/s);
    expect(fake?.runners.size).toBe(0);
  });
});
