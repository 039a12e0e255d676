import { KMSClient } from '@aws-sdk/client-kms';
import { S3Client } from '@aws-sdk/client-s3';
import { STSClient } from '@aws-sdk/client-sts';
import { join } from 'node:path';
import { createPayloadServices, payloadRefsFromEnvironment, resolveBuildBinding } from '../seal/index.js';
import type { PayloadBinding } from '../seal/types.js';
import { CbactionsError, describeError, isCbactionsError } from '../util/errors.js';
import { createLogger } from '../util/logger.js';
import { EntrypointEnv } from './environment.js';
import { runEntrypoint, writeResult, type EntrypointResult } from './run-entrypoint.js';
import { PACKAGE_ROOT } from '../util/package-root.js';


export const DEFAULT_RUNNER_ROOT = '/actions-runner';
/** The real worker runs post-steps after a cancel; past this its job is not coming back. */
const LEASE_CANCEL_GRACE_MS = 120_000;

function seconds(env: NodeJS.ProcessEnv, name: string, fallback: number, max: number): number {
  const value = env[name];
  if (value === undefined || value === '') return fallback * 1000;
  if (!/^\d+(\.\d+)?$/.test(value) || Number(value) > max) throw new CbactionsError('CONFIG_INVALID', `${name} must be a number of seconds up to ${max}, got "${value.slice(0, 20)}"`);
  return Number(value) * 1000;
}

/** CODEBUILD_START_TIME is epoch milliseconds; anything else is ignored (it only feeds log lines). */
function submittedAt(value: string | undefined): { submittedAt?: number } {
  return value !== undefined && /^\d{13}$/.test(value) ? { submittedAt: Number(value) } : {};
}

/** A standby notices its job within a quarter of a second (issue 11): its poll is at most 250 ms. */
const DEFAULT_PAYLOAD_POLL_MS = 200;
const MAX_PAYLOAD_POLL_MS = 250;

/** The standby settings, or undefined for a build started for a job. */
export function standbySettings(env: NodeJS.ProcessEnv): { waitMs: number; pollMs: number } | undefined {
  const wait = env[EntrypointEnv.StandbyWait];
  const poll = env[EntrypointEnv.PayloadPoll];
  let pollMs = DEFAULT_PAYLOAD_POLL_MS;
  if (poll !== undefined && poll !== '') {
    if (!/^\d{1,3}$/.test(poll) || Number(poll) < 10 || Number(poll) > MAX_PAYLOAD_POLL_MS) throw new CbactionsError('CONFIG_INVALID', `${EntrypointEnv.PayloadPoll} must be whole milliseconds from 10 to ${MAX_PAYLOAD_POLL_MS}, got "${poll.slice(0, 20)}"`);
    pollMs = Number(poll);
  }
  if (wait === undefined || wait === '') return undefined;
  if (!/^\d{1,4}$/.test(wait) || Number(wait) < 1 || Number(wait) > 7200) throw new CbactionsError('CONFIG_INVALID', `${EntrypointEnv.StandbyWait} must be whole seconds from 1 to 7200, got "${wait.slice(0, 20)}"`);
  return { waitMs: Number(wait) * 1000, pollMs };
}

/**
 * The worker bound the payload to `<roleId>:AWSCodeBuild-<uuid>` with the role id it was
 * configured with; if CodeBuild runs this build under another role, say so plainly rather
 * than fail later as "payload not found" or "wrong key".
 */
export function checkPayloadRole(userId: string, expectedRoleId: string | undefined): void {
  if (expectedRoleId === undefined || expectedRoleId === '') return;
  const actualRoleId = userId.split(':')[0];
  if (actualRoleId !== expectedRoleId) {
    throw new CbactionsError(
      'PAYLOAD_IDENTITY_MISMATCH',
      `this build runs as role ${actualRoleId ?? '?'} (aws:userid ${userId}), but its job was sealed for role ${expectedRoleId}: the pool's serviceRole.roleId (or codebuild.buildRoleId) does not match the role CodeBuild used`,
    );
  }
}

/**
 * `cbactions entrypoint`, the buildspec's one command. Exits 0 whenever it recorded a
 * result for the buildspec to export (the job's exit code, or why the job could not run),
 * so the build stays SUCCEEDED and the worker reads the result from exported variables.
 */
