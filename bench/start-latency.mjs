#!/usr/bin/env node
// Benchmark: how long a job waits from its assignment until Runner.Worker starts in its build,
// with CodeBuild's provisioning simulated by the local build service (`simulate`), for a new
// build per job (cold, today) beside standby builds (warm, `pools[].warm`), in one run.
//
//   npm run build && node --no-warnings bench/start-latency.mjs [--provisioning 20] [--single 3] [--bursts 10,50] [--idle 30] [--poll-ms 200]
//
// The path is the product's, as processes: this process plays the listener (it spawns the
// installed native Runner.Worker shim `spawnclient 3 4` and writes the NewJobRequest on fd 3);
// bench/start-latency-host.mjs is the mux's half (in-process dispatch server, build watcher,
// and, for warm, the standby builds); `cbactions build-service` runs the repository's
// buildspec.yml with `simulate.provisioningSeconds`; inside, `cbactions entrypoint` opens the
// sealed payload and starts the build's Runner.Worker. That Runner.Worker is a four-line shell
// script (written below) that notes the time it was started, the job id from the message
// and the build id, and exits 100 (Succeeded): the job is tiny on purpose, and the real
// worker's own start-up is excluded, as the figure is our overhead.
//
// Figures (per column; p50/p95 by nearest rank):
// - assigned → Runner.Worker started: from just before the listener spawns Runner.Worker (the
//   job is assigned to it) to the build's Runner.Worker start, for one job at a time (--single
//   jobs, p50/p95 over them) and for bursts of --bursts jobs arriving at once;
// - cold only: how much of that is beyond the build's own QUEUED + PROVISIONING (the
//   simulated wait, from the build records: BatchGetBuilds' phase times);
// - warm only: standby build-minutes per hour (standby builds' lifetimes over a --idle s
//   window with no jobs, per hour) and S3 requests per standby-hour (below);
// - baseline, same run: the simulated PROVISIONING the builds really spent (records), and a
//   cold job with no simulated provisioning (our cold path alone).
// S3 requests per standby-hour: a standby polls for its payload every --poll-ms ms
// (CBACTIONS_PAYLOAD_POLL_MS, at most 250). Measured with the product's S3 payload store
// polling a key that never arrives for 10 s at that interval against a counting fake S3
// endpoint on 127.0.0.1 (no S3 latency: the most requests it can make), then per hour.
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const CBACTIONS = join(ROOT, 'bin', 'cbactions');
const dist = (path) => import(join(ROOT, 'dist', path));
const { createLocalKeyFile } = await dist('src/seal/local-key-service.js');
const { PoolSchema } = await dist('src/config/schema.js');
const { S3PayloadStore } = await dist('src/seal/s3-payload-store.js');
const { S3Client } = await import('@aws-sdk/client-s3');

const { values: args } = parseArgs({
  options: {
    provisioning: { type: 'string', default: '20' },
    single: { type: 'string', default: '3' },
    bursts: { type: 'string', default: '10,50' },
    idle: { type: 'string', default: '30' },
    'poll-ms': { type: 'string', default: '200' },
    'max-wait-minutes': { type: 'string', default: '10' },
  },
});
const PROVISIONING_SECONDS = Number(args.provisioning);
const SINGLE = Number(args.single);
const BURSTS = args.bursts.split(',').map(Number).filter((n) => n > 0);
const IDLE_SECONDS = Number(args.idle);
const POLL_MS = Number(args['poll-ms']);
const MAX_WAIT_MINUTES = Number(args['max-wait-minutes']);
const STANDBYS = Math.max(1, ...BURSTS);
/** Children to stop if the run fails half-way (the build service stops its builds as StopBuild does). */
const running = new Set();
/** us-east-1 list prices used for the arithmetic (see the README, "Warm pools and what they cost"). */
const PRICE = { smallBuildMinute: 0.005, s3GetPer1000: 0.0004 };

function percentile(values, p) {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

async function waitFor(what, check, timeoutMs = 300_000, everyMs = 100) {
  const started = Date.now();
  for (;;) {
    if (await check()) return;
    if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolveTick) => setTimeout(resolveTick, everyMs));
  }
}

