import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { phaseSummary, startInProcess, type InProcess } from './harness.js';

// Buildspec semantics, observed through the real CodeBuild SDK against the in-process service.

const SUCCESS = `version: 0.2
env:
  variables:
    FROM_BUILDSPEC: spec
    SHADOWED: by-buildspec
  exported-variables:
    - RESULT
    - PLAIN
    - FROM_PROJECT
    - NEVER_SET
phases:
  install:
    commands:
      - PLAIN=not-exported
      - mkdir -p work/deeper && cd work
  pre_build:
    commands:
      - cd deeper
      - export RESULT="$PLAIN:$(basename "$PWD")"
  build:
    commands:
      - echo "plain=$PLAIN result=$RESULT pwd=$(pwd)"
      - echo "project=$FROM_PROJECT override=$FROM_OVERRIDE spec=$FROM_BUILDSPEC shadowed=$SHADOWED"
      - env | grep -E '^(CODEBUILD_|AWS_REGION|AWS_DEFAULT_REGION)' | sort > "$CODEBUILD_SRC_DIR/codebuild.env"
  post_build:
    commands:
      - 'echo "multi word: $RESULT" > out.txt'
`;

const INSTALL_FAILS = `version: 0.2
phases:
  install:
    commands:
      - echo install-ran
      - sh -c 'exit 3'
      - echo never-here
    finally:
      - echo install-finally-ran
  pre_build:
    commands:
      - echo pre-build-ran
  build:
    commands:
      - echo build-ran
  post_build:
    commands:
      - echo post-build-ran
`;

const BUILD_FAILS = `version: 0.2
env:
  exported-variables: [SUCCEEDING_IN_POST]
phases:
  build:
    commands:
      - echo build-ran
      - false
      - echo never-here
    finally:
      - echo build-finally-ran succeeding=$CODEBUILD_BUILD_SUCCEEDING
  post_build:
    commands:
      - echo post-build-ran
      - export SUCCEEDING_IN_POST=$CODEBUILD_BUILD_SUCCEEDING
`;

const FINALLY_FAILS = `version: 0.2
phases:
  pre_build:
    commands:
      - echo pre-build-ok
    finally:
      - exit 4
      - echo second-finally-skipped
  build:
    commands:
      - echo build-ran
`;

const CONTINUE_AND_ABORT = `version: 0.2
phases:
  install:
    on-failure: CONTINUE
    commands:
      - exit 1
  pre_build:
    commands:
      - echo pre-build-ran-after-continue
  build:
    on-failure: ABORT
    commands:
      - exit 2
  post_build:
    commands:
      - echo post-build-ran
`;

const BASH = `version: 0.2
env:
  shell: bash
  exported-variables: [ARR_LEN]
phases:
  build:
    commands:
      - arr=(a b c); export ARR_LEN=\${#arr[@]}
      - echo "shell=$BASH_VERSION" | cut -c1-11
`;

