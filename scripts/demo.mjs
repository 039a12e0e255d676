#!/usr/bin/env node
// Runs one GitHub Actions job through the whole cbactions path on this machine, with no
// GitHub and no AWS: a fake Runner.Listener hands a job to `cbactions worker` (through the
// installed Runner.Worker shim), which starts a build in the local CodeBuild-compatible
// build service; the repository's buildspec runs `cbactions entrypoint`, which opens the
// sealed job and runs a fake Runner.Worker; the job's exit code comes back.
//
//   npm run build && node scripts/demo.mjs [--action succeed|fail|crash|cancel] [--keep]
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const CLI = join(ROOT, 'bin', 'cbactions');
const { values } = parseArgs({ options: { action: { type: 'string', default: 'succeed' }, keep: { type: 'boolean', default: false } } });
const action = values.action;
if (!['succeed', 'fail', 'crash', 'cancel'].includes(action)) {
  process.stderr.write(`demo: --action must be succeed, fail, crash or cancel (got ${action})\n`);
  process.exit(2);
}

let runFakeJob;
let createLocalKeyFile;
try {
  ({ runFakeJob } = await import(join(ROOT, 'dist', 'test', 'fixtures', 'fake-listener.js')));
  ({ createLocalKeyFile } = await import(join(ROOT, 'dist', 'src', 'seal', 'local-key-service.js')));
} catch {
  process.stderr.write('demo: dist/ is missing; run "npm run build" first (or "npm run demo", which builds)\n');
  process.exit(2);
}

const say = (text) => process.stdout.write(`${text}\n`);
const base = mkdtempSync(join(tmpdir(), 'cbactions-demo-'));

// The listener's side: a runner installation with a registered runner and the cbactions shim.
const listenerRoot = join(base, 'listener-runner');
mkdirSync(join(listenerRoot, 'bin'), { recursive: true });
writeFileSync(join(listenerRoot, '.runner'), JSON.stringify({ agentId: 1, agentName: 'cbactions-demo', poolId: 1, poolName: 'Default', serverUrl: 'https://pipelines.actions.githubusercontent.com/demo', gitHubUrl: 'https://github.com/octo/demo', workFolder: '_work', disableUpdate: true, ephemeral: true }));
writeFileSync(join(listenerRoot, '.credentials'), JSON.stringify({ scheme: 'OAuth', data: { clientId: 'demo-client' } }));
execFileSync(CLI, ['install-worker', listenerRoot], { stdio: 'ignore' });

// The build's side: a runner installation whose Runner.Worker is the test fake.
const buildRoot = join(base, 'build-runner');
mkdirSync(join(buildRoot, 'bin'), { recursive: true });
writeFileSync(join(buildRoot, 'bin', 'Runner.Worker'), `#!/bin/sh\nFAKE_RUNNER_BIN_DIR="$(cd "$(dirname "$0")" && pwd -P)" exec "${process.execPath}" "${join(ROOT, 'dist', 'test', 'fixtures', 'fake-runner-worker.js')}" "$@"\n`);
chmodSync(join(buildRoot, 'bin', 'Runner.Worker'), 0o755);

// cbactions configuration: local key and payload directory instead of KMS and S3.
const keyFile = join(base, 'payload.key');
await createLocalKeyFile(keyFile);
mkdirSync(join(base, 'payloads'), { mode: 0o700 });
const configPath = join(base, 'cbactions.yaml');
writeFileSync(
  configPath,
  [
    'github: {scope: {repository: octo/demo}, auth: {token: {env: GITHUB_TOKEN}}}',
    'codebuild: {projectName: cbactions, region: us-east-1}',
    `payloads: {key: {local: {file: ${keyFile}}}, store: {local: {dir: ${join(base, 'payloads')}}}}`,
    'pools: [{name: default, labels: [cbactions], build: {computeType: BUILD_GENERAL1_SMALL}}]',
    '',
  ].join('\n'),
);

// The local CodeBuild: runs the repository's buildspec.yml as local processes.
const serviceConfig = join(base, 'build-service.json');
writeFileSync(serviceConfig, JSON.stringify({ stateDir: join(base, 'build-service'), projects: [{ name: 'cbactions', buildspec: join(ROOT, 'buildspec.yml'), environmentVariables: { CBACTIONS_RUNNER_ROOT: buildRoot, CBACTIONS_CANCEL_POLL_SECONDS: '0.5' } }] }));
const service = spawn(process.execPath, [CLI, 'build-service', '--config', serviceConfig, '--port', '0'], {
  env: { ...process.env, PATH: `${join(ROOT, 'bin')}:${process.env.PATH}` },
  stdio: ['ignore', 'pipe', 'ignore'],
});
// Its one stdout line says where it listens and where it wrote the key pair callers sign with.
const listening = await new Promise((resolveListening, reject) => {
  let out = '';
  service.stdout.on('data', (chunk) => {
    out += chunk;
    const line = out.split('\n').find((candidate) => candidate.includes('"build-service.listening"'));
    if (line) resolveListening(JSON.parse(line));
  });
  service.once('exit', (code) => reject(new Error(`the build service exited (${code})`)));
});
const { endpoint, credentialsFile, profile } = listening;
// The control API (/_local/...) takes the bearer token written beside the key.
const controlToken = /^cbactions_control_token\s*=\s*(\S+)/m.exec(readFileSync(credentialsFile, 'utf8'))?.[1];
say(`local build service (CodeBuild API) at ${endpoint}; its key is in ${credentialsFile} (profile ${profile})`);

const job = JSON.stringify({
  messageType: 'RunnerJobRequest',
  jobId: 'demo-job',
  jobDisplayName: 'demo',
  requestId: 1,
  variables: { 'fake.action': { value: action === 'cancel' ? 'wait-for-cancel' : action }, 'system.github.token': { value: 'ghs_demo-secret', isSecret: true } },
});
say(`fake Runner.Listener: sending job "demo" (${action}) to ${join(listenerRoot, 'bin', 'Runner.Worker')}`);
const result = await runFakeJob({
  binDir: join(listenerRoot, 'bin'),
  jobBody: job,
  ...(action === 'cancel' ? { followUp: { type: 2, afterMs: 4000 } } : {}),
  env: {
    ...process.env,
    AWS_ENDPOINT_URL_CODEBUILD: endpoint,
    AWS_REGION: listening.region,
    // The SDK's standard way to a key: the shared-credentials file and a profile in it.
    AWS_SHARED_CREDENTIALS_FILE: credentialsFile,
    AWS_PROFILE: profile,
    AWS_ACCESS_KEY_ID: '',
    AWS_SECRET_ACCESS_KEY: '',
    AWS_SESSION_TOKEN: '',
    CBACTIONS_CONFIG: configPath,
    CBACTIONS_WORKER_LOG: join(base, 'worker.log'),
  },
});

const builds = await (await fetch(`${endpoint}/_local/builds`, { headers: { authorization: `Bearer ${controlToken}` } })).json();
const build = builds.builds.at(-1);
if (build) {
  say(`CodeBuild build ${build.id}: ${build.buildStatus}`);
  say('--- build log ---');
  say(readFileSync(build.logFile, 'utf8').trimEnd());
  say('-----------------');
}
say(`cbactions worker exited ${result.exitCode ?? result.signal}: the listener reports the job as ${result.result}`);
if (result.crashReport) say(`what GitHub would show on the job: ${result.crashReport.join(' / ')}`);
service.kill('SIGTERM');
await new Promise((r) => service.once('exit', r));
if (!values.keep) rmSync(base, { recursive: true, force: true });
else say(`kept ${base} (worker log: ${join(base, 'worker.log')})`);
