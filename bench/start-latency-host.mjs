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
const say = (event) => process.stdout.write(`${JSON.stringify(event)}\n`);

/**
 * The mux's standby builds for `pool`, or a reason they are not there. Kept in this one
 * function: it is the only place that knows how the mux wires its standby manager.
 */
async function startStandbys() {
  if (!pool.warm || !(pool.warm.standby > 0)) return { reason: 'the pool has no warm.standby' };
  const manager = join(ROOT, 'dist', 'src', 'mux', 'standby-manager.js');
  if (!existsSync(manager)) return { reason: 'pools[].warm is in the schema, but this build has no standby manager (dist/src/mux/standby-manager.js)' };
  const module = await import(manager);
  if (typeof module.startStandbyManager !== 'function') return { reason: `${manager} has no startStandbyManager()` };
  const standbys = await module.startStandbyManager({ config, configPath, builds: clients.builds, payloads: () => clients.payloads(), waiter: watcher, logger });
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
