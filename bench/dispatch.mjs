#!/usr/bin/env node
// Benchmark: what a job start costs with in-process dispatch (the native Runner.Worker shim
// relaying the listener's pipe to the mux, which runs the job path for every job) beside
// today's Node worker (`mux.dispatch: worker`: the shim finds no socket and falls back to one
// `cbactions worker` process per job), in one run on this machine. Prints one table.
//
//   npm run build && node --no-warnings bench/dispatch.mjs [--sequential 20] [--concurrent 50] [--burst 100]
//
// Both columns use the same installed Runner.Worker (the native shim), the same mux half
// (bench/dispatch-host.mjs: the shared build watcher, plus the dispatch server for
// in-process), the same local key and payload directory, and the same CodeBuild: a minimal
// JSON endpoint in this process that records when each StartBuild arrives (the local build
// service would run a shell per build, and 100 builds at once would measure those). The
// "listener" is this process: it spawns `Runner.Worker spawnclient 3 4` with a socket pair
// on fd 3, writes the NewJobRequest at once, and keeps fd 3 open until the job ends.
//
// Figures:
// - job start: NewJobRequest written → StartBuild received, jobs one at a time (p50, p95);
// - resident memory per running job, with N jobs waiting for their builds at once: the
//   job's own process (shim or worker; median), and per job in total (those processes plus
//   the mux's growth over its idle size, divided by N); the mux's growth per running slot;
// - CPU seconds per job (start to end; builds end at the watcher's first look), with B jobs
//   arriving at once: CPU of the job processes and of the mux half, divided by B;
// - job starts per second with B jobs arriving at once: B / (last StartBuild − first write).
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const dist = (path) => import(join(ROOT, 'dist', path));
const { createLocalKeyFile } = await dist('src/seal/local-key-service.js');

const { values: args } = parseArgs({
  options: {
    sequential: { type: 'string', default: '20' },
    concurrent: { type: 'string', default: '50' },
    burst: { type: 'string', default: '100' },
  },
});
const SEQUENTIAL = Number(args.sequential);
const CONCURRENT = Number(args.concurrent);
const BURST = Number(args.burst);
const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

