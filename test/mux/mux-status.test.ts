/**
 * `cbactions status`, `/metrics` and `/healthz` of a running mux; here with the
 * registration-token flow (`Runner.Listener configure`) on an organization, a named
 * runner group, and stale registrations of an earlier life of the host.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runnerName } from '../../src/mux/naming.js';
import { startFakeGitHub, type FakeGitHub } from '../support/fake-github.js';
import { CBACTIONS_BIN } from '../support/runner-root.js';
import { eventsNamed, killEverything, makeMuxRunnerRoot, muxConfig, namedJob, PRELOAD_SO, startMux, waitFor, writeConfig } from './helpers.js';

function cbactions(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [CBACTIONS_BIN, ...args], { encoding: 'utf8', timeout: 20_000 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('cbactions mux: status, metrics, token registration', () => {
  let fake: FakeGitHub | undefined;
  afterEach(async () => {
    await killEverything([fake]);
    await fake?.stop();
    fake = undefined;
  });

  it('shows pools, slots, states, jobs and counters, registering with tokens through Runner.Listener configure', async () => {
    fake = await startFakeGitHub({ tokens: ['ghp_fake_test_token'], runnerGroups: { 'orgs/octo': [{ id: 1, name: 'Default' }, { id: 7, name: 'CodeBuild' }] } });
    const github = fake;
    // Left by an earlier life of this host: the offline one goes, the online one and a stranger stay.
    const staleName = runnerName({ prefix: 'cbt', hostname: hostname(), pool: 'web', slot: 0, suffix: 'old000' });
    const stale = github.addRunner({ name: staleName, scope: 'orgs/octo', status: 'offline' });
    const live = github.addRunner({ name: runnerName({ prefix: 'cbt', hostname: hostname(), pool: 'web', slot: 1, suffix: 'live00' }), scope: 'orgs/octo', status: 'online' });
    const stranger = github.addRunner({ name: 'someone-elses-runner', scope: 'orgs/octo', status: 'offline' });
    // The first token request fails: one registration error, then a retry after backoff.
    github.addFault({ method: 'POST', path: '/registration-token$', status: 422, count: 1 });

    const dir = mkdtempSync(join(tmpdir(), 'mux-status-'));
    const config = muxConfig({
      fake: github,
      runnerRoot: makeMuxRunnerRoot(join(dir, 'runner')),
      stateDir: join(dir, 'state'),
      scope: { organization: 'octo' },
      registration: 'token',
      github: { runnerGroup: 'CodeBuild' },
      pools: [{ name: 'web', labels: ['web'], slots: 2 }],
      mux: { isolation: 'preload', preloadPath: PRELOAD_SO },
    });
    const mux = await startMux(writeConfig(dir, config));
    expect(github.deleted.map((entry) => entry.runner.id)).toEqual([stale.id]);
    expect(github.runners.has(live.id) && github.runners.has(stranger.id)).toBe(true);

    await waitFor('two configured runners polling', () => [...github.runners.values()].filter((runner) => runner.createdBy === 'configure' && runner.lastPollDisableUpdate === true).length === 2);
    for (const runner of [...github.runners.values()].filter((candidate) => candidate.createdBy === 'configure')) {
      expect(runner).toMatchObject({ runnerGroupId: 7, ephemeral: true, labels: ['self-hosted', 'Linux', 'X64', 'web'] });
    }
    expect(eventsNamed(mux.logs, 'mux.registered').every((record) => record.flow === 'token')).toBe(true);
    // The registration token never reaches the logs.
    const tokens = [...github.registrationTokens.keys()];
    expect(tokens.length).toBeGreaterThanOrEqual(2);
    const logText = mux.logs.map((record) => JSON.stringify(record)).join('\n');
    for (const token of tokens) expect(logText).not.toContain(token);

    // Long enough to stay busy through two CLI cold starts and a scrape on a loaded machine.
    const job = github.queueJob(['web'], namedJob('status job', { action: 'sleep', seconds: 12 }));
    await waitFor('a busy slot', async () => (await mux.status()).slots.some((slot) => slot.state === 'busy'));

    const table = cbactions(['status', '--url', mux.statusUrl]);
    expect(table.status).toBe(0);
    expect(table.stdout).toMatch(/^SLOT\s+STATE\s+RUNNER\s+JOB\s+BUILD\s+RESTARTS\s+LAST EXIT$/m);
    expect(table.stdout).toMatch(/^web-\d\s+busy\s+cbt-\S+-web-\d-[0-9a-z]{6}\s+status job\s+-\s+0\s+-$/m);
    expect(table.stdout).toMatch(/^web-\d\s+idle\s+cbt-\S+-web-\d-[0-9a-z]{6}\s+-\s+-\s+0\s+-$/m);
    expect(table.stdout).toMatch(/^web\s+web\s+2\s+1\s+1\s+0\s+0\/0\s+1\s+2\s+running$/m);
    expect(table.stdout).toContain('isolation preload');
    expect(table.stdout).toContain('registration token');
    const json = JSON.parse(cbactions(['status', '--url', mux.statusUrl, '--json']).stdout) as { slots: { state: string; job: string | null }[] };
    expect(json.slots.find((slot) => slot.state === 'busy')?.job).toBe('status job');

    const busyMetrics = await (await fetch(`${mux.statusUrl}/metrics`)).text();
    expect(busyMetrics).toContain('cbactions_mux_slots{pool="web",state="busy"} 1');
    expect(busyMetrics).toContain('cbactions_mux_slots{pool="web",state="idle"} 1');
    expect(busyMetrics).toContain('cbactions_mux_jobs_started_total{pool="web"} 1');
    expect(busyMetrics).toContain('cbactions_mux_registration_errors_total{pool="web"} 1');

    await waitFor('the job to finish', () => job.status === 'completed', 30_000);
    await waitFor('both slots idle again', async () => (await mux.status()).slots.every((slot) => slot.state === 'idle' && slot.runnerName !== null));
    const metrics = await (await fetch(`${mux.statusUrl}/metrics`)).text();
    expect(metrics).toContain('cbactions_mux_jobs_finished_total{pool="web",result="Succeeded"} 1');
    expect(metrics).toContain('cbactions_mux_listener_restarts_total{pool="web",exit_code="0"} 1');
    expect(metrics).toContain('cbactions_mux_slots{pool="web",state="idle"} 2');
    expect(metrics).toContain('cbactions_mux_task_protection_enabled 0');
    const healthz = await fetch(`${mux.statusUrl}/healthz`);
    expect([healthz.status, await healthz.text()]).toEqual([200, 'ok\n']);
    expect((await fetch(`${mux.statusUrl}/nope`)).status).toBe(404);

    mux.kill('SIGTERM');
    expect((await mux.exited).code).toBe(0);
    // Ours are gone; the online one of "another life" and the stranger were never touched.
    expect([...github.runners.values()].map((runner) => runner.id).sort()).toEqual([live.id, stranger.id].sort());
  });

  it('`cbactions status` says when no mux answers', () => {
    const result = cbactions(['status', '--url', 'http://127.0.0.1:9']);
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/^cbactions status: cannot read http:\/\/127\.0\.0\.1:9\/status: .*is the mux running\?/);
  });
});
