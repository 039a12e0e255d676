#!/usr/bin/env node
// The host's shared build watcher in a process of its own, as the mux runs it, for
// bench/watcher.mjs: `node bench/watcher-host.mjs <codebuild endpoint> <socket path>`.
// Prints "ready" when the socket listens; stops on SIGTERM.
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { CodeBuildClient } = await import('@aws-sdk/client-codebuild');
const { AwsCodeBuildApi } = await import(join(ROOT, 'dist', 'src', 'dispatch', 'codebuild-api.js'));
const { BuildWatcher } = await import(join(ROOT, 'dist', 'src', 'watcher', 'build-watcher.js'));
const { WatcherServer } = await import(join(ROOT, 'dist', 'src', 'watcher', 'watcher-server.js'));
const { createLogger } = await import(join(ROOT, 'dist', 'src', 'util', 'logger.js'));

const [endpoint, socketPath] = process.argv.slice(2);
const logger = createLogger({ name: 'bench-watcher', level: 'warn' });
// Region and the build service's key from the environment bench/watcher.mjs gives (its credentials file and profile).
const client = new CodeBuildClient({ endpoint, maxAttempts: 1 });
const builds = new AwsCodeBuildApi(client);
// The mux's defaults: at least 1 s between sweeps, at most one BatchGetBuilds call per second.
const watcher = new BuildWatcher(builds, logger);
watcher.start();
const server = await WatcherServer.listen({ socketPath, watcher, builds, logger });
process.stdout.write('ready\n');
process.once('SIGTERM', async () => {
  await server.close();
  await watcher.close();
  client.destroy();
  process.exit(0);
});