function percentile(values, p) {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** VmRSS of a live process, in KiB. */
function rssKiB(pid) {
  try {
    const match = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** CPU seconds of a live process (utime + stime), or of this process's waited-for children (cutime + cstime). */
function cpuSeconds(pid, children = false) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state): utime is field 14, stime 15, cutime 16, cstime 17.
  const [a, b] = children ? [fields[13], fields[14]] : [fields[11], fields[12]];
  return (Number(a) + Number(b)) / CLOCK_TICKS;
}

/** A CodeBuild endpoint (awsJson1_1) that only records: StartBuild's arrival per job, builds that end when told. */
function startFakeCodeBuild() {
  const builds = new Map();
  const arrivals = new Map();
  let counter = 0;
  const state = { completeAll: false };
  const view = (build) => ({
    id: build.id,
    arn: `arn:aws:codebuild:us-east-1:000000000000:build/${build.id}`,
    projectName: 'bench',
    buildStatus: state.completeAll ? 'SUCCEEDED' : 'IN_PROGRESS',
    buildComplete: state.completeAll,
    currentPhase: state.completeAll ? 'COMPLETED' : 'BUILD',
    phases: [],
    exportedEnvironmentVariables: state.completeAll ? [{ name: 'CBACTIONS_EXIT_CODE', value: '100' }] : [],
  });
  const server = createServer((request, response) => {
    const chunks = [];
    request.on('data', (chunk) => chunks.push(chunk));
    request.on('end', () => {
      const received = performance.now();
      const operation = String(request.headers['x-amz-target'] ?? '').split('.').pop();
      const input = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
      let output;
      if (operation === 'StartBuild') {
        const jobId = input.environmentVariablesOverride?.find((variable) => variable.name === 'CBACTIONS_JOB_ID')?.value;
        if (!arrivals.has(jobId)) arrivals.set(jobId, received);
        const existing = [...builds.values()].find((build) => build.token === input.idempotencyToken);
        const build = existing ?? { id: `bench:00000000-0000-4000-8000-${String(++counter).padStart(12, '0')}`, token: input.idempotencyToken };
        builds.set(build.id, build);
        output = { build: view(build) };
      } else if (operation === 'BatchGetBuilds') {
        const ids = input.ids ?? [];
        output = { builds: ids.filter((id) => builds.has(id)).map((id) => view(builds.get(id))), buildsNotFound: ids.filter((id) => !builds.has(id)) };
      } else if (operation === 'StopBuild') {
        output = { build: view(builds.get(input.id) ?? { id: input.id }) };
      } else {
        response.writeHead(400, { 'content-type': 'application/x-amz-json-1.1' }).end(JSON.stringify({ __type: 'InvalidInputException', message: `no ${operation}` }));
        return;
      }
      response.writeHead(200, { 'content-type': 'application/x-amz-json-1.1' }).end(JSON.stringify(output));
    });
  });
  return new Promise((resolveListening) =>
    server.listen(0, '127.0.0.1', () => resolveListening({ endpoint: `http://127.0.0.1:${server.address().port}`, arrivals, state, close: () => server.close() })),
  );
}

/** A job message shaped like a RunnerJobRequest (about 1 KB, as a small real one). */
function jobMessage(jobId) {
  return JSON.stringify({
    messageType: 'RunnerJobRequest',
    plan: { planId: 'p1', planType: 'actions', version: 8, scopeIdentifier: 's1' },
    timeline: { id: 't1' },
    jobId,
    jobDisplayName: 'build (ubuntu)',
    jobName: '__default',
    requestId: 1234,
    resources: { endpoints: [{ name: 'SystemVssConnection', url: 'https://pipelines.actions.githubusercontent.com/abc/', authorization: { scheme: 'OAuth', parameters: { AccessToken: 'eyJ-not-a-real-token' } } }] },
    variables: { 'system.github.token': { value: 'ghs_not-a-real-token', isSecret: true } },
    steps: [{ type: 'action', reference: { type: 'script' }, inputs: { script: 'echo hello' } }],
  });
}

/** A listener's runner root: bin/ for the installed Runner.Worker, the registration's .runner and .credentials. */
function makeListenerRoot(root) {
  mkdirSync(join(root, 'bin'), { recursive: true });
  writeFileSync(join(root, '.runner'), JSON.stringify({ agentId: 1, agentName: 'bench-runner', poolId: 1, serverUrl: 'https://pipelines.actions.githubusercontent.com/abc/', gitHubUrl: 'https://github.com/octo/repo', workFolder: '_work' }));
  writeFileSync(join(root, '.credentials'), JSON.stringify({ scheme: 'OAuth', data: { clientId: 'bench-client', authorizationUrl: 'https://example.invalid/token' } }));
  return root;
}

function encodeJob(jobId) {
  const body = Buffer.from(jobMessage(jobId), 'utf16le');
  const header = Buffer.alloc(8);
  header.writeInt32LE(1, 0);
  header.writeInt32LE(body.length, 4);
  return Buffer.concat([header, body]);
}

async function main() {
  const base = mkdtempSync(join(tmpdir(), 'cbactions-bench-dispatch-'));
  const listenerRoot = makeListenerRoot(join(base, 'listener-root'));
  execFileSync(join(ROOT, 'bin', 'cbactions'), ['install-worker', listenerRoot]);
  const payloadDir = join(base, 'payloads');
  mkdirSync(payloadDir, { mode: 0o700 });
  mkdirSync(join(base, 'logs'));
  const keyFile = join(base, 'payload.key');
  await createLocalKeyFile(keyFile);
  const configPath = join(base, 'cbactions.yaml');
  writeFileSync(
    configPath,
    JSON.stringify({
      github: { scope: { repository: 'octo/repo' }, auth: { token: { env: 'GITHUB_TOKEN' } } },
      codebuild: { projectName: 'bench', region: 'us-east-1' },
      payloads: { key: { local: { file: keyFile } }, store: { local: { dir: payloadDir } } },
      pools: [{ name: 'default', labels: ['cbactions'], slots: 1 }],
    }),
  );
  const codebuild = await startFakeCodeBuild();
  const awsEnv = { AWS_ENDPOINT_URL_CODEBUILD: codebuild.endpoint, AWS_ACCESS_KEY_ID: 'bench', AWS_SECRET_ACCESS_KEY: 'bench', AWS_SESSION_TOKEN: '', AWS_REGION: 'us-east-1', AWS_PROFILE: '', AWS_CONFIG_FILE: '/dev/null', AWS_SHARED_CREDENTIALS_FILE: '/dev/null' };
  const results = {};
  let jobCounter = 0;

  for (const mode of ['worker', 'in-process']) {
    const stateDir = join(base, `state-${mode}`);
    mkdirSync(stateDir);
    const host = spawn(process.execPath, ['--no-warnings', join(ROOT, 'bench', 'dispatch-host.mjs'), configPath, stateDir, mode, listenerRoot], {
      env: { ...process.env, ...awsEnv },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    await new Promise((resolveReady, reject) => {
      host.stdout.on('data', (chunk) => String(chunk).includes('ready') && resolveReady());
      host.once('exit', (code) => reject(new Error(`dispatch host exited ${code}`)));
    });
    const jobEnv = (index) => ({
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      ...awsEnv,
      CBACTIONS_CONFIG: configPath,
      CBACTIONS_POOL: 'default',
      CBACTIONS_SLOT: `bench-${index}`,
      CBACTIONS_RUNNER_ROOT: listenerRoot,
      CBACTIONS_WORKER_LOG: join(base, 'logs', `${mode}-${index}.log`),
      CBACTIONS_WATCHER_SOCKET: join(stateDir, 'watcher.sock'),
      ...(mode === 'in-process' ? { CBACTIONS_DISPATCH_SOCKET: join(stateDir, 'dispatch.sock') } : {}),
    });
    /** One job as the listener starts it; resolves with its exit code once it exited. */
    const startJob = () => {
      const index = ++jobCounter;
      const jobId = `bench-${mode}-${index}`;
      const child = spawn(join(listenerRoot, 'bin', 'Runner.Worker'), ['spawnclient', '3', '4'], { cwd: join(listenerRoot, 'bin'), env: jobEnv(index), stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (chunk) => (stderr += chunk));
      const pipe = child.stdio[3];
      pipe.on('error', () => {});
      pipe.write(encodeJob(jobId));
      const written = performance.now();
      const exited = new Promise((resolveExit) =>
        child.once('exit', (code) => {
          pipe.destroy();
          child.stdio[4]?.destroy();
          resolveExit({ code, stderr });
        }),
      );
      return { jobId, pid: child.pid, written, exited };
    };
    const waitFor = async (what, check, timeoutMs = 120_000) => {
      const started = Date.now();
      while (!check()) {
        if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting for ${what}`);
        await new Promise((resolveTick) => setTimeout(resolveTick, 10));
      }
    };
    const expectSucceeded = async (jobs) => {
      const ends = await Promise.all(jobs.map((job) => job.exited));
      const failed = ends.filter((end) => end.code !== 100);
      if (failed.length > 0) throw new Error(`${failed.length} ${mode} jobs did not succeed, e.g. exit ${failed[0].code}: ${failed[0].stderr.trim()}`);
    };

    // Warm-up (caches, the mux's first job), not measured.
    codebuild.state.completeAll = true;
    await expectSucceeded([startJob(), startJob()]);

    // Job start, one at a time.
    const latencies = [];
    for (let i = 0; i < SEQUENTIAL; i++) {
      const job = startJob();
      await waitFor('StartBuild', () => codebuild.arrivals.has(job.jobId));
      latencies.push(codebuild.arrivals.get(job.jobId) - job.written);
      await expectSucceeded([job]);
    }

    // N jobs running at once (their builds held), memory sampled once every job waits for its build.
    const idleMuxKiB = rssKiB(host.pid);
    codebuild.state.completeAll = false;
    const running = Array.from({ length: CONCURRENT }, () => startJob());
    await waitFor('every payload stored', () => readdirSync(payloadDir).filter((name) => name.endsWith('.sealed')).length >= CONCURRENT);
    const jobKiB = running.map((job) => rssKiB(job.pid) ?? 0);
    const busyMuxKiB = rssKiB(host.pid);
    codebuild.state.completeAll = true;
    await expectSucceeded(running);

    // B jobs arriving at once.
    const cpuBefore = cpuSeconds('self', true) + cpuSeconds(host.pid);
    const burst = Array.from({ length: BURST }, () => startJob());
    await waitFor('every StartBuild of the burst', () => burst.every((job) => codebuild.arrivals.has(job.jobId)));
    const firstWrite = Math.min(...burst.map((job) => job.written));
    const lastStart = Math.max(...burst.map((job) => codebuild.arrivals.get(job.jobId)));
    await expectSucceeded(burst);
    const cpuAfter = cpuSeconds('self', true) + cpuSeconds(host.pid);

    const muxGrowthKiB = Math.max(0, busyMuxKiB - idleMuxKiB);
    results[mode] = {
      startP50: percentile(latencies, 50),
      startP95: percentile(latencies, 95),
      jobProcessMedianKiB: percentile(jobKiB, 50),
      perJobKiB: (jobKiB.reduce((sum, value) => sum + value, 0) + muxGrowthKiB) / CONCURRENT,
      muxPerSlotKiB: muxGrowthKiB / CONCURRENT,
      idleMuxKiB,
      cpuPerJob: (cpuAfter - cpuBefore) / BURST,
      startsPerSecond: BURST / ((lastStart - firstWrite) / 1000),
    };
    host.kill('SIGTERM');
    await new Promise((resolveExit) => host.once('exit', resolveExit));
  }
  codebuild.close();

  const mib = (kib) => `${(kib / 1024).toFixed(2)} MiB`;
  const rows = [
    ['NewJobRequest → StartBuild received, p50', (r) => `${r.startP50.toFixed(1)} ms`],
    ['NewJobRequest → StartBuild received, p95', (r) => `${r.startP95.toFixed(1)} ms`],
    [`job process resident, median (${CONCURRENT} running)`, (r) => mib(r.jobProcessMedianKiB)],
    [`resident per running job incl. mux growth (${CONCURRENT} running)`, (r) => mib(r.perJobKiB)],
    [`mux growth per running slot (${CONCURRENT} running)`, (r) => mib(r.muxPerSlotKiB)],
    ['mux half resident when idle', (r) => mib(r.idleMuxKiB)],
    [`CPU seconds per job (${BURST} arriving at once)`, (r) => `${r.cpuPerJob.toFixed(3)} s`],
    [`job starts per second (${BURST} arriving at once)`, (r) => `${r.startsPerSecond.toFixed(1)} /s`],
  ];
  const header = ['', "Node worker (today; mux.dispatch: worker)", 'native shim + in-process dispatch'];
  const table = [header, ...rows.map(([label, format]) => [label, format(results.worker), format(results['in-process'])])];
  const widths = header.map((_, column) => Math.max(...table.map((row) => row[column].length)));
  for (const row of table) process.stdout.write(`${row.map((cell, column) => cell.padEnd(widths[column])).join('  ')}\n`);
  process.stdout.write(`\n(${SEQUENTIAL} sequential jobs, ${CONCURRENT} concurrent, ${BURST} at once; ${process.version}, ${process.platform}/${process.arch})\n`);
}

await main();
process.exit(0);
