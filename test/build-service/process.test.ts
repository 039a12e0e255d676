import { BatchGetBuildsCommand, CodeBuildClient, ListBuildsForProjectCommand, StartBuildCommand, StopBuildCommand } from '@aws-sdk/client-codebuild';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBuildService, type BuildServiceProcess } from '../support/build-service.js';
import { PROJECT_ROOT } from '../support/runner-root.js';
import { processAlive, waitUntil } from './harness.js';

// The BUILT binary, as an operator runs it: `cbactions build-service`.

const BUILDSPEC = `version: 0.2
env:
  exported-variables: [GREETING, CBACTIONS_EXIT_CODE]
phases:
  build:
    commands:
      - export GREETING="hello $WHO from $PROJECT_VAR"
      - export CBACTIONS_EXIT_CODE=100
`;

const LONG = `version: 0.2
phases:
  build:
    commands:
      - sleep 300 & echo $! > "$CODEBUILD_SRC_DIR/bg.pid"; touch "$CODEBUILD_SRC_DIR/ready"; wait
`;

describe('cbactions build-service (process)', () => {
  let service: BuildServiceProcess;
  let configDir: string;

  beforeAll(async () => {
    configDir = mkdtempSync(join(tmpdir(), 'cbactions-bs-process-'));
    writeFileSync(join(configDir, 'ok.yml'), BUILDSPEC);
    writeFileSync(join(configDir, 'long.yml'), LONG);
    service = await startBuildService({
      configDir,
      config: {
        region: 'eu-west-1',
        accountId: '123456789012',
        stopGraceMs: 500,
        projects: [
          { name: 'ok', buildspec: 'ok.yml', environmentVariables: { PROJECT_VAR: 'the-project' } },
          { name: 'long', buildspec: 'long.yml' },
        ],
      },
      faults: { throttle: { count: 1, operations: ['StartBuild'] } },
    });
  });

  afterAll(async () => {
    await service?.stop();
  });

  it('prints one listening line and serves the CodeBuild API and the control API', async () => {
    expect(service.endpoint).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const client = service.client();
    // Armed by --faults: the first StartBuild is throttled.
    await expect(client.send(new StartBuildCommand({ projectName: 'ok' }))).rejects.toMatchObject({ name: 'ThrottlingException', message: 'Rate exceeded' });

    const secret = 'world-VALUE-NOT-FOR-LOGS';
    const { build } = await client.send(new StartBuildCommand({ projectName: 'ok', environmentVariablesOverride: [{ name: 'WHO', value: secret, type: 'PLAINTEXT' }] }));
    const id = build?.id as string;
    expect(build?.arn).toBe(`arn:aws:codebuild:eu-west-1:123456789012:build/${id}`);
    const record = await service.waitForBuild(id);
    expect(record.buildStatus).toBe('SUCCEEDED');
    expect(record.request).toEqual({ projectName: 'ok', environmentVariablesOverride: [{ name: 'WHO', value: secret, type: 'PLAINTEXT' }] });
    expect(record.exportedEnvironmentVariables).toEqual([
      { name: 'GREETING', value: `hello ${secret} from the-project` },
      { name: 'CBACTIONS_EXIT_CODE', value: '100' },
    ]);

    const { builds } = await client.send(new BatchGetBuildsCommand({ ids: [id] }));
    expect(builds?.[0]?.exportedEnvironmentVariables).toEqual(record.exportedEnvironmentVariables);
    expect(await service.log(id)).toContain('Running command export CBACTIONS_EXIT_CODE=100');
    expect((await service.builds()).map((entry) => entry.id)).toContain(id);
    expect(await service.calls()).toMatchObject({ operations: { StartBuild: { calls: 2, throttled: 1 }, BatchGetBuilds: { calls: 1, throttled: 0 } } });

    const onDisk = JSON.parse(readFileSync(join(service.stateDir, 'builds', id.split(':')[1] as string, 'record.json'), 'utf8')) as { id: string };
    expect(onDisk.id).toBe(id);
    // The service's own logs carry names and ids, never values.
    expect(service.stderr()).toContain(id);
    expect(service.stderr()).toContain('WHO');
    expect(service.stderr()).not.toContain(secret);
  });

  it('sets and clears faults through the control API', async () => {
    await service.setFaults({ buildFailures: [{ phase: 'PROVISIONING', statusCode: 'CLIENT_ERROR', message: "Unable to pull customer's container image" }] });
    expect((await service.faults()).buildFailures).toHaveLength(1);
    const { build } = await service.client().send(new StartBuildCommand({ projectName: 'ok' }));
    const record = await service.waitForBuild(build?.id as string);
    expect(record.buildStatus).toBe('FAILED');
    expect(record.phases.find((phase) => phase.phaseType === 'PROVISIONING')?.contexts).toEqual([{ statusCode: 'CLIENT_ERROR', message: "Unable to pull customer's container image" }]);
    await service.setFaults({ accountLimit: {} });
    await service.clearFaults();
    expect(await service.faults()).toEqual({ buildFailures: [] });
    const again = await service.client().send(new StartBuildCommand({ projectName: 'ok' }));
    expect((await service.waitForBuild(again.build?.id as string)).buildStatus).toBe('SUCCEEDED');
  });
});

