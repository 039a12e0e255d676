import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, describe, expect, it } from 'vitest';
import { startFakeGitHub, type FakeGitHub } from '../support/fake-github.js';
import { CBACTIONS_BIN } from '../support/runner-root.js';
import { makeMuxRunnerRoot, muxConfig, namedJob, PRELOAD_SO, waitFor, writeConfig, type LogRecord } from '../mux/helpers.js';

/**
 * The whole system on one machine, as `cbactions local` runs it: the mux registers runners
 * with (fake) GitHub; a (fake) Runner.Listener gets a job and starts the installed
 * Runner.Worker shim → `cbactions worker` → the in-process local build service (the real
 * SDK's CodeBuild path) → buildspec.yml → `cbactions entrypoint` → the runner's own
 * (fake) Runner.Worker in a runner root of the build's own → the result back to GitHub.
 */
describe.each(['in-process', 'worker'] as const)('cbactions local: every part together (mux.dispatch: %s)', (dispatch) => {
  let fake: FakeGitHub | undefined;
  let child: ChildProcess | undefined;

  afterAll(async () => {
    if (child?.pid !== undefined && child.exitCode === null) process.kill(-child.pid, 'SIGKILL');
    await fake?.stop();
  });

  it('runs jobs through the mux, the shim (and the worker), the local build service and the entrypoint, then drains', { timeout: 150_000 }, async () => {
    fake = await startFakeGitHub({ tokens: ['ghp_local_token'] });
    const dir = mkdtempSync(join(tmpdir(), 'cbactions-local-'));
    const runnerRoot = makeMuxRunnerRoot(join(dir, 'runner'));
    const stateDir = join(dir, 'state');
    const config = muxConfig({ fake, runnerRoot, stateDir: join(dir, 'ignored'), pools: [{ name: 'local', labels: ['cbactions', 'local'], slots: 2 }], mux: { isolation: 'preload', preloadPath: PRELOAD_SO, installWorkerShim: true, dispatch } });
    const configPath = writeConfig(dir, config);

    const logs: LogRecord[] = [];
    child = spawn(process.execPath, [CBACTIONS_BIN, 'local', '--config', configPath, '--state-dir', stateDir], {
      env: { ...process.env, FAKE_GH_TOKEN: 'ghp_local_token', CBACTIONS_LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    const exited = new Promise<number | null>((resolve) => child?.once('exit', (code) => resolve(code)));
    createInterface({ input: child.stderr as NodeJS.ReadableStream }).on('line', (line) => {
      try {
        logs.push(JSON.parse(line) as LogRecord);
      } catch {
        logs.push({ msg: line });
      }
    });

    const dump = () => logs.map((record) => JSON.stringify(record)).join('\n').slice(-20_000);
    await waitFor('two runners polling', () => [...(fake?.runners.values() ?? [])].filter((runner) => runner.lastPollDisableUpdate === true).length === 2, 30_000).catch((error: Error) => {
      throw new Error(`${error.message}; cbactions local logged:\n${dump()}`);
    });
    const socketPath = join(stateDir, 'mux', 'dispatch.sock');
    // mux.dispatch: worker has no dispatch socket: the shims fall back to `cbactions worker`.
    expect(existsSync(socketPath)).toBe(dispatch === 'in-process');
    if (dispatch === 'in-process') {
      // The dispatch socket is the mux's own (0600); garbage on it ends that connection only.
      expect(statSync(socketPath).mode & 0o777).toBe(0o600);
      const garbage = connect(socketPath);
      garbage.on('error', () => {});
      garbage.write(Buffer.from('GET / HTTP/1.1\r\n\r\n'));
      await new Promise((resolveClosed) => garbage.once('close', resolveClosed));
      await waitFor('the mux to log the bad message', () => logs.some((record) => record.event === 'dispatch.bad-message'));
    }
    // The two jobs run at once: each fake worker holds its file in _work/_temp until both run.
    const rendezvousDir = join(dir, 'rendezvous');
    mkdirSync(rendezvousDir);
    const ok = fake.queueJob(['local'], namedJob('local ok', { action: 'rendezvous', rendezvousDir, exitCode: 100 }));
    const failing = fake.queueJob(['local'], namedJob('local fails', { action: 'rendezvous', rendezvousDir, exitCode: 102 }));
    await waitFor('both jobs running in their builds', () => ['local_ok', 'local_fails'].every((jobId) => readdirSync(rendezvousDir).includes(`${jobId}.ready`)), 60_000).catch((error: Error) => {
      throw new Error(`${error.message}; cbactions local logged:\n${dump()}`);
    });
    // While they run, the status endpoint shows both slots busy, each with its build.
    const statusUrl = String(logs.find((record) => record.event === 'mux.started')?.statusUrl);
    const status = (await (await fetch(`${statusUrl}/status`)).json()) as { slots: { state: string; buildId: string | null }[] };
    expect(status.slots.map((slot) => [slot.state, typeof slot.buildId === 'string' && slot.buildId !== ''])).toEqual([
      ['busy', true],
      ['busy', true],
    ]);
    writeFileSync(join(rendezvousDir, 'go'), '');
    await waitFor('both jobs completed', () => ok.status === 'completed' && failing.status === 'completed', 60_000).catch((error: Error) => {
      throw new Error(`${error.message}; cbactions local logged:\n${dump()}`);
    });
    expect(ok).toMatchObject({ result: 'Succeeded', exitCode: 100 });
    expect(failing).toMatchObject({ result: 'Failed', exitCode: 102 });

    // The jobs ran in builds of the local build service, each with the runner's own worker.
    const records = readdirSync(join(stateDir, 'builds', 'builds')).map((uuid) => JSON.parse(readFileSync(join(stateDir, 'builds', 'builds', uuid, 'record.json'), 'utf8')) as { buildStatus: string; exportedEnvironmentVariables: { name: string; value: string }[] });
    expect(records.map((record) => record.exportedEnvironmentVariables.find((variable) => variable.name === 'CBACTIONS_EXIT_CODE')?.value).sort()).toEqual(['100', '102']);
    // Each build had a runner root of its own: neither job saw the other's _work/_temp file.
    const evidence = ['local_ok', 'local_fails'].map((jobId) => JSON.parse(readFileSync(findFile(stateDir, `fake-worker-${jobId}.json`), 'utf8')) as { root: string; tempFiles: string[] });
    expect(evidence[0]?.root).not.toBe(evidence[1]?.root);
    expect(evidence.map((seen) => seen.tempFiles)).toEqual([['local_ok'], ['local_fails']]);
    // The roots went with their builds; the runner's _diag stayed beside each build's log.
    for (const uuid of readdirSync(join(stateDir, 'builds', 'builds'))) {
      expect(readdirSync(join(stateDir, 'builds', 'builds', uuid))).not.toContain('runner');
      expect(readdirSync(join(stateDir, 'builds', 'builds', uuid, 'runner-diag')).filter((name) => name.startsWith('fake-worker-'))).toHaveLength(1);
    }
    // The watcher saw both builds and told the mux which slot ran which.
    // The watcher logs from another process than the one that told GitHub the job ended: wait for it.
    await waitFor('the watcher to log both builds finished', () => logs.filter((record) => record.event === 'worker.finished').length >= 2);
    // In-process, the mux ran both jobs itself (their records are in its log); otherwise two workers told its watcher.
    if (dispatch === 'in-process') {
      expect(logs.filter((record) => record.event === 'worker.build-started' && record.slot !== undefined)).toHaveLength(2);
      expect(logs.filter((record) => record.event === 'watcher.build-tracked')).toHaveLength(0);
      // Each job's timeline became metrics: /metrics histograms and CloudWatch EMF records.
      const metrics = await (await fetch(`${statusUrl}/metrics`)).text();
      expect(metrics).toMatch(/^cbactions_job_start_latency_seconds_count\{pool="local",start="cold"\} 2$/m);
      // Two builds, each billed per started minute.
      const billed = Number(metrics.match(/^cbactions_job_billed_seconds_total\{pool="local"\} (\d+)$/m)?.[1]);
      expect(billed % 60).toBe(0);
      expect(billed).toBeGreaterThanOrEqual(120);
      expect(logs.filter((record) => record.event === 'job.timeline')).toHaveLength(2);
      expect(logs.filter((record) => record.event === 'metrics.emf' && record.Pool === 'local' && typeof record.JobStartLatency === 'number')).toHaveLength(2);
    } else {
      expect(logs.filter((record) => record.event === 'watcher.build-tracked')).toHaveLength(2);
    }
    expect(logs.filter((record) => record.event === 'worker.finished')).toHaveLength(2);
    expect(readdirSync(join(stateDir, 'payloads')).filter((name) => name.endsWith('.sealed'))).toEqual([]);

    process.kill(child.pid as number, 'SIGTERM');
    expect(await exited).toBe(0);
    expect(fake.runners.size).toBe(0);
  });
});

/** The one file called `name` under `dir` (wherever the build kept it). */
function findFile(dir: string, name: string): string {
  const found = (readdirSync(dir, { recursive: true, encoding: 'utf8' }) as string[]).filter((path) => path.split('/').at(-1) === name);
  if (found.length !== 1) throw new Error(`expected one ${name} under ${dir}, found ${found.length}: ${found.join(', ')}`);
  return join(dir, found[0] as string);
}