/** A job message shaped like a RunnerJobRequest; `jobId` first, so the build's Runner.Worker script finds it in the first bytes. */
function encodeJob(jobId) {
  const message = JSON.stringify({
    jobId,
    messageType: 'RunnerJobRequest',
    plan: { planId: 'p1', planType: 'actions', version: 8, scopeIdentifier: 's1' },
    timeline: { id: 't1' },
    jobDisplayName: 'start latency',
    jobName: '__default',
    requestId: 1234,
    resources: { endpoints: [{ name: 'SystemVssConnection', url: 'https://pipelines.actions.githubusercontent.com/abc/', authorization: { scheme: 'OAuth', parameters: { AccessToken: 'eyJ-not-a-real-token' } } }] },
    variables: { 'system.github.token': { value: 'ghs_not-a-real-token', isSecret: true } },
    steps: [{ type: 'action', reference: { type: 'script' }, inputs: { script: 'echo hello' } }],
  });
  const body = Buffer.from(message, 'utf16le');
  const header = Buffer.alloc(8);
  header.writeInt32LE(1, 0);
  header.writeInt32LE(body.length, 4);
  return Buffer.concat([header, body]);
}

/** The build's runner: bin/Runner.Worker notes its start (epoch ms), the job id and the build id, and succeeds. */
function makeBuildRunnerRoot(root) {
  mkdirSync(join(root, 'bin'), { recursive: true });
  const worker = join(root, 'bin', 'Runner.Worker');
  writeFileSync(
    worker,
    [
      '#!/bin/sh',
      'started=$(date +%s%3N)',
      `job=$(dd bs=4096 count=1 <&3 2>/dev/null | tr -d '\\000' | grep -o '"jobId":"[^"]*"' | head -n 1 | cut -d'"' -f4)`,
      'printf \'%s %s\\n\' "$started" "${CODEBUILD_BUILD_ID:-}" > "$BENCH_STARTS_DIR/${job:-unknown-$$}"',
      'exit 100',
      '',
    ].join('\n'),
  );
  chmodSync(worker, 0o755);
  return root;
}

/** A listener's runner root: bin/ for the installed shim, the registration's .runner and .credentials. */
function makeListenerRoot(root) {
  mkdirSync(join(root, 'bin'), { recursive: true });
  writeFileSync(join(root, '.runner'), JSON.stringify({ agentId: 1, agentName: 'bench-runner', poolId: 1, serverUrl: 'https://pipelines.actions.githubusercontent.com/abc/', gitHubUrl: 'https://github.com/octo/repo', workFolder: '_work' }));
  writeFileSync(join(root, '.credentials'), JSON.stringify({ scheme: 'OAuth', data: { clientId: 'bench-client', authorizationUrl: 'https://example.invalid/token' } }));
  execFileSync(CBACTIONS, ['install-worker', root]);
  return root;
}