describe('cbactions build-service credentials (process)', () => {
  const DUMP_ENV = 'version: 0.2\nphases:\n  build:\n    commands:\n      - env\n';

  it('generates a key at start, writes it 0600 where its listening line says, and logs neither the secret nor the token', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cbactions-bs-creds-'));
    writeFileSync(join(dir, 'buildspec.yml'), DUMP_ENV);
    const first = await startBuildService({ buildspec: join(dir, 'buildspec.yml') });
    const second = await startBuildService({ buildspec: join(dir, 'buildspec.yml'), args: ['--credentials-file', join(dir, 'elsewhere', 'creds')] });
    try {
      expect(first.credentialsFile).toBe(join(first.stateDir, 'credentials'));
      expect(second.credentialsFile).toBe(join(dir, 'elsewhere', 'creds'));
      for (const service of [first, second]) {
        // The started record goes to stderr, another pipe than the listening line: wait for it.
        await waitUntil(() => service.stderr().includes('"event":"build-service.started"'), 15_000, 'the started log record');
        expect(statSync(service.credentialsFile).mode & 0o777).toBe(0o600);
        expect(service.key.accessKeyId).toMatch(/^CBLOCAL[A-Z2-7]{13}$/);
        const output = service.stdout() + service.stderr();
        expect(output).toContain(service.credentialsFile);
        expect(output).toContain(service.key.accessKeyId);
        expect(output).not.toContain(service.key.secretAccessKey);
        expect(output).not.toContain(service.key.controlToken);
      }
      expect(second.key.accessKeyId).not.toBe(first.key.accessKeyId);
      // One service's key is no good at the other.
      const crossed = new CodeBuildClient({ endpoint: second.endpoint, region: 'us-east-1', credentials: first.key, maxAttempts: 1 });
      await expect(crossed.send(new ListBuildsForProjectCommand({ projectName: 'cbactions' }))).rejects.toMatchObject({ name: 'UnrecognizedClientException' });
      crossed.destroy();
      // A build's environment has neither the key nor the file.
      const { build } = await first.client().send(new StartBuildCommand({ projectName: 'cbactions' }));
      const record = await first.waitForBuild(build?.id as string);
      expect(record.buildStatus).toBe('SUCCEEDED');
      const log = await first.log(record.id);
      expect(log).toContain('CODEBUILD_BUILD_ID=');
      expect(log).not.toContain(first.key.secretAccessKey);
      expect(log).not.toContain(first.key.accessKeyId);
    } finally {
      await first.stop();
      await second.stop();
    }
  });

  it('signs the standard SDK way: a client with only AWS_SHARED_CREDENTIALS_FILE and AWS_PROFILE gets through', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cbactions-bs-sdk-env-'));
    writeFileSync(join(dir, 'buildspec.yml'), DUMP_ENV);
    const service = await startBuildService({ buildspec: join(dir, 'buildspec.yml') });
    try {
      const script = [
        "const { CodeBuildClient, ListBuildsForProjectCommand } = await import('@aws-sdk/client-codebuild');",
        "const answer = await new CodeBuildClient({}).send(new ListBuildsForProjectCommand({ projectName: 'cbactions' }));",
        'process.stdout.write(JSON.stringify(answer.ids));',
      ].join('\n');
      const env = { ...process.env, ...service.clientEnv(), HOME: dir };
      const output = execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: PROJECT_ROOT, env, encoding: 'utf8' });
      expect(output).toBe('[]');
      // The same client with someone else's keys instead of the profile is refused.
      const foreign = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
        cwd: PROJECT_ROOT,
        env: { ...env, AWS_PROFILE: '', AWS_SHARED_CREDENTIALS_FILE: join(dir, 'none'), AWS_ACCESS_KEY_ID: 'AKIASOMEONEELSE00000', AWS_SECRET_ACCESS_KEY: 'not-the-key' },
        encoding: 'utf8',
      });
      expect(foreign.status).not.toBe(0);
      expect(foreign.stderr).toContain('UnrecognizedClientException');
    } finally {
      await service.stop();
    }
  });

  it('takes a fixed key pair from CBACTIONS_BUILD_SERVICE_* and never hands those variables to builds', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cbactions-bs-given-key-'));
    writeFileSync(join(dir, 'buildspec.yml'), DUMP_ENV);
    const given = { CBACTIONS_BUILD_SERVICE_ACCESS_KEY_ID: 'CBLOCALGIVENKEY00001', CBACTIONS_BUILD_SERVICE_SECRET_ACCESS_KEY: 'given-secret-NOT-FOR-BUILDS-42' };
    const service = await startBuildService({ buildspec: join(dir, 'buildspec.yml'), env: given });
    try {
      expect(service.key).toMatchObject({ accessKeyId: given.CBACTIONS_BUILD_SERVICE_ACCESS_KEY_ID, secretAccessKey: given.CBACTIONS_BUILD_SERVICE_SECRET_ACCESS_KEY });
      await waitUntil(() => service.stderr().includes('"event":"build-service.started"'), 15_000, 'the started log record');
      expect(service.stderr()).toContain('"keySource":"environment"');
      expect(service.stderr()).not.toContain(given.CBACTIONS_BUILD_SERVICE_SECRET_ACCESS_KEY);
      const { build } = await service.client().send(new StartBuildCommand({ projectName: 'cbactions' }));
      const log = await service.log((await service.waitForBuild(build?.id as string)).id);
      expect(log).toContain('CODEBUILD_BUILD_ID=');
      expect(log).not.toContain('CBACTIONS_BUILD_SERVICE_');
      expect(log).not.toContain(given.CBACTIONS_BUILD_SERVICE_SECRET_ACCESS_KEY);
    } finally {
      await service.stop();
    }
    const half = startBuildService({ buildspec: join(dir, 'buildspec.yml'), env: { CBACTIONS_BUILD_SERVICE_ACCESS_KEY_ID: 'CBLOCALGIVENKEY00001' } });
    await expect(half).rejects.toThrow(/exited \(\d+\) before listening/);
    await expect(half).rejects.toThrow(/set both or neither/);
  });
});