export async function runEntrypointCommand(): Promise<number> {
  const startedAt = Date.now();
  const env = process.env;
  const logger = createLogger({ name: 'cbactions-entrypoint' });
  const stop = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    logger.info({ event: 'entrypoint.signal', signal }, 'stop requested');
    stop.abort(new CbactionsError('BUILD_STOPPING', `received ${signal}`));
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);

  const resultDir = env[EntrypointEnv.ResultDir];
  if (!resultDir) {
    process.stderr.write(`cbactions entrypoint: ${EntrypointEnv.ResultDir} is not set; the buildspec sets it\n`);
    return 2;
  }
  let result: EntrypointResult;
  try {
    const buildId = env.CODEBUILD_BUILD_ID;
    if (!buildId) throw new CbactionsError('ENTRYPOINT_NOT_IN_BUILD', 'CODEBUILD_BUILD_ID is not set: `cbactions entrypoint` runs inside a CodeBuild build');
    const refs = payloadRefsFromEnvironment(env);
    const region = env.AWS_REGION ? { region: env.AWS_REGION } : {};
    const services = await createPayloadServices(refs, {
      ...(refs.key.kind === 'kms' ? { kms: new KMSClient(region) } : {}),
      ...(refs.store.kind === 's3' ? { s3: new S3Client(region) } : {}),
    });
    // IAM-bound payloads (S3 key and KMS context carry aws:userid) need the build's own identity.
    const iamBound = refs.store.kind === 's3' || refs.key.kind === 'kms';
    const resolveBinding = async (): Promise<PayloadBinding> => {
      if (!iamBound) return { buildId };
      const binding = await resolveBuildBinding(new STSClient(region), buildId, stop.signal);
      checkPayloadRole(binding.userId, env[EntrypointEnv.PayloadRoleId]);
      return binding;
    };
    const standby = standbySettings(env);
    result = await runEntrypoint({
      ...(standby ? { standby } : {}),
      keys: services.keys,
      store: services.store,
      resolveBinding,
      runnerRoot: env[EntrypointEnv.RunnerRoot] || DEFAULT_RUNNER_ROOT,
      resultDir,
      logger,
      facts: {
        buildId,
        ...(env.CODEBUILD_BUILD_ARN ? { buildArn: env.CODEBUILD_BUILD_ARN } : {}),
        ...(env[EntrypointEnv.ComputeType] ? { computeType: env[EntrypointEnv.ComputeType] } : {}),
        ...(env[EntrypointEnv.EnvironmentType] ? { environmentType: env[EntrypointEnv.EnvironmentType] } : {}),
        ...(env.CODEBUILD_BUILD_IMAGE ? { image: env.CODEBUILD_BUILD_IMAGE } : {}),
      },
      payloadWaitMs: seconds(env, EntrypointEnv.PayloadWait, 300, 3600),
      cancelPollMs: seconds(env, EntrypointEnv.CancelPoll, 2, 60),
      leaseCheckMs: seconds(env, EntrypointEnv.LeaseCheck, 60, 3600),
      leaseCancelGraceMs: LEASE_CANCEL_GRACE_MS,
      stopSignal: stop.signal,
      workerEnv: env,
      startedAt,
      ...submittedAt(env.CODEBUILD_START_TIME),
      // The job-completed hook runs this very installation of cbactions, whatever the PATH is then.
      cbactionsCommand: [process.execPath, join(PACKAGE_ROOT, 'bin', 'cbactions')],
      runnerInstall: {
        installer: env[EntrypointEnv.RunnerInstaller] || join(PACKAGE_ROOT, 'docker', 'install-runner.sh'),
        checksums: env[EntrypointEnv.RunnerChecksums] || join(PACKAGE_ROOT, 'docker', 'runner-checksums.txt'),
      },
    });
  } catch (error) {
    result = isCbactionsError(error) ? { kind: 'failure', code: error.code, message: error.message } : { kind: 'failure', code: 'ENTRYPOINT_INTERNAL', message: describeError(error) };
  }
  if (result.kind === 'failure') logger.error({ event: 'entrypoint.failed', code: result.code, reason: result.message }, 'the job could not run');
  else logger.info({ event: 'entrypoint.finished', exitCode: result.exitCode }, 'job finished');
  await writeResult(resultDir, result);
  process.off('SIGTERM', onSignal);
  process.off('SIGINT', onSignal);
  setTimeout(() => process.exit(), 2000).unref();
  return 0;
}