/** `cbactions build-service` as a process; resolves with its endpoint, key and control API. */
async function startBuildService(base, config, env) {
  const configPath = join(base, 'build-service.json');
  writeFileSync(configPath, JSON.stringify(config));
  const child = spawn(process.execPath, [CBACTIONS, 'build-service', '--config', configPath, '--log-level', 'warn'], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  const line = await new Promise((resolveLine, reject) => {
    createInterface({ input: child.stdout }).once('line', resolveLine);
    child.once('exit', (code) => reject(new Error(`build service exited ${code}`)));
  });
  const listening = JSON.parse(line);
  const profile = readFileSync(listening.credentialsFile, 'utf8');
  const token = /^cbactions_control_token = (\S+)$/m.exec(profile)?.[1];
  const control = async (method, path, body) => {
    const response = await fetch(`${listening.endpoint}${path}`, { method, headers: { authorization: `Bearer ${token}` }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
    if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${await response.text()}`);
    return response.headers.get('content-type')?.includes('json') ? response.json() : response.text();
  };
  const stop = () => new Promise((resolveExit) => (child.exitCode !== null ? resolveExit() : (child.once('exit', resolveExit), child.kill('SIGTERM'))));
  running.add(stop);
  return {
    endpoint: listening.endpoint,
    clientEnv: { AWS_ENDPOINT_URL_CODEBUILD: listening.endpoint, AWS_SHARED_CREDENTIALS_FILE: listening.credentialsFile, AWS_PROFILE: listening.profile, AWS_REGION: listening.region, AWS_ACCESS_KEY_ID: '', AWS_SECRET_ACCESS_KEY: '', AWS_SESSION_TOKEN: '', AWS_CONFIG_FILE: '/dev/null' },
    control,
    stop: () => (running.delete(stop), stop()),
  };
}

/** The mux's half; resolves once it listens, with what it says about warm. */
async function startHost(configPath, stateDir, listenerRoot, env) {
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const child = spawn(process.execPath, ['--no-warnings', join(ROOT, 'bench', 'start-latency-host.mjs'), configPath, stateDir, listenerRoot], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  const events = [];
  const ready = await new Promise((resolveReady, reject) => {
    createInterface({ input: child.stdout }).on('line', (line) => {
      const event = JSON.parse(line);
      events.push(event);
      if (event.kind === 'ready') resolveReady(event);
    });
    child.once('exit', (code) => reject(new Error(`bench host exited ${code} before it was ready`)));
  });
  const stop = () => new Promise((resolveExit) => (child.exitCode !== null ? resolveExit() : (child.once('exit', resolveExit), child.kill('SIGTERM'))));
  running.add(stop);
  return { ready, events, stop: () => (running.delete(stop), stop()) };
}

/** S3 GETs the S3 payload store makes while a payload does not arrive, per hour, at POLL_MS. */
async function measureS3Polls(windowMs) {
  let gets = 0;
  const server = createServer((request, response) => {
    request.resume();
    if (request.method === 'GET') gets += 1;
    response.writeHead(404, { 'content-type': 'application/xml' }).end('<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>');
  });
  await new Promise((resolveListening) => server.listen(0, '127.0.0.1', resolveListening));
  const client = new S3Client({ endpoint: `http://127.0.0.1:${server.address().port}`, forcePathStyle: true, region: 'us-east-1', credentials: { accessKeyId: 'bench', secretAccessKey: 'bench' }, maxAttempts: 1 });
  const store = new S3PayloadStore({ client, bucket: 'bench', prefix: 'payloads/', pollMs: POLL_MS });
  const started = Date.now();
  await store.take({ buildId: 'bench:00000000-0000-4000-8000-000000000001', userId: 'AROAEXAMPLE:AWSCodeBuild-00000000-0000-4000-8000-000000000001' }, { waitMs: windowMs }).catch(() => undefined);
  const elapsed = Date.now() - started;
  client.destroy();
  server.close();
  return { gets, perHour: (gets * 3_600_000) / elapsed, elapsed };
}

async function main() {
  const base = mkdtempSync(join(tmpdir(), 'cbactions-bench-start-'));
  const listenerRoot = makeListenerRoot(join(base, 'listener-root'));
  const buildRunnerRoot = makeBuildRunnerRoot(join(base, 'build-runner-root'));
  const startsDir = join(base, 'starts');
  mkdirSync(startsDir);
  const payloadDir = join(base, 'payloads');
  mkdirSync(payloadDir, { mode: 0o700 });
  const keyFile = join(base, 'payload.key');
  await createLocalKeyFile(keyFile);

  const warmInSchema = PoolSchema.safeParse({ name: 'probe', labels: ['x'], warm: { standby: 1 } }).success;

  const service = await startBuildService(
    base,
    {
      stateDir: join(base, 'build-service'),
      stopGraceMs: 2000,
      simulate: { provisioningSeconds: PROVISIONING_SECONDS },
      projects: [
        {
          name: 'cbactions',
          buildspec: join(ROOT, 'buildspec.yml'),
          environmentVariables: { CBACTIONS_RUNNER_ROOT: buildRunnerRoot, CBACTIONS_PAYLOAD_WAIT_SECONDS: '300', BENCH_STARTS_DIR: startsDir, CBACTIONS_PAYLOAD_POLL_MS: String(POLL_MS) },
        },
      ],
    },
    // The "image": cbactions on the PATH, as in the CodeBuild image.
    { ...process.env, PATH: `${join(ROOT, 'bin')}:${process.env.PATH ?? ''}` },
  );
  const hostEnv = { ...process.env, ...service.clientEnv };
  let jobCounter = 0;

  /** One job as the listener starts it; resolves with its start latency once it exited 100. */
  const startJob = (column, configPath, stateDir) => {
    const index = ++jobCounter;
    const jobId = `bench-${column}-${index}`;
    const assigned = Date.now();
    const child = spawn(join(listenerRoot, 'bin', 'Runner.Worker'), ['spawnclient', '3', '4'], {
      cwd: join(listenerRoot, 'bin'),
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        ...service.clientEnv,
        CBACTIONS_CONFIG: configPath,
        CBACTIONS_POOL: 'default',
        CBACTIONS_SLOT: `bench-${index}`,
        CBACTIONS_RUNNER_ROOT: listenerRoot,
        CBACTIONS_DISPATCH_SOCKET: join(stateDir, 'dispatch.sock'),
        // As the mux sets it for its listeners (bench/start-latency-host.mjs gives its standbys the same).
        CBACTIONS_MUX_INSTANCE: 'bench-start-latency',
      },
      stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk) => (stderr += chunk));
    const pipe = child.stdio[3];
    pipe.on('error', () => {});
    pipe.write(encodeJob(jobId));
    return new Promise((resolveJob, reject) =>
      child.once('exit', (code) => {
        pipe.destroy();
        child.stdio[4]?.destroy();
        if (code !== 100) {
          reject(new Error(`${jobId} exited ${code}: ${stderr.trim()}`));
          return;
        }
        const [startedAt, buildId] = readFileSync(join(startsDir, jobId), 'utf8').trim().split(' ');
        resolveJob({ jobId, buildId, latencyMs: Number(startedAt) - assigned });
      }),
    );
  };

  /** The build's own QUEUED + PROVISIONING, in ms, from its record (BatchGetBuilds' phase times). */
  const waitedInBuild = async (buildId) => {
    const record = await service.control('GET', `/_local/builds/${encodeURIComponent(buildId)}`);
    const spent = (type) => {
      const phase = record.phases.find((candidate) => candidate.phaseType === type);
      return phase?.endTime === undefined ? 0 : (phase.endTime - phase.startTime) * 1000;
    };
    // A standby is started without CBACTIONS_JOB_ID; a job's own build with it.
    return { queued: spent('QUEUED'), provisioning: spent('PROVISIONING'), onStandby: !JSON.stringify(record.request).includes('"CBACTIONS_JOB_ID"') };
  };

  async function measure(column, configPath, stateDir, count, beforeEach) {
    const results = [];
    if (count === 'single') {
      for (let i = 0; i < SINGLE; i += 1) {
        await beforeEach?.(1);
        results.push(await startJob(column, configPath, stateDir));
      }
    } else {
      await beforeEach?.(count);
      results.push(...(await Promise.all(Array.from({ length: count }, () => startJob(column, configPath, stateDir)))));
    }
    for (const result of results) Object.assign(result, await waitedInBuild(result.buildId));
    return results;
  }

  const writeConfig = (name, pool) => {
    const path = join(base, `${name}.yaml`);
    writeFileSync(
      path,
      JSON.stringify({
        github: { scope: { repository: 'octo/repo' }, auth: { token: { env: 'GITHUB_TOKEN' } } },
        codebuild: { projectName: 'cbactions', region: 'us-east-1' },
        payloads: { key: { local: { file: keyFile } }, store: { local: { dir: payloadDir } } },
        pools: [{ name: 'default', labels: ['cbactions'], slots: 1, ...pool }],
      }),
    );
    return path;
  };

  const scenarios = ['single', ...BURSTS];
  const report = { cold: new Map(), warm: new Map(), baseline: {} };

  // Cold: a new build per job, as today.
  {
    const configPath = writeConfig('cold', {});
    const stateDir = join(base, 'state-cold');
    const host = await startHost(configPath, stateDir, listenerRoot, hostEnv);
    // Warm-up (caches, the first job of the host), not measured: without simulated provisioning.
    await service.control('POST', '/_local/simulate', { provisioningSeconds: 0 });
    await startJob('warmup', configPath, stateDir);
    // Baseline: the cold path alone, no simulated provisioning.
    report.baseline.noProvisioning = await measure('cold0', configPath, stateDir, 'single');
    await service.control('POST', '/_local/simulate', { provisioningSeconds: PROVISIONING_SECONDS });
    for (const scenario of scenarios) {
      process.stderr.write(`cold: ${scenario === 'single' ? `${SINGLE} single jobs` : `a burst of ${scenario}`}…\n`);
      report.cold.set(scenario, await measure('cold', configPath, stateDir, scenario));
    }
    await host.stop();
  }

  // Warm: standby builds (pools[].warm), when this build has them.
  let warmUnavailable;
  const standbyStats = {};
  if (!warmInSchema) {
    warmUnavailable = 'pools[].warm is not in this build\'s configuration schema';
  } else {
    const configPath = writeConfig('warm', { warm: { standby: STANDBYS, maxWaitMinutes: MAX_WAIT_MINUTES } });
    const stateDir = join(base, 'state-warm');
    const host = await startHost(configPath, stateDir, listenerRoot, hostEnv);
    if (!host.ready.warm) {
      warmUnavailable = host.ready.warmUnavailable ?? 'the host could not start standby builds';
    } else {
      const used = new Set();
      const standbyRecords = async () => {
        const { builds } = await service.control('GET', '/_local/builds');
        return builds.filter((build) => !JSON.stringify(build.request).includes('"CBACTIONS_JOB_ID"'));
      };
      /** Standby builds that said they are ready and have not run a job yet. */
      const readyStandbys = async () => {
        for (const name of readdirSync(startsDir)) used.add(readFileSync(join(startsDir, name), 'utf8').trim().split(' ')[1]);
        let ready = 0;
        for (const build of await standbyRecords()) {
          if (build.buildComplete || used.has(build.id) || build.currentPhase !== 'BUILD') continue;
          if ((await service.control('GET', `/_local/builds/${encodeURIComponent(build.id)}/log`)).includes('standby-ready')) ready += 1;
        }
        return ready;
      };
      const untilReady = (count) => waitFor(`${count} standby builds ready`, async () => (await readyStandbys()) >= count, 600_000, 500);
      for (const scenario of scenarios) {
        process.stderr.write(`warm: ${scenario === 'single' ? `${SINGLE} single jobs` : `a burst of ${scenario}`}…\n`);
        report.warm.set(scenario, await measure('warm', configPath, stateDir, scenario, untilReady));
      }
      // Standby build-minutes per hour: the standbys' lifetimes within a window without jobs.
      await untilReady(STANDBYS);
      const windowStart = Date.now() / 1000;
      await new Promise((resolveIdle) => setTimeout(resolveIdle, IDLE_SECONDS * 1000));
      const windowEnd = Date.now() / 1000;
      let standbySeconds = 0;
      let standbyBuilds = 0;
      for (const build of await standbyRecords()) {
        const start = build.build.startTime;
        const end = build.build.endTime ?? windowEnd;
        const overlap = Math.min(end, windowEnd) - Math.max(start, windowStart);
        if (overlap > 0) {
          standbySeconds += overlap;
          standbyBuilds += 1;
        }
      }
      standbyStats.minutesPerHour = (standbySeconds / 60) * (3600 / (windowEnd - windowStart));
      standbyStats.builds = standbyBuilds;
    }
    await host.stop();
  }
  const s3 = await measureS3Polls(10_000);
  await service.stop();
  rmSync(base, { recursive: true, force: true });

  // The table.
  const seconds = (ms) => `${(ms / 1000).toFixed(2)} s`;
  const stat = (results, p, pick = (r) => r.latencyMs) => (results ? seconds(percentile(results.map(pick), p)) : '—');
  const warmCell = (text) => (warmUnavailable ? 'n/a' : text);
  const beyond = (r) => r.latencyMs - r.queued - r.provisioning;
  const rows = [];
  for (const scenario of scenarios) {
    const label = scenario === 'single' ? `1 job at a time (${SINGLE} jobs)` : `burst of ${scenario} at once`;
    for (const p of [50, 95]) rows.push([`${label}: assigned → Runner.Worker, p${p}`, stat(report.cold.get(scenario), p), warmCell(stat(report.warm.get(scenario), p))]);
    rows.push([`${label}: beyond the build's QUEUED + PROVISIONING, p50 / p95`, `${stat(report.cold.get(scenario), 50, beyond)} / ${stat(report.cold.get(scenario), 95, beyond)}`, warmCell('(waited before the job)')]);
  }
  const warmJobs = [...report.warm.values()].flat();
  rows.push(['jobs that ran on a standby build', '0', warmCell(`${warmJobs.filter((r) => r.onStandby).length} of ${warmJobs.length}`)]);
  rows.push([`standby build-minutes per hour (${STANDBYS} standbys, ${IDLE_SECONDS} s idle window)`, '0', warmCell(`${standbyStats.minutesPerHour?.toFixed(1)} (${((standbyStats.minutesPerHour ?? NaN) / STANDBYS).toFixed(1)} per standby; ${standbyStats.builds} builds)`)]);
  rows.push([`S3 GET requests per standby-hour (poll every ${POLL_MS} ms)`, '0', `${Math.round(s3.perHour).toLocaleString('en-US')} (measured; ≤ ${(3_600_000 / POLL_MS).toLocaleString('en-US')} = 3600 s / ${POLL_MS / 1000} s)`]);
  const header = ['', `cold (a new build per job, ${PROVISIONING_SECONDS} s provisioning)`, 'warm (standby builds)'];
  const table = [header, ...rows];
  const widths = header.map((_, column) => Math.max(...table.map((row) => row[column].length)));
  for (const row of table) process.stdout.write(`${row.map((cell, column) => cell.padEnd(widths[column])).join('  ')}\n`);

  const allCold = [...report.cold.values()].flat();
  process.stdout.write('\nBaseline, same run:\n');
  process.stdout.write(`  simulated PROVISIONING the cold builds spent (records): p50 ${stat(allCold, 50, (r) => r.provisioning)}, p95 ${stat(allCold, 95, (r) => r.provisioning)}; QUEUED p95 ${stat(allCold, 95, (r) => r.queued)}\n`);
  process.stdout.write(`  cold, no simulated provisioning (our cold path alone, ${SINGLE} jobs): p50 ${stat(report.baseline.noProvisioning, 50)}, p95 ${stat(report.baseline.noProvisioning, 95)}\n`);
  if (warmUnavailable) process.stdout.write(`\nwarm: not available on this build (${warmUnavailable}); no warm figures are shown.\n`);
  const s3Cost = ((3_600_000 / POLL_MS) * PRICE.s3GetPer1000) / 1000;
  process.stdout.write(
    `\nPrices (us-east-1 list prices, an assumption to check for your region): S3 GET $${PRICE.s3GetPer1000} per 1,000 → ${(3_600_000 / POLL_MS).toLocaleString('en-US')} GETs × $${PRICE.s3GetPer1000}/1,000 = $${s3Cost.toFixed(4)} per standby-hour;` +
      ` BUILD_GENERAL1_SMALL $${PRICE.smallBuildMinute}/build-minute → 60 × $${PRICE.smallBuildMinute} = $${(60 * PRICE.smallBuildMinute).toFixed(2)} per standby-hour.\n`,
  );
  process.stdout.write(`(S3 polling measured for ${(s3.elapsed / 1000).toFixed(1)} s: ${s3.gets} GETs; ${process.version}, ${process.platform}/${process.arch}, ${existsSync('/proc/cpuinfo') ? readFileSync('/proc/cpuinfo', 'utf8').split('\n').filter((line) => line.startsWith('processor')).length : '?'} CPUs)\n`);
}

try {
  await main();
} catch (error) {
  process.stderr.write(`start-latency: ${error instanceof Error ? error.message : String(error)}\n`);
  // Hosts first (they stop their standbys), then the build service (it stops every build).
  for (const stop of [...running].reverse()) await stop();
  process.exit(1);
}
process.exit(0);
