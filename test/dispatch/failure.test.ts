import { describe, expect, it } from 'vitest';
import type { BuildSnapshot } from '../../src/dispatch/codebuild-api.js';
import { consoleLink, explainBuild, formatFailure } from '../../src/dispatch/failure.js';
import { startFailure } from '../../src/dispatch/start-build.js';
import { awsError } from '../support/in-memory-builds.js';

const ARN = 'arn:aws:codebuild:eu-west-1:123456789012:build/cbactions:5d0e3c3a-1111-4222-8333-444455556666';

function build(changes: Partial<BuildSnapshot>): BuildSnapshot {
  return { id: 'cbactions:5d0e3c3a-1111-4222-8333-444455556666', arn: ARN, status: 'FAILED', complete: true, phases: [], exported: {}, ...changes };
}

function phase(type: string, status: string, statusCode: string, message: string) {
  return { type, status, contexts: [{ statusCode, message }] };
}

describe('the catalogue of infrastructure failures', () => {
  it('links to the build in the console', () => {
    expect(consoleLink(ARN)).toBe('https://eu-west-1.console.aws.amazon.com/codesuite/codebuild/123456789012/projects/cbactions/build/cbactions%3A5d0e3c3a-1111-4222-8333-444455556666/?region=eu-west-1');
    expect(consoleLink('arn:aws-cn:codebuild:cn-north-1:123456789012:build/p:u')).toContain('cn-north-1.console.amazonaws.cn');
    expect(consoleLink('not an arn')).toBeUndefined();
  });

  it('prints one line with the reason, the build id, the link and the code', () => {
    const line = formatFailure({ code: 'X', message: 'two\nlines', buildId: 'p:u', buildArn: ARN });
    expect(line.split('\n')).toHaveLength(1);
    expect(line).toBe(`cbactions: two lines [build p:u ${consoleLink(ARN)}] (X)`);
  });

  const cases: [string, BuildSnapshot, string, RegExp][] = [
    ['image pull', build({ image: 'example/img:1', phases: [phase('PROVISIONING', 'FAILED', 'CLIENT_ERROR', "Unable to pull customer's container image. CannotPullContainerError")] }), 'BUILD_IMAGE_PULL', /could not pull its container image example\/img:1/],
    ['VPC / ENI', build({ phases: [phase('PROVISIONING', 'FAILED', 'CLIENT_ERROR', 'Failed to create network interface (ENI) in subnet subnet-1')] }), 'BUILD_VPC_NETWORK', /could not attach to its VPC network/],
    ['provisioning', build({ status: 'FAULT', phases: [phase('PROVISIONING', 'FAULT', 'INTERNAL_ERROR', 'Internal service error')] }), 'BUILD_PROVISIONING', /could not provision the build \(FAULT in PROVISIONING\)/],
    ['provisioning timeout', build({ status: 'TIMED_OUT', phases: [phase('PROVISIONING', 'TIMED_OUT', 'BUILD_TIMED_OUT', 'Build has timed out.')] }), 'BUILD_PROVISIONING_TIMEOUT', /timed out while CodeBuild was still provisioning/],
    ['queued timeout', build({ status: 'TIMED_OUT', phases: [phase('QUEUED', 'TIMED_OUT', 'BUILD_TIMED_OUT', 'Build has timed out.')] }), 'BUILD_QUEUED_TIMEOUT', /queued timeout/],
    ['build timeout', build({ status: 'TIMED_OUT', phases: [phase('BUILD', 'TIMED_OUT', 'BUILD_TIMED_OUT', 'Build has timed out.')] }), 'BUILD_TIMEOUT', /reached its timeout/],
    ['identity mismatch reported by the entrypoint', build({ status: 'SUCCEEDED', exported: { CBACTIONS_FAILURE: 'PAYLOAD_IDENTITY_MISMATCH: this build runs as role A but its job was sealed for role B' } }), 'PAYLOAD_IDENTITY_MISMATCH', /could not run the job: this build runs as role A/],
    ['worker crash', build({ status: 'SUCCEEDED', exported: { CBACTIONS_EXIT_CODE: '134' } }), 'RUNNER_WORKER_CRASH', /Runner\.Worker crashed in the build \(exit code 134\)/],
    ['entrypoint crash', build({ phases: [phase('BUILD', 'FAILED', 'COMMAND_EXECUTION_ERROR', 'Error while executing command: cbactions entrypoint. Reason: exit status 1')] }), 'ENTRYPOINT_CRASHED', /entrypoint failed in the build without reporting a result/],
    ['install failure', build({ phases: [phase('INSTALL', 'FAILED', 'COMMAND_EXECUTION_ERROR', 'Error while executing command: x. Reason: exit status 2')] }), 'BUILD_PHASE_FAILED', /FAILED in phase INSTALL before the job ran/],
    ['stopped by someone else', build({ status: 'STOPPED' }), 'BUILD_STOPPED', /the build was stopped before the job reported a result/],
  ];
  for (const [name, snapshot, code, message] of cases) {
    it(`explains ${name}`, () => {
      const failure = explainBuild(snapshot);
      expect(failure.code).toBe(code);
      expect(failure.message).toMatch(message);
      expect(failure.buildArn).toBe(snapshot.arn);
    });
  }

  it('says when cbactions itself stopped the build after a cancel', () => {
    expect(explainBuild(build({ status: 'STOPPED' }), { stoppedByCbactions: true }).message).toMatch(/cancelled and its build stopped/);
  });

  const refusals: [string, string, RegExp][] = [
    ['AccountLimitExceededException', 'CODEBUILD_QUOTA', /build quota is reached/],
    ['AccessDeniedException', 'CODEBUILD_ACCESS_DENIED', /not allowed to start builds of CodeBuild project cbactions/],
    ['InvalidInputException', 'CODEBUILD_INVALID_SETTINGS', /rejected the build settings/],
    ['ResourceNotFoundException', 'CODEBUILD_PROJECT_MISSING', /project cbactions was not found/],
    ['ThrottlingException', 'CODEBUILD_THROTTLED', /kept throttling/],
  ];
  for (const [name, code, message] of refusals) {
    it(`explains a StartBuild ${name}`, () => {
      const failure = startFailure(awsError(name, 'detail from AWS'), 'cbactions');
      expect(failure.code).toBe(code);
      expect(failure.message).toMatch(message);
      expect(failure.message).toContain('detail from AWS');
    });
  }
});
