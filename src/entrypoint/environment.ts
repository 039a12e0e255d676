import type { PAYLOAD_KEY_VARIABLE, PAYLOAD_STORE_VARIABLE } from '../seal/references.js';

/**
 * Environment `cbactions entrypoint` reads inside the build. Kept apart from main.ts (no
 * SDK imports) so `cbactions entrypoint --help` can list it.
 */
export const EntrypointEnv = {
  RunnerRoot: 'CBACTIONS_RUNNER_ROOT',
  ResultDir: 'CBACTIONS_RESULT_DIR',
  PayloadWait: 'CBACTIONS_PAYLOAD_WAIT_SECONDS',
  CancelPoll: 'CBACTIONS_CANCEL_POLL_SECONDS',
  LeaseCheck: 'CBACTIONS_LEASE_CHECK_SECONDS',
  ComputeType: 'CBACTIONS_COMPUTE_TYPE',
  EnvironmentType: 'CBACTIONS_ENVIRONMENT_TYPE',
  PayloadRoleId: 'CBACTIONS_PAYLOAD_ROLE_ID',
  RunnerInstaller: 'CBACTIONS_RUNNER_INSTALLER',
  RunnerChecksums: 'CBACTIONS_RUNNER_CHECKSUMS',
  StandbyWait: 'CBACTIONS_STANDBY_WAIT_SECONDS',
  PayloadPoll: 'CBACTIONS_PAYLOAD_POLL_MS',
} as const;

type EntrypointVariable =
  | (typeof EntrypointEnv)[keyof typeof EntrypointEnv]
  | typeof PAYLOAD_STORE_VARIABLE
  | typeof PAYLOAD_KEY_VARIABLE
  | 'CODEBUILD_BUILD_ID'
  | 'CODEBUILD_BUILD_ARN'
  | 'CODEBUILD_BUILD_IMAGE'
  | 'CODEBUILD_START_TIME'
  | 'AWS_REGION'
  | 'ACTIONS_RUNNER_HOOK_JOB_STARTED'
  | 'ACTIONS_RUNNER_HOOK_JOB_COMPLETED';

/** One line per variable the entrypoint reads, for its `--help` and checked against the README. */
export const ENTRYPOINT_ENVIRONMENT: Readonly<Record<EntrypointVariable, string>> = {
  CBACTIONS_RESULT_DIR: 'where the exit-code / failure files for the buildspec go (required; the buildspec sets it)',
  CBACTIONS_PAYLOAD_STORE: 'where the sealed job is: s3://<bucket>/<prefix> or file:///dir (required; the worker sets it)',
  CBACTIONS_PAYLOAD_KEY: 'the key that opens it: kms:<key> or file:///keyfile (required; the worker sets it)',
  CBACTIONS_PAYLOAD_ROLE_ID: "role id the job was sealed for, checked against sts:GetCallerIdentity (the worker sets it)",
  CBACTIONS_RUNNER_ROOT: 'the runner installation in the build (default: /actions-runner)',
  CBACTIONS_PAYLOAD_WAIT_SECONDS: 'how long to wait for the sealed job (default 300, at most 3600)',
  CBACTIONS_CANCEL_POLL_SECONDS: 'how often to look for a cancel (default 2, at most 60)',
  CBACTIONS_LEASE_CHECK_SECONDS: 'how often to check the job lease (default 60, at most 3600); an expired lease ends the job (JOB_LEASE_EXPIRED)',
  CBACTIONS_COMPUTE_TYPE: "the pool's compute type, shown in the job's first log line",
  CBACTIONS_ENVIRONMENT_TYPE: "the pool's environment type, shown in the job's first log line",
  CBACTIONS_RUNNER_INSTALLER: 'installer for images without the runner (default: docker/install-runner.sh of this installation)',
  CBACTIONS_RUNNER_CHECKSUMS: 'checksum list for that installer (default: docker/runner-checksums.txt of this installation)',
  CBACTIONS_STANDBY_WAIT_SECONDS: 'set on standby builds only (the mux sets it): wait this long once ready for a job, then end with STANDBY_EXPIRED (1 to 7200)',
  CBACTIONS_PAYLOAD_POLL_MS: "a standby's poll interval for its job in milliseconds (default 200, 10 to 250)",
  CODEBUILD_BUILD_ID: 'the build id (required; CodeBuild sets it)',
  CODEBUILD_BUILD_ARN: "the build's ARN, for the console link in the job's log (CodeBuild sets it)",
  CODEBUILD_BUILD_IMAGE: "the build image, shown in the job's first log line (CodeBuild sets it)",
  CODEBUILD_START_TIME: "when CodeBuild accepted the build (epoch ms), for the wait and cost lines in the job's log (CodeBuild sets it)",
  AWS_REGION: 'region of the S3, KMS and STS clients (CodeBuild sets it)',
  ACTIONS_RUNNER_HOOK_JOB_STARTED: "a job-started hook of the image's own, run after cbactions' hook",
  ACTIONS_RUNNER_HOOK_JOB_COMPLETED: "a job-completed hook of the image's own, run after cbactions' hook (which prints the job's wait and cost)",
};
