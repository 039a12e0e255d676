#!/usr/bin/env node
// Benchmark: many concurrent jobs through the worker against the local build service,
// with the host's shared build watcher, side by side with the original prototype's
// strategy (every job polls its own build every 10 s). Prints one table.
//
//   npm run build && node --no-warnings bench/watcher.mjs [--jobs 200] [--arrival-seconds 20] [--job-seconds 60] [--job-spread-seconds 30]
//
// Both runs use the same simulated job (bench/simulated-job.buildspec.yml), the same fake
// Runner.Listener, and real `node` worker processes, so figures are comparable.
import { spawn, execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const dist = (path) => join(ROOT, 'dist', path);
const { runFakeJob } = await import(dist('test/fixtures/fake-listener.js'));
const { createLocalKeyFile } = await import(dist('src/seal/local-key-service.js'));

const { values: args } = parseArgs({
  options: {
    jobs: { type: 'string', default: '200' },
    'arrival-seconds': { type: 'string', default: '20' },
    // Long enough that every job runs at once for most of the run: the comparison is about
    // "200 concurrent jobs", not about the ramps before and after.
    'job-seconds': { type: 'string', default: '60' },
    'job-spread-seconds': { type: 'string', default: '30' },
    only: { type: 'string' },
  },
});
const JOBS = Number(args.jobs);
const ARRIVAL_MS = Number(args['arrival-seconds']) * 1000;

function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function startBuildService(base) {
  const stateDir = join(base, 'build-service');
  mkdirSync(stateDir);
  const configPath = join(base, 'build-service.json');
  writeFileSync(
    configPath,
    JSON.stringify({
      projects: [
        {
          name: 'bench',
          buildspec: join(ROOT, 'bench', 'simulated-job.buildspec.yml'),
          environmentVariables: { BENCH_JOB_MIN_SECONDS: args['job-seconds'], BENCH_JOB_SPREAD_SECONDS: args['job-spread-seconds'] },
        },
      ],
    }),
  );
  const child = spawn(process.execPath, [join(ROOT, 'bin', 'cbactions'), 'build-service', '--port', '0', '--state-dir', stateDir, '--config', configPath], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const listening = await new Promise((resolveListening, reject) => {
    let out = '';
    child.stdout.on('data', (chunk) => {
      out += chunk;
      const line = out.split('\n').find((candidate) => candidate.includes('"build-service.listening"'));
      if (line) resolveListening(JSON.parse(line));
    });
    child.once('exit', (code) => reject(new Error(`build-service exited ${code}`)));
  });
  const { endpoint, credentialsFile, profile, region } = listening;
  // Callers sign with the service's key (its credentials file); the control API takes the token beside it.
  const credentials = { AWS_SHARED_CREDENTIALS_FILE: credentialsFile, AWS_PROFILE: profile, AWS_ACCESS_KEY_ID: '', AWS_SECRET_ACCESS_KEY: '', AWS_SESSION_TOKEN: '', AWS_REGION: region };
  const controlToken = /^cbactions_control_token\s*=\s*(\S+)/m.exec(readFileSync(credentialsFile, 'utf8'))?.[1];
  const control = async (method, path) => {
    const response = await fetch(`${endpoint}${path}`, { method, headers: { authorization: `Bearer ${controlToken}` } });
    return method === 'GET' ? response.json() : undefined;
  };
  return { endpoint, child, control, credentials };
}

function listenerRoot(base, name, workerCommand) {
  const root = join(base, name);
  mkdirSync(join(root, 'bin'), { recursive: true });
  writeFileSync(join(root, '.runner'), JSON.stringify({ agentId: 1, agentName: `bench-${name}`, poolId: 1, serverUrl: 'https://example.invalid', gitHubUrl: 'https://github.com/o/r', workFolder: '_work' }));
  writeFileSync(join(root, 'bin', 'Runner.Worker'), `#!/bin/sh\nexec ${workerCommand} "$@"\n`);
  chmodSync(join(root, 'bin', 'Runner.Worker'), 0o755);
  return root;
}

/**
 * Peak RSS (VmHWM) of every process carrying the run's marker, sampled until stopped. Each
 * new pid's environment is read once; only known workers are sampled after that, so the
 * sampler itself stays cheap next to hundreds of processes.
 */
function sampleWorkerMemory(marker) {
  const needle = Buffer.from(`BENCH_MARKER=${marker}\0`);
  const classified = new Map();
  const peaks = new Map();
  const timer = setInterval(() => {
    const live = new Set();
    for (const pid of readdirSync('/proc')) {
      if (!/^\d+$/.test(pid)) continue;
      live.add(pid);
      try {
        if (!classified.has(pid)) classified.set(pid, readFileSync(`/proc/${pid}/environ`).includes(needle));
        if (!classified.get(pid)) continue;
        const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
        if (hwm) peaks.set(pid, Math.max(peaks.get(pid) ?? 0, Number(hwm[1]) * 1024));
      } catch {
        // Gone between listing and reading.
      }
    }
    for (const pid of classified.keys()) if (!live.has(pid)) classified.delete(pid);
  }, 500);
  return () => {
    clearInterval(timer);
    return [...peaks.values()].sort((a, b) => a - b);
  };
}

async function runScenario(name, base, setup) {
  mkdirSync(base, { recursive: true });
  const service = await startBuildService(base);
  const scenario = await setup(service);
  const marker = `${name}-${process.pid}`;
  const stopSampling = sampleWorkerMemory(marker);
  await service.control('DELETE', '/_local/calls');
  const startedAt = Date.now();
  const jobs = [];
  for (let i = 0; i < JOBS; i++) {
    const jobId = `bench-${name}-${i}`;
    const body = JSON.stringify({ messageType: 'RunnerJobRequest', jobId, requestId: i + 1, jobDisplayName: `job ${i}`, variables: {} });
    const delay = (ARRIVAL_MS * i) / JOBS;
    jobs.push(
      new Promise((r) => setTimeout(r, delay)).then(async () => {
        const launched = Date.now();
        const result = await runFakeJob({ binDir: join(scenario.root, 'bin'), jobBody: body, env: { ...process.env, ...service.credentials, AWS_ENDPOINT_URL_CODEBUILD: service.endpoint, BENCH_MARKER: marker, ...scenario.env } });
        return { jobId, exitedAt: launched + result.durationMs, exitCode: result.exitCode };
      }),
    );
  }
  const results = await Promise.all(jobs);
  const wallSeconds = (Date.now() - startedAt) / 1000;
  const peaks = stopSampling();
  const calls = await service.control('GET', '/_local/calls');
  const { builds } = await service.control('GET', '/_local/builds');
  await scenario.stop?.();
  service.child.kill('SIGTERM');
  const endOf = new Map();
  const edges = [];
  for (const build of builds) {
    if (build.build.startTime && build.build.endTime) edges.push([build.build.startTime, 1], [build.build.endTime, -1]);
    const jobId = (build.request.environmentVariablesOverride ?? []).find((v) => v.name === 'CBACTIONS_JOB_ID')?.value;
    if (jobId && build.build.endTime) endOf.set(jobId, build.build.endTime * 1000);
  }
  let concurrent = 0;
  let peakConcurrent = 0;
  for (const [, delta] of edges.sort((a, b) => a[0] - b[0] || a[1] - b[1])) peakConcurrent = Math.max(peakConcurrent, (concurrent += delta));
  const latencies = results.filter((r) => endOf.has(r.jobId)).map((r) => (r.exitedAt - endOf.get(r.jobId)) / 1000).sort((a, b) => a - b);
  const batch = calls.operations.BatchGetBuilds?.calls ?? 0;
  return {
    name,
    jobs: JOBS,
    ok: results.filter((r) => r.exitCode === 100).length,
    peakConcurrent,
    callsPerJob: calls.total.calls / JOBS,
    statusCalls: batch,
    statusCallsPerSecond: batch / wallSeconds,
    p50: percentile(latencies, 50),
    p95: percentile(latencies, 95),
    rssMax: peaks[peaks.length - 1] ?? NaN,
    rssMedian: percentile(peaks, 50),
    wallSeconds,
  };
}

const base = mkdtempSync(join(tmpdir(), 'cbactions-bench-'));
process.stderr.write(`bench: ${JOBS} jobs arriving over ${ARRIVAL_MS / 1000} s, each ${args['job-seconds']}-${Number(args['job-seconds']) + Number(args['job-spread-seconds'])} s; work dir ${base}\n`);

async function baseline() {
  return runScenario('baseline', join(base, 'baseline'), async () => {
    const root = listenerRoot(join(base, 'baseline'), 'root', `"${process.execPath}" --no-warnings "${join(ROOT, 'bench', 'baseline-worker.mjs')}"`);
    return { root, env: { BENCH_PROJECT: 'bench' } };
  });
}

async function sharedWatcher() {
  return runScenario('cbactions', join(base, 'cbactions'), async (service) => {
    const dir = join(base, 'cbactions');
    const keyFile = join(dir, 'payload.key');
    await createLocalKeyFile(keyFile);
    mkdirSync(join(dir, 'payloads'));
    const configPath = join(dir, 'cbactions.json');
    writeFileSync(
      configPath,
      JSON.stringify({
        github: { scope: { repository: 'o/r' }, auth: { token: { env: 'GITHUB_TOKEN' } } },
        codebuild: { projectName: 'bench', region: 'us-east-1' },
        payloads: { key: { local: { file: keyFile } }, store: { local: { dir: join(dir, 'payloads') } } },
        pools: [{ name: 'default', labels: ['x'] }],
      }),
    );
    const root = join(dir, 'root');
    mkdirSync(join(root, 'bin'), { recursive: true });
    writeFileSync(join(root, '.runner'), JSON.stringify({ agentId: 1, agentName: 'bench', poolId: 1, serverUrl: 'https://example.invalid', workFolder: '_work' }));
    execFileSync(join(ROOT, 'bin', 'cbactions'), ['install-worker', root]);
    // The host's watcher in its own process, with the mux's defaults.
    const socketPath = join(dir, 'watcher.sock');
    const host = spawn(process.execPath, ['--no-warnings', join(ROOT, 'bench', 'watcher-host.mjs'), service.endpoint, socketPath], { env: { ...process.env, ...service.credentials }, stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise((resolveReady, reject) => {
      host.stdout.once('data', resolveReady);
      host.once('exit', (code) => reject(new Error(`the watcher host exited (${code})`)));
    });
    return {
      root,
      env: { CBACTIONS_CONFIG: configPath, CBACTIONS_WATCHER_SOCKET: socketPath, CBACTIONS_WORKER_LOG: join(dir, 'worker.log') },
      stop: async () => {
        host.kill('SIGTERM');
        await new Promise((r) => host.once('exit', r));
      },
    };
  });
}

const rows = [];
if (args.only !== 'cbactions') rows.push(await baseline());
if (args.only !== 'baseline') rows.push(await sharedWatcher());

const mb = (bytes) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;
const s = (seconds) => `${seconds.toFixed(2)} s`;
const table = [
  ['', ...rows.map((r) => (r.name === 'baseline' ? 'baseline: poll 10 s per job' : 'cbactions: shared watcher'))],
  ['jobs finished with 100', ...rows.map((r) => `${r.ok}/${r.jobs}`)],
  ['builds running at once (peak)', ...rows.map((r) => String(r.peakConcurrent))],
  ['CodeBuild API calls per job', ...rows.map((r) => r.callsPerJob.toFixed(2))],
  ['BatchGetBuilds calls (total)', ...rows.map((r) => String(r.statusCalls))],
  ['BatchGetBuilds calls per second', ...rows.map((r) => r.statusCallsPerSecond.toFixed(2))],
  ['completion detected after (p50)', ...rows.map((r) => s(r.p50))],
  ['completion detected after (p95)', ...rows.map((r) => s(r.p95))],
  ['worker peak RSS (max)', ...rows.map((r) => mb(r.rssMax))],
  ['worker peak RSS (median)', ...rows.map((r) => mb(r.rssMedian))],
  ['wall time', ...rows.map((r) => s(r.wallSeconds))],
];
const widths = table[0].map((_, column) => Math.max(...table.map((row) => row[column].length)));
for (const row of table) process.stdout.write(`${row.map((cell, column) => cell.padEnd(widths[column])).join('  |  ')}\n`);
if (rows.length === 2) {
  const [before, after] = rows;
  process.stdout.write(`\nstatus calls: ${(before.statusCalls / Math.max(1, after.statusCalls)).toFixed(1)}x fewer with the shared watcher; completion detected ${(before.p50 / after.p50).toFixed(1)}x faster (p50)\n`);
}