describe('buildspec execution', () => {
  let service: InProcess;

  beforeAll(async () => {
    service = await startInProcess({
      buildspecs: {
        success: SUCCESS,
        'install-fails': INSTALL_FAILS,
        'build-fails': BUILD_FAILS,
        'finally-fails': FINALLY_FAILS,
        'continue-abort': CONTINUE_AND_ABORT,
        bash: BASH,
        missing: 'version: 0.2\nphases: {}\n',
      },
      projects: { success: { environmentVariables: { FROM_PROJECT: 'project', SHADOWED: 'by-project' } } },
    });
  });

  afterAll(async () => {
    await service?.close();
  });

  it('runs all commands as one shell session and reports exported variables', async () => {
    const started = await service.start({
      projectName: 'success',
      environmentVariablesOverride: [{ name: 'FROM_OVERRIDE', value: 'override', type: 'PLAINTEXT' }],
    });
    expect(started.id).toMatch(/^success:[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(started.buildStatus).toBe('IN_PROGRESS');
    const build = await service.waitComplete(started.id as string);

    expect(build.buildStatus).toBe('SUCCEEDED');
    expect(build.currentPhase).toBe('COMPLETED');
    expect(phaseSummary(build)).toEqual([
      'SUBMITTED:SUCCEEDED',
      'QUEUED:SUCCEEDED',
      'PROVISIONING:SUCCEEDED',
      'DOWNLOAD_SOURCE:SUCCEEDED',
      'INSTALL:SUCCEEDED',
      'PRE_BUILD:SUCCEEDED',
      'BUILD:SUCCEEDED',
      'POST_BUILD:SUCCEEDED',
      'UPLOAD_ARTIFACTS:SUCCEEDED',
      'FINALIZING:SUCCEEDED',
      'COMPLETED',
    ]);
    expect(build.startTime).toBeInstanceOf(Date);
    expect(build.endTime).toBeInstanceOf(Date);
    // Unset variables are not reported; plain (unexported) shell variables are.
    expect(build.exportedEnvironmentVariables).toEqual([
      { name: 'RESULT', value: 'not-exported:deeper' },
      { name: 'PLAIN', value: 'not-exported' },
      { name: 'FROM_PROJECT', value: 'project' },
    ]);

    const log = await service.log(build.id as string);
    const srcDir = join(service.stateDir, 'builds', (build.id as string).split(':')[1] as string, 'src');
    expect(log).toContain(`plain=not-exported result=not-exported:deeper pwd=${srcDir}/work/deeper`);
    // Precedence: override > project > buildspec.
    expect(log).toContain('project=project override=override spec=spec shadowed=by-project');
    expect(log).toContain('[Container]');
    expect(log).toContain('Running command cd deeper');
    expect(readFileSync(join(srcDir, 'work', 'deeper', 'out.txt'), 'utf8')).toBe('multi word: not-exported:deeper\n');

    const env = Object.fromEntries(
      readFileSync(join(srcDir, 'codebuild.env'), 'utf8')
        .trim()
        .split('\n')
        .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
    );
    expect(env).toMatchObject({
      CODEBUILD_BUILD_ID: build.id,
      CODEBUILD_BUILD_ARN: build.arn,
      CODEBUILD_BUILD_NUMBER: String(build.buildNumber),
      CODEBUILD_SRC_DIR: srcDir,
      CODEBUILD_CI: 'true',
      CODEBUILD_BUILD_SUCCEEDING: '1',
      CODEBUILD_BUILD_IMAGE: 'aws/codebuild/amazonlinux-x86_64-standard:5.0',
      CODEBUILD_INITIATOR: 'cbactions-local',
      CODEBUILD_LOG_PATH: (build.id as string).split(':')[1],
      CODEBUILD_PROJECT_ARN: 'arn:aws:codebuild:us-east-1:000000000000:project/success',
      AWS_REGION: 'us-east-1',
      AWS_DEFAULT_REGION: 'us-east-1',
    });
    expect(env.CODEBUILD_BUILD_URL).toContain('console.aws.amazon.com/codebuild');
    expect(Number(env.CODEBUILD_START_TIME)).toBe(build.startTime?.getTime());
    expect(build.arn).toBe(`arn:aws:codebuild:us-east-1:000000000000:build/${build.id}`);
    expect(build.logs?.streamName).toBe((build.id as string).split(':')[1]);
    expect(build.logs?.groupName).toBe('/aws/codebuild/success');
  });

  it('skips from a failed INSTALL to FINALIZING, after its finally block', async () => {
    const build = await service.waitComplete((await service.start({ projectName: 'install-fails' })).id as string);
    expect(build.buildStatus).toBe('FAILED');
    expect(phaseSummary(build)).toEqual([
      'SUBMITTED:SUCCEEDED',
      'QUEUED:SUCCEEDED',
      'PROVISIONING:SUCCEEDED',
      'DOWNLOAD_SOURCE:SUCCEEDED',
      'INSTALL:FAILED',
      'FINALIZING:SUCCEEDED',
      'COMPLETED',
    ]);
    const install = build.phases?.find((phase) => phase.phaseType === 'INSTALL');
    expect(install?.contexts).toEqual([{ statusCode: 'COMMAND_EXECUTION_ERROR', message: "Error while executing command: sh -c 'exit 3'. Reason: exit status 3" }]);
    const log = await service.log(build.id as string);
    expect(log).toContain('install-ran');
    expect(log).toContain('install-finally-ran');
    expect(log).not.toContain('never-here');
    expect(log).not.toContain('pre-build-ran');
    expect(log).not.toContain('build-ran');
    expect(log).not.toContain('post-build-ran');
  });

  it('still runs POST_BUILD after a failed BUILD, with CODEBUILD_BUILD_SUCCEEDING=0', async () => {
    const build = await service.waitComplete((await service.start({ projectName: 'build-fails' })).id as string);
    expect(build.buildStatus).toBe('FAILED');
    expect(phaseSummary(build).slice(4)).toEqual(['INSTALL:SUCCEEDED', 'PRE_BUILD:SUCCEEDED', 'BUILD:FAILED', 'POST_BUILD:SUCCEEDED', 'UPLOAD_ARTIFACTS:SUCCEEDED', 'FINALIZING:SUCCEEDED', 'COMPLETED']);
    expect(build.phases?.find((phase) => phase.phaseType === 'BUILD')?.contexts?.[0]).toEqual({
      statusCode: 'COMMAND_EXECUTION_ERROR',
      message: 'Error while executing command: false. Reason: exit status 1',
    });
    const log = await service.log(build.id as string);
    expect(log).toContain('build-finally-ran succeeding=1');
    expect(log).toContain('post-build-ran');
    expect(log).not.toContain('never-here');
    expect(build.exportedEnvironmentVariables).toEqual([{ name: 'SUCCEEDING_IN_POST', value: '0' }]);
  });

  it('fails a phase whose finally block fails, stopping that block at the failing command', async () => {
    const build = await service.waitComplete((await service.start({ projectName: 'finally-fails' })).id as string);
    expect(build.buildStatus).toBe('FAILED');
    expect(phaseSummary(build).slice(4, 6)).toEqual(['INSTALL:SUCCEEDED', 'PRE_BUILD:FAILED']);
    expect(build.phases?.find((phase) => phase.phaseType === 'PRE_BUILD')?.contexts?.[0]?.message).toBe('Error while executing command: exit 4. Reason: exit status 4');
    const log = await service.log(build.id as string);
    expect(log).toContain('pre-build-ok');
    expect(log).not.toContain('second-finally-skipped');
    expect(log).not.toContain('build-ran');
  });

  it('honours on-failure CONTINUE and ABORT', async () => {
    const build = await service.waitComplete((await service.start({ projectName: 'continue-abort' })).id as string);
    expect(build.buildStatus).toBe('FAILED');
    expect(phaseSummary(build).slice(4)).toEqual(['INSTALL:FAILED', 'PRE_BUILD:SUCCEEDED', 'BUILD:FAILED', 'FINALIZING:SUCCEEDED', 'COMPLETED']);
    const log = await service.log(build.id as string);
    expect(log).toContain('pre-build-ran-after-continue');
    expect(log).not.toContain('post-build-ran');
  });

  it('uses the shell named in env.shell', async () => {
    const build = await service.waitComplete((await service.start({ projectName: 'bash' })).id as string);
    expect(build.buildStatus).toBe('SUCCEEDED');
    expect(build.exportedEnvironmentVariables).toEqual([{ name: 'ARR_LEN', value: '3' }]);
    expect(await service.log(build.id as string)).toMatch(/shell=\d/);
  });

  it('honours an inline buildspecOverride and a buildspecOverride path', async () => {
    const inline = await service.waitComplete(
      (
        await service.start({
          projectName: 'missing',
          buildspecOverride: 'version: 0.2\nenv:\n  exported-variables: [WHERE]\nphases:\n  build:\n    commands:\n      - export WHERE=inline\n',
        })
      ).id as string,
    );
    expect(inline.buildStatus).toBe('SUCCEEDED');
    expect(inline.exportedEnvironmentVariables).toEqual([{ name: 'WHERE', value: 'inline' }]);
    expect(inline.source?.buildspec).toContain('export WHERE=inline');

    const byPath = await service.waitComplete((await service.start({ projectName: 'missing', buildspecOverride: 'bash.buildspec.yml' })).id as string);
    expect(byPath.buildStatus).toBe('SUCCEEDED');
    expect(byPath.exportedEnvironmentVariables).toEqual([{ name: 'ARR_LEN', value: '3' }]);
  });

  it('fails DOWNLOAD_SOURCE with YAML_FILE_ERROR for a bad or unsupported buildspec', async () => {
    for (const [buildspecOverride, expected] of [
      ['version: 0.2\nphases:\n  build:\n    commands:\n      - echo: not a string\n', /phases\.build\.commands\[0\]/],
      ['version: 0.1\nphases: {}\n', /version 0\.2/],
      ['version: 0.2\nenv:\n  parameter-store:\n    X: /x\nphases: {}\n', /parameter-store is not supported by the local build service/],
      ['no-such-buildspec.yml', /cannot read buildspec/],
    ] as const) {
      const build = await service.waitComplete((await service.start({ projectName: 'missing', buildspecOverride })).id as string);
      expect(build.buildStatus).toBe('FAILED');
      expect(phaseSummary(build).slice(2)).toEqual(['PROVISIONING:SUCCEEDED', 'DOWNLOAD_SOURCE:FAILED', 'FINALIZING:SUCCEEDED', 'COMPLETED']);
      const context = build.phases?.find((phase) => phase.phaseType === 'DOWNLOAD_SOURCE')?.contexts?.[0];
      expect(context?.statusCode).toBe('YAML_FILE_ERROR');
      expect(context?.message).toMatch(expected);
    }
  });

  it('numbers builds per project and reports overrides back in the build', async () => {
    const a = await service.start({ projectName: 'missing' });
    const b = await service.start({
      projectName: 'missing',
      computeTypeOverride: 'BUILD_GENERAL1_LARGE',
      environmentTypeOverride: 'ARM_CONTAINER',
      imageOverride: 'example/image:1',
      privilegedModeOverride: true,
      fleetOverride: { fleetArn: 'arn:aws:codebuild:us-east-1:000000000000:fleet/f:1' },
      serviceRoleOverride: 'arn:aws:iam::000000000000:role/build',
      timeoutInMinutesOverride: 17,
      queuedTimeoutInMinutesOverride: 9,
      imagePullCredentialsTypeOverride: 'SERVICE_ROLE',
    });
    expect((b.buildNumber ?? 0) - (a.buildNumber ?? 0)).toBe(1);
    expect(b.environment).toMatchObject({
      computeType: 'BUILD_GENERAL1_LARGE',
      type: 'ARM_CONTAINER',
      image: 'example/image:1',
      privilegedMode: true,
      fleet: { fleetArn: 'arn:aws:codebuild:us-east-1:000000000000:fleet/f:1' },
      imagePullCredentialsType: 'SERVICE_ROLE',
    });
    expect(b.serviceRole).toBe('arn:aws:iam::000000000000:role/build');
    expect(b.timeoutInMinutes).toBe(17);
    expect(b.queuedTimeoutInMinutes).toBe(9);
    const record = service.running.service.record(b.id as string);
    expect(record?.request).toMatchObject({ projectName: 'missing', computeTypeOverride: 'BUILD_GENERAL1_LARGE', timeoutInMinutesOverride: 17 });
    await service.waitComplete(a.id as string);
    await service.waitComplete(b.id as string);
  });
});
