/**
 * The fake Runner.Listener on its own, against the fake GitHub: JIT files, preload.so
 * redirection of real libc calls, configure, and the exit codes the mux tests rely on.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { preloadEnvironment } from '../../src/preload/contract.js';
import { startFakeGitHub, type FakeGitHub } from '../support/fake-github.js';
import { makeMuxRunnerRoot, namedJob, PRELOAD_SO, waitFor } from './helpers.js';

const TOKEN = 'ghp_listener_test';

interface Started {
  child: ChildProcess;
  stdout: string[];
  stderr: string[];
  exited: Promise<number | null>;
}

const children = new Set<ChildProcess>();

function startListener(root: string, args: string[], env: NodeJS.ProcessEnv = {}): Started {
  const child = spawn(join(root, 'bin', 'Runner.Listener'), args, { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  children.add(child);
  const stdout: string[] = [];
  const stderr: string[] = [];
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => stdout.push(...chunk.split('\n').filter(Boolean)));
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => stderr.push(...chunk.split('\n').filter(Boolean)));
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  void exited.then(() => children.delete(child));
  return { child, stdout, stderr, exited };
}

describe('fake Runner.Listener', () => {
  let fake: FakeGitHub | undefined;
  afterEach(async () => {
    for (const child of children) {
      try {
        process.kill(-(child.pid as number), 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    children.clear();
    await fake?.stop();
    fake = undefined;
  });

  async function jitConfig(name: string, labels = ['fake']): Promise<string> {
    fake ??= await startFakeGitHub({ tokens: [TOKEN] });
    const response = await fetch(`${fake.apiUrl}/repos/octo/repo/actions/runners/generate-jitconfig`, {
      method: 'POST',
      headers: { authorization: `token ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name, labels, runner_group_id: 1, work_folder: '_work' }),
    });
    expect(response.status).toBe(201);
    return ((await response.json()) as { encoded_jit_config: string }).encoded_jit_config;
  }

  it('six listeners sharing ONE root under preload.so each see only their own files, through real libc calls', async () => {
    const root = makeMuxRunnerRoot();
    const slots = join(mkdtempSync(join(tmpdir(), 'fake-listener-slots-')), 'slots');
    const listeners: Started[] = [];
    for (let i = 0; i < 6; i++) {
      const slotDir = join(slots, `slot-${i}`);
      mkdirSync(slotDir, { recursive: true });
      const jit = await jitConfig(`preload-runner-${i}`, ['fake', `slot-${i}`]);
      listeners.push(startListener(root, ['run', '--jitconfig', jit], preloadEnvironment({ preloadPath: PRELOAD_SO, runnerRoot: root, slotDir })));
    }
    // Each one authenticated to the broker with the credentials of its own registration.
    await waitFor('six polling runners', () => [...(fake?.runners.values() ?? [])].filter((runner) => runner.lastPollDisableUpdate !== undefined).length === 6);
    expect(existsSync(join(root, '.runner'))).toBe(false);
    expect(existsSync(join(root, '.credentials'))).toBe(false);
    for (let i = 0; i < 6; i++) {
      const slotDir = join(slots, `slot-${i}`);
      expect(readdirSync(slotDir).sort()).toEqual(['.credentials', '.credentials_rsaparams', '.runner']);
      expect(JSON.parse(readFileSync(join(slotDir, '.runner'), 'utf8'))).toMatchObject({ agentName: `preload-runner-${i}` });
    }
    // A job on slot 3's label runs there; its ephemeral listener deletes ITS files (unlink is redirected too).
    const job = fake?.queueJob(['slot-3'], namedJob('preload job'));
    await waitFor('the job to finish', () => job?.status === 'completed');
    expect(job).toMatchObject({ runnerName: 'preload-runner-3', result: 'Succeeded' });
    expect(await listeners[3]?.exited).toBe(0);
    expect(listeners[3]?.stdout.some((line) => / Running job: preload job$/.test(line))).toBe(true);
    expect(listeners[3]?.stdout.some((line) => / Job preload job completed with result: Succeeded$/.test(line))).toBe(true);
    expect(readdirSync(join(slots, 'slot-3'))).toEqual([]);
    expect(readdirSync(join(slots, 'slot-4')).sort()).toEqual(['.credentials', '.credentials_rsaparams', '.runner']);
    // The fake worker ran under the listener and found the slot's .runner through the redirection.
    const evidence = JSON.parse(readFileSync(join(root, '_diag', 'fake-worker-preload_job.json'), 'utf8')) as { runnerFilePresent: boolean; exitCode: number };
    expect(evidence).toMatchObject({ runnerFilePresent: true, exitCode: 100 });
    expect(existsSync(join(root, '.runner'))).toBe(false);
  });

  it('refuses to run without config files, and to configure over an existing .runner', async () => {
    const root = makeMuxRunnerRoot();
    const unconfigured = startListener(root, ['run']);
    expect(await unconfigured.exited).toBe(1);
    expect(unconfigured.stderr).toContain('Runner is not configured.');

    fake = await startFakeGitHub({ tokens: [TOKEN] });
    const token = ((await (await fetch(`${fake.apiUrl}/repos/octo/repo/actions/runners/registration-token`, { method: 'POST', headers: { authorization: `token ${TOKEN}` } })).json()) as { token: string }).token;
    const args = ['configure', '--unattended', '--url', `${fake.url}/octo/repo`, '--token', token, '--name', 'configured-1', '--labels', 'a,b', '--work', '_work', '--ephemeral', '--disableupdate', '--replace'];
    const configured = startListener(root, args);
    expect(await configured.exited).toBe(0);
    const settings = readFileSync(join(root, '.runner'), 'utf8');
    expect(settings.charCodeAt(0)).toBe(0xfeff);
    expect(JSON.parse(settings.slice(1))).toMatchObject({ agentName: 'configured-1', ephemeral: true, disableUpdate: true });
    expect([...fake.runners.values()].find((runner) => runner.name === 'configured-1')).toMatchObject({ labels: ['self-hosted', 'Linux', 'X64', 'a', 'b'], createdBy: 'configure', ephemeral: true });

    const again = startListener(root, args);
    expect(await again.exited).toBe(1);
    expect(again.stderr.join('\n')).toMatch(/already configured/);

    // And the configured runner runs a job like a JIT one.
    const running = startListener(root, ['run']);
    const job = fake.queueJob(['a'], namedJob('configured job'));
    expect(await running.exited).toBe(0);
    expect(job).toMatchObject({ status: 'completed', result: 'Succeeded', runnerName: 'configured-1' });
    expect(existsSync(join(root, '.runner'))).toBe(false);
  });

  it('exits 5 on a session conflict, 7 or 1 for a deprecated version, and 4 for an update only when updates are enabled', async () => {
    const root = makeMuxRunnerRoot();
    const slot = (name: string) => {
      const dir = join(mkdtempSync(join(tmpdir(), 'fake-listener-slot-')), name);
      mkdirSync(dir);
      return preloadEnvironment({ preloadPath: PRELOAD_SO, runnerRoot: root, slotDir: dir });
    };
    const jit = await jitConfig('conflict-runner', ['conflict']);
    const first = startListener(root, ['run', '--jitconfig', jit], slot('a'));
    await waitFor('first session', () => fake?.sessions.size === 1);
    const second = startListener(root, ['run', '--jitconfig', jit], slot('b'));
    expect(await second.exited).toBe(5);
    first.child.kill('SIGTERM');
    expect(await first.exited).toBe(0);

    const deprecatedJit = await jitConfig('old-runner', ['old']);
    fake?.instruct({ kind: 'exit', code: 7, labels: ['old'], count: 2 });
    expect(await startListener(root, ['run', '--jitconfig', deprecatedJit], { ...slot('c'), ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_EXIT_CODE: '1' }).exited).toBe(7);
    expect(await startListener(root, ['run', '--jitconfig', deprecatedJit], { ...slot('d'), ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_EXIT_CODE: '' }).exited).toBe(1);

    // The JIT .runner has no disableUpdate: the listener polls with false and takes the update.
    const updateJit = await jitConfig('update-runner', ['upd']);
    fake?.instruct({ kind: 'update', labels: ['upd'], count: -1 });
    expect(await startListener(root, ['run', '--jitconfig', updateJit], slot('e')).exited).toBe(4);
  });
});
