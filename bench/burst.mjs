#!/usr/bin/env node
// Benchmark: a burst of jobs on a fixed pool (`slots: 50`) beside elastic pools (`idle: 2,
// max: 50`, with and without registrations held ahead), in one run on this machine, against
// the fake GitHub (its job queue) and the fake Runner.Listener with a simulated start-up time.
// Prints one table.
//
//   npm run build && node --no-warnings bench/burst.mjs [--jobs 50] [--startup-ms 3000] [--prepared 0,16,48]
//
// How the burst is timed: each pool runs in its own `cbactions mux` (the built binary) and is
// first brought to its steady state — every listener it keeps idle is polling, every
// registration it holds ahead is there — and that time is reported too ("ready after": for the
// fixed pool it is the registration ceiling, GitHub writes ≥ 1 s apart). Then all jobs are
// queued at once (t0). "all assigned" is the last job's assignment by the fake GitHub − t0.
// Jobs are held (the fake worker waits for a file) until every one is assigned, so no listener
// is freed during the burst; then they are released and the mux is stopped (SIGTERM, drain).
// - registrations per job: generate-jitconfig calls from t0 until the mux exited, per job; and
//   over the whole run (including steady state, and registrations deleted unused at exit);
// - peak listeners: the most listener sessions open at once (fake GitHub), and the most
//   busy + idle + starting the mux's /status reported (sampled every 100 ms);
// - mux memory: the mux process's VmRSS at steady state and its peak during the burst.
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { build } from 'esbuild';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { values: args } = parseArgs({
  options: {
    jobs: { type: 'string', default: '50' },
    'startup-ms': { type: 'string', default: '3000' },
    prepared: { type: 'string', default: '0,16,48' },
  },
});
const JOBS = Number(args.jobs);
const STARTUP_MS = Number(args['startup-ms']);
const PREPARED = args.prepared.split(',').filter(Boolean).map(Number);

// The fake GitHub and the test helpers are TypeScript under test/: bundle them for this run.
const work = mkdtempSync(join(tmpdir(), 'bench-burst-'));
const entry = join(work, 'entry.ts');
writeFileSync(entry, `export * from ${JSON.stringify(join(ROOT, 'test/support/fake-github.ts'))};\nexport * from ${JSON.stringify(join(ROOT, 'test/mux/helpers.ts'))};\n`);
// Two levels below the project root, as under test/: the helpers find bin/ and dist/ from there.
const bundled = join(ROOT, 'dist', 'bench', 'burst-support.mjs');
await build({ entryPoints: [entry], bundle: true, platform: 'node', format: 'esm', target: 'node20', outfile: bundled, packages: 'external', logLevel: 'error' });
const support = await import(pathToFileURL(bundled).href);
const { startFakeGitHub, makeMuxRunnerRoot, muxConfig, namedJob, startMux, waitFor, writeConfig, killEverything } = support;

