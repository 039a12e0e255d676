#!/usr/bin/env node
// The mux's job-serving half in a process of its own, for bench/dispatch.mjs:
//   node bench/dispatch-host.mjs <config> <stateDir> <in-process|worker> <listener root>
// Always the shared build watcher on <stateDir>/watcher.sock (as the mux runs it); with
// in-process also the dispatch server on <stateDir>/dispatch.sock, with the mux's one set
// of clients (src/dispatch/job-clients.ts). Prints "ready" once listening; stops on SIGTERM.
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const dist = (path) => import(join(ROOT, 'dist', 'src', path));
const { loadConfigFile } = await dist('config/load.js');
const { createJobClients } = await dist('dispatch/job-clients.js');
const { BuildWatcher } = await dist('watcher/build-watcher.js');
const { WatcherServer } = await dist('watcher/watcher-server.js');
const { DispatchServer } = await dist('mux/dispatch-server.js');
const { createLogger } = await dist('util/logger.js');

const [configPath, stateDir, mode, listenerRoot] = process.argv.slice(2);
const logger = createLogger({ name: 'bench-mux', level: 'warn' });
const config = await loadConfigFile(configPath, { runtime: true });
// The endpoint and credentials come from the environment (AWS_ENDPOINT_URL_CODEBUILD), as for the mux.
const clients = createJobClients(config, configPath, process.env);
// The mux's defaults: at least 1 s between sweeps, at most one BatchGetBuilds call per second.
const watcher = new BuildWatcher(clients.builds, logger);
watcher.start();
const watcherServer = await WatcherServer.listen({ socketPath: join(stateDir, 'watcher.sock'), watcher, builds: clients.builds, logger });
const dispatch =
  mode === 'in-process'
    ? await DispatchServer.listen({
        socketPath: join(stateDir, 'dispatch.sock'),
        config,
        configPath,
        builds: clients.builds,
        payloads: () => clients.payloads(),
        waiter: watcher,
        slot: (slotId) => (slotId.startsWith('bench-') ? { pool: config.pools[0].name, configDir: listenerRoot } : undefined),
        logger,
      })
    : undefined;
process.stdout.write('ready\n');
process.once('SIGTERM', async () => {
  await dispatch?.close();
  await watcherServer.close();
  await watcher.close();
  clients.destroy();
  process.exit(0);
});
