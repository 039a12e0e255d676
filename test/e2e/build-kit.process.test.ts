import { StartBuildCommand } from '@aws-sdk/client-codebuild';
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stageBuildKit } from '../../src/infra/build-kit.js';
import { startJobPathRig, type JobPathRig } from '../support/job-path.js';
import { jobMessage, PROJECT_ROOT } from '../support/runner-root.js';

/**
 * The buildspec's build-kit step on a "stock image": the build's PATH has no cbactions, only
 * node, the system tools and a fake `aws` that "downloads" a kit zipped from this checkout's
 * build output (the files the CDK app stages, src/infra/build-kit.ts). A job then runs through
 * the kit's `cbactions entrypoint`, exactly as on the cbactions image.
 */
const KIT_URI = 's3://cdk-hnb659fds-assets-123456789012-eu-west-1/0123abcd.zip';

describe('build kit: the buildspec installs cbactions on an image without it', () => {
  let base: string;
  let fakeBin: string;
  let awsCalls: string;
  let kitDir: string;
  let stockPath: string;
  let rig: JobPathRig;

  beforeAll(async () => {
    for (const tool of ['zip', 'unzip']) {
      try {
        execFileSync('sh', ['-c', `command -v ${tool}`]);
      } catch {
        throw new Error(`${tool} is not installed; the build-kit process test needs it (the buildspec unpacks the kit with unzip)`);
      }
    }
    base = mkdtempSync(join(tmpdir(), 'cbactions-kit-e2e-'));
    const staged = join(base, 'kit');
    mkdirSync(staged);
    stageBuildKit(PROJECT_ROOT, staged);
    const zip = join(base, 'kit.zip');
    execFileSync('zip', ['-qr', zip, '.'], { cwd: staged });

    fakeBin = join(base, 'fake-bin');
    mkdirSync(fakeBin);
    awsCalls = join(base, 'aws-calls.txt');
    writeFileSync(awsCalls, '');
    // The AWS CLI as the kit step calls it; any other object answers 403 like S3 does.
    writeFileSync(
      join(fakeBin, 'aws'),
      `#!/bin/sh\nprintf '%s\\n' "$*" >> '${awsCalls}'\n` +
        `if [ "$1 $2 $3" = "s3 cp --only-show-errors" ] && [ "$4" = '${KIT_URI}' ]; then exec cp '${zip}' "$5"; fi\n` +
        `echo "fatal error: An error occurred (403) when calling the HeadObject operation: Forbidden" >&2\nexit 1\n`,
    );
    // "A daemon already answers": the kit's start-dockerd.sh must not start a real dockerd here.
    writeFileSync(join(fakeBin, 'docker'), '#!/bin/sh\nexit 0\n');
    for (const name of ['aws', 'docker']) chmodSync(join(fakeBin, name), 0o755);
    symlinkSync(process.execPath, join(fakeBin, 'node'));
    stockPath = `${fakeBin}:/usr/bin:/bin`;
    kitDir = join(base, 'opt-cbactions');

    rig = await startJobPathRig({
      // The "image": a stock one, plus the project's CBACTIONS_KIT_S3_URI (and the kit
      // directory, which is /opt/cbactions on CodeBuild).
      serviceEnv: { PATH: stockPath, CBACTIONS_KIT_S3_URI: KIT_URI, CBACTIONS_KIT_DIR: kitDir },
    });
  });

  afterAll(async () => {
    await rig?.stop();
  });

  async function startBuild(variables: Record<string, string>): Promise<string> {
    const { build } = await rig.service.client().send(
      new StartBuildCommand({
        projectName: 'cbactions',
        environmentVariablesOverride: Object.entries(variables).map(([name, value]) => ({ name, value, type: 'PLAINTEXT' })),
      }),
    );
    return String(build?.id);
  }

  it('fetches and unpacks the kit, and the job runs through its `cbactions entrypoint` (exit 100)', async () => {
    const result = await rig.runJob({ jobBody: jobMessage({ jobId: 'job-kit', action: 'succeed' }) });
    expect(result).toMatchObject({ exitCode: 100, result: 'Succeeded', crashReport: null });

    expect(readFileSync(awsCalls, 'utf8')).toBe(`s3 cp --only-show-errors ${KIT_URI} ${kitDir}.zip\n`);
    for (const file of ['bin/cbactions', 'docker/install-runner.sh', 'docker/start-dockerd.sh']) expect(statSync(join(kitDir, file)).mode & 0o111, file).not.toBe(0);
    expect(existsSync(join(kitDir, 'dist', 'src', 'cli', 'main.js'))).toBe(true);

    const build = (await rig.service.builds()).find((record) => JSON.stringify(record.request).includes('"value":"job-kit"'));
    expect(build?.buildStatus).toBe('SUCCEEDED');
    expect(build?.exportedEnvironmentVariables).toContainEqual({ name: 'CBACTIONS_EXIT_CODE', value: '100' });
    const log = await rig.service.log(String(build?.id));
    expect(log).toContain(`cbactions build kit installed in ${kitDir}`);
    // The dockerd line found the kit's script (no cbactions-start-dockerd on a stock image).
    expect(log).toContain('cbactions-start-dockerd: a Docker daemon is already running');
  });

  it('a later command of the same build finds `cbactions` on the exported PATH', async () => {
    // The buildspec's own build phase runs `cbactions entrypoint`; with no payload references
    // it records why the job could not run, which only the kit's cbactions can do here.
    const id = await startBuild({ CBACTIONS_KIT_DIR: join(base, 'opt-cbactions-2') });
    const record = await rig.service.waitForBuild(id);
    expect(record.buildStatus).toBe('SUCCEEDED');
    expect(record.phases.find((phase) => phase.phaseType === 'BUILD')?.phaseStatus).toBe('SUCCEEDED');
    const failure = record.exportedEnvironmentVariables.find((variable) => variable.name === 'CBACTIONS_FAILURE')?.value ?? '';
    expect(failure).toMatch(/^PAYLOAD_BAD_REFERENCE: CBACTIONS_PAYLOAD_STORE is not set/);
    expect(await rig.service.log(id)).not.toContain('command not found');
  });

  it('fails the INSTALL phase with a clear message when the kit can not be downloaded', async () => {
    const id = await startBuild({ CBACTIONS_KIT_S3_URI: 's3://cdk-hnb659fds-assets-123456789012-eu-west-1/missing.zip', CBACTIONS_KIT_DIR: join(base, 'opt-cbactions-3') });
    const record = await rig.service.waitForBuild(id);
    expect(record.buildStatus).toBe('FAILED');
    expect(record.phases.find((phase) => phase.phaseType === 'INSTALL')?.phaseStatus).toBe('FAILED');
    expect(record.phases.some((phase) => phase.phaseType === 'BUILD')).toBe(false);
    const log = await rig.service.log(id);
    expect(log).toContain('cbactions could not install its build kit s3://cdk-hnb659fds-assets-123456789012-eu-west-1/missing.zip');
    expect(log).toContain('s3:GetObject');
  });

  it('does nothing where cbactions is already on the PATH (the cbactions image, local builds)', async () => {
    const before = readFileSync(awsCalls, 'utf8');
    const unused = join(base, 'opt-cbactions-4');
    const id = await startBuild({ PATH: `${join(PROJECT_ROOT, 'bin')}:${stockPath}`, CBACTIONS_KIT_DIR: unused });
    const record = await rig.service.waitForBuild(id);
    expect(record.buildStatus).toBe('SUCCEEDED');
    expect(readFileSync(awsCalls, 'utf8')).toBe(before);
    expect(existsSync(unused)).toBe(false);
    expect(await rig.service.log(id)).not.toContain(`build kit installed in ${unused}`);
  });
});