describe('cbactions build-service shutdown and configuration errors (process)', () => {
  it('on SIGTERM stops running builds, leaves no process behind and exits 0', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cbactions-bs-sigterm-'));
    writeFileSync(join(dir, 'buildspec.yml'), LONG);
    const service = await startBuildService({ buildspec: join(dir, 'buildspec.yml'), stopGraceMs: 500 });
    try {
      const { build } = await service.client().send(new StartBuildCommand({ projectName: 'cbactions' }));
      const id = build?.id as string;
      const src = join(service.stateDir, 'builds', id.split(':')[1] as string, 'src');
      await waitUntil(() => existsSync(join(src, 'ready')), 15_000, 'the build to start its commands');
      const bg = Number(readFileSync(join(src, 'bg.pid'), 'utf8'));
      expect(processAlive(bg)).toBe(true);
      const exit = await service.stop();
      expect(exit).toEqual({ code: 0, signal: null });
      expect(processAlive(bg)).toBe(false);
      const record = JSON.parse(readFileSync(join(service.stateDir, 'builds', id.split(':')[1] as string, 'record.json'), 'utf8')) as { buildStatus: string; buildComplete: boolean };
      expect(record).toMatchObject({ buildStatus: 'STOPPED', buildComplete: true });
      expect(service.stderr()).toContain('"event":"build-service.stopped"');
      expect(service.stdout()).toBe(
        `${JSON.stringify({ event: 'build-service.listening', endpoint: service.endpoint, region: 'us-east-1', credentialsFile: join(service.stateDir, 'credentials'), profile: 'cbactions-local' })}\n`,
      );
    } finally {
      await service.stop();
    }
  });

  it('takes --simulate: builds wait in PROVISIONING, GET /_local/simulate shows it, StopBuild ends the wait at once', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cbactions-bs-simulate-'));
    writeFileSync(join(dir, 'buildspec.yml'), BUILDSPEC);
    const simulated = await startBuildService({ buildspec: join(dir, 'buildspec.yml'), args: ['--simulate', '{"provisioningSeconds": 600, "jitterSeconds": 1, "seed": 5}'] });
    try {
      const shown = (await (await fetch(`${simulated.endpoint}/_local/simulate`, { headers: { authorization: `Bearer ${simulated.key.controlToken}` } })).json()) as unknown;
      expect(shown).toEqual({ default: { queuedSeconds: 0, provisioningSeconds: 600, jitterSeconds: 1, seed: 5 }, projects: {} });
      const { build } = await simulated.client().send(new StartBuildCommand({ projectName: 'cbactions' }));
      const id = build?.id as string;
      const provisioning = await simulated.waitForBuild(id, { until: (record) => record.currentPhase === 'PROVISIONING' });
      expect(provisioning.simulated?.provisioningSeconds).toBeGreaterThanOrEqual(599);
      await simulated.client().send(new StopBuildCommand({ id }));
      // Well under the 600 s it would otherwise wait.
      const stopped = await simulated.waitForBuild(id);
      expect(stopped.phases.map((phase) => `${phase.phaseType}:${phase.phaseStatus ?? ''}`)).toEqual(['SUBMITTED:SUCCEEDED', 'QUEUED:SUCCEEDED', 'PROVISIONING:STOPPED', 'FINALIZING:SUCCEEDED', 'COMPLETED:']);
    } finally {
      await simulated.stop();
    }
    const refused = startBuildService({ buildspec: join(dir, 'buildspec.yml'), args: ['--simulate', '{"queuedSeconds": -1}'] });
    await expect(refused).rejects.toThrow(/exited \(2\) before listening/);
    await expect(refused).rejects.toThrow(/simulate\.queuedSeconds: /);
  });

  it('exits 2 naming every invalid field', async () => {
    const attempt = startBuildService({ config: { region: 'mars', projects: [{ name: 'ok', timeoutInMinutes: 1 }] } });
    await expect(attempt).rejects.toThrow(/exited \(2\) before listening/);
    await expect(attempt).rejects.toThrow(/region: expected an AWS region/);
    await expect(attempt).rejects.toThrow(/projects\[0\]\.timeoutInMinutes: /);
  });
});