function rssMiB(pid) {
  try {
    const match = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

const jitCalls = (fake) => fake.calls.filter((call) => call.method === 'POST' && call.path.endsWith('/generate-jitconfig') && call.status === 201).length;

async function scenario(label, pool) {
  const fake = await startFakeGitHub({ tokens: ['ghp_fake_test_token'] });
  const dir = mkdtempSync(join(work, 'run-'));
  const hold = join(dir, 'hold');
  mkdirSync(hold);
  const config = muxConfig({
    fake,
    runnerRoot: makeMuxRunnerRoot(join(dir, 'runner')),
    stateDir: join(dir, 'state'),
    pools: [{ name: 'burst', labels: ['burst'], ...pool }],
    // Hard-link roots: every slot its own _work for the fake workers that hold the jobs.
    mux: { isolation: 'hardlink', drainTimeoutSeconds: 600 },
  });
  const started = Date.now();
  const mux = await startMux(writeConfig(dir, config), { FAKE_LISTENER_STARTUP_MS: String(STARTUP_MS), CBACTIONS_LOG_LEVEL: 'info' }, 120_000);
  const capacity = async () => (await mux.status()).pools[0].capacity;
  const idleWanted = pool.slots ?? pool.idle;
  const preparedWanted = pool.prepared ?? 0;
  await waitFor(
    'steady state',
    async () => {
      const now = await capacity();
      return now.idle === idleWanted && now.prepared === preparedWanted && now.registering === 0 && now.starting === 0;
    },
    600_000,
    200,
  );
  const readyAfterS = (Date.now() - started) / 1000;
  const steadyRss = rssMiB(mux.child.pid);
  const registrationsBefore = jitCalls(fake);

  let peakStatus = 0;
  let peakRss = steadyRss;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      try {
        const now = await capacity();
        peakStatus = Math.max(peakStatus, now.busy + now.idle + now.starting);
      } catch {
        /* the mux is stopping */
      }
      peakRss = Math.max(peakRss, rssMiB(mux.child.pid) || 0);
      await new Promise((resolveTick) => setTimeout(resolveTick, 100));
    }
  })();

  const t0 = Date.now();
  const jobs = Array.from({ length: JOBS }, (_, n) => fake.queueJob(['burst'], namedJob(`burst ${n + 1}`, { action: 'rendezvous', rendezvousDir: hold, exitCode: 100 })));
  await waitFor('every job assigned', () => jobs.every((job) => job.status !== 'queued'), 900_000, 50);
  const waits = jobs.map((job) => job.assignedAt - t0).sort((a, b) => a - b);
  const allAssignedS = waits.at(-1) / 1000;
  writeFileSync(join(hold, 'go'), '');
  mux.kill('SIGTERM');
  const exit = await mux.exited;
  sampling = false;
  await sampler;
  const result = {
    label,
    readyAfterS,
    steadyListeners: idleWanted,
    allAssignedS,
    medianWaitS: waits[Math.floor(waits.length / 2)] / 1000,
    burstRegistrationsPerJob: (jitCalls(fake) - registrationsBefore) / JOBS,
    runRegistrationsPerJob: jitCalls(fake) / JOBS,
    peakSessions: fake.peakSessions,
    peakStatus,
    steadyRss,
    peakRss,
    max: pool.slots ?? pool.max,
    exit: exit.code,
    leftover: fake.runners.size,
  };
  await killEverything([fake]);
  await fake.stop();
  return result;
}

const results = [];
results.push(await scenario(`fixed (slots ${JOBS})`, { slots: JOBS }));
for (const prepared of PREPARED) results.push(await scenario(`elastic (idle 2, max ${JOBS}, prepared ${prepared})`, { idle: 2, max: JOBS, prepared, coolDownSeconds: 600 }));

const fixed = results[0];
const rows = [
  ['pool', 'ready after', 'listeners ready', 'all assigned', 'median wait', '× fixed', 'regs/job (burst)', 'regs/job (run)', 'peak listeners', 'mux RSS steady/peak', 'exit', 'left'],
  ...results.map((r) => [
    r.label,
    `${r.readyAfterS.toFixed(1)} s`,
    String(r.steadyListeners),
    `${r.allAssignedS.toFixed(2)} s`,
    `${r.medianWaitS.toFixed(2)} s`,
    (r.allAssignedS / fixed.allAssignedS).toFixed(1),
    r.burstRegistrationsPerJob.toFixed(2),
    r.runRegistrationsPerJob.toFixed(2),
    `${r.peakSessions} / ${r.peakStatus} (max ${r.max})`,
    `${r.steadyRss.toFixed(0)} / ${r.peakRss.toFixed(0)} MiB`,
    String(r.exit),
    String(r.leftover),
  ]),
];
const widths = rows[0].map((_, column) => Math.max(...rows.map((row) => row[column].length)));
console.log(`${JOBS} jobs at once, listener start-up ${STARTUP_MS} ms; peak listeners = sessions open at once (fake GitHub) / busy+idle+starting (mux); left = registrations left at exit`);
for (const row of rows) console.log(row.map((cell, column) => cell.padEnd(widths[column])).join('  ').trimEnd());
