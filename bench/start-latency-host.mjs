#!/usr/bin/env node
// The mux's job-serving half for bench/start-latency.mjs, in a process of its own:
//   node bench/start-latency-host.mjs <config> <stateDir> <listener root>
// The mux's build watcher and its in-process dispatch server on <stateDir>/dispatch.sock, with
// the mux's one set of clients (src/dispatch/job-clients.ts), against whatever CodeBuild the
// environment names (AWS_ENDPOINT_URL_CODEBUILD: the local build service). Every shim whose
// slot id starts with "bench-" runs a job of the config's first pool.
//
// Warm: when that pool has `warm.standby` > 0 and this build has the mux's standby manager,
// the host keeps the standbys as the mux does (startStandbys below) and hands jobs to them.
// Prints one JSON line per event on stdout: {"kind":"ready","warm":…} once listening, then
// the dispatch server's events ("tracked", "done"). Stops on SIGTERM.
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const dist = (path) => import(join(ROOT, 'dist', 'src', path));
const { loadConfigFile } = await dist('config/load.js');
const { createJobClients } = await dist('dispatch/job-clients.js');
const { BuildWatcher } = await dist('watcher/build-watcher.js');
const { DispatchServer } = await dist('mux/dispatch-server.js');
const { createLogger } = await dist('util/logger.js');

const [configPath, stateDir, listenerRoot] = process.argv.slice(2);
const logger = createLogger({ name: 'bench-mux', level: process.env.BENCH_LOG_LEVEL ?? 'warn' });
const config = await loadConfigFile(configPath, { runtime: true });
const pool = config.pools[0];
const clients = createJobClients(config, configPath, process.env);
// The mux's defaults: at least 1 s between sweeps, at most one BatchGetBuilds call per second.
const watcher = new BuildWatcher(clients.builds, logger);
watcher.start();
/** What the mux puts in its listeners' environment (the task ARN in ECS); the bench's shims carry the same. */
const MUX_INSTANCE = 'bench-start-latency';
const say = (event) => process.stdout.write(`${JSON.stringify(event)}\n`);

/**
 * The mux's standby builds for the pool (src/mux/standby-pool.ts, wired as src/mux/main.ts
 * does), or why there are none. The only place here that knows how the mux keeps standbys.
 */
async function startStandbys() {
  if (!pool.warm || !(pool.warm.standby > 0)) return { reason: 'the pool has no warm.standby' };
  const path = join(ROOT, 'dist', 'src', 'mux', 'standby-pool.js');
  if (!existsSync(path)) return { reason: 'pools[].warm is in the schema, but this build has no standby manager (dist/src/mux/standby-pool.js)' };
  const { StandbyPool } = await import(path);
  const standbys = new StandbyPool({ config, configPath, builds: clients.builds, waiter: watcher, logger, env: { CBACTIONS_MUX_INSTANCE: MUX_INSTANCE } });
  if (!standbys.enabled) return { reason: 'the standby manager keeps no standbys for this config' };
  standbys.start();
  return { standbys };
}

const warm = await startStandbys();
const dispatch = await DispatchServer.listen({
  socketPath: join(stateDir, 'dispatch.sock'),
  config,
  configPath,
  builds: clients.builds,
  payloads: () => clients.payloads(),
  waiter: watcher,
  slot: (slotId) => (slotId.startsWith('bench-') ? { pool: pool.name, configDir: listenerRoot } : undefined),
  logger,
  onEvent: say,
  ...(warm.standbys ? { standbys: warm.standbys } : {}),
});
say({ kind: 'ready', warm: warm.standbys ? true : false, ...(warm.reason ? { warmUnavailable: warm.reason } : {}) });
process.once('SIGTERM', async () => {
  await dispatch.close();
  await warm.standbys?.close?.();
  await watcher.close();
  clients.destroy();
  process.exit(0);
});
