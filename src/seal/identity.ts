import { GetCallerIdentityCommand, type STSClient } from '@aws-sdk/client-sts';
import { CbactionsError } from '../util/errors.js';
import { awsErrorName, throwIfAborted, wrapAwsError } from '../util/aws-errors.js';
import { SealErrorCode } from './errors.js';
import type { PayloadBinding } from './types.js';

/** CodeBuild names each build's role session `AWSCodeBuild-<uuid>` (observed, unverified). */
export const CODEBUILD_SESSION_PREFIX = 'AWSCodeBuild-';

/**
 * The uuid of a build id `project:uuid` (a build ARN ends the same way). Session names
 * allow only `[\w+=,.@-]`, so anything else can't be what CodeBuild put there.
 */
export function buildUuid(buildId: string): string {
  const colon = buildId.lastIndexOf(':');
  const uuid = colon < 0 ? '' : buildId.slice(colon + 1);
  if (colon <= 0 || !/^[A-Za-z0-9-]+$/.test(uuid)) {
    throw new CbactionsError(SealErrorCode.BadBuildId, `build id "${buildId}" is not of the form <project>:<uuid>`);
  }
  return uuid;
}

/** `AWSCodeBuild-<uuid>` for build `project:uuid`. */
export function expectedSessionName(buildId: string): string {
  return `${CODEBUILD_SESSION_PREFIX}${buildUuid(buildId)}`;
}

/** The `aws:userid` a build will run as: `<roleId>:AWSCodeBuild-<uuid>`. */
export function expectedUserId(roleId: string, buildId: string): string {
  if (!/^[A-Z0-9]+$/.test(roleId)) {
    throw new CbactionsError(SealErrorCode.InvalidInput, `role id "${roleId}" is not an IAM unique id (AROA…)`);
  }
  return `${roleId}:${expectedSessionName(buildId)}`;
}

/**
 * Inside a build: who am I, as the payload's S3 key and KMS context know me. Checks the
 * unverified fact the whole binding rests on — that the session is named after
 * CODEBUILD_BUILD_ID's uuid — and fails loudly, naming both, if it is not.
 */
export async function resolveBuildBinding(sts: STSClient, buildId: string, signal?: AbortSignal): Promise<Required<PayloadBinding>> {
  const expectedSession = expectedSessionName(buildId);
  let userId: string | undefined;
  try {
    const output = await sts.send(new GetCallerIdentityCommand({}), { abortSignal: signal });
    userId = output.UserId;
  } catch (error) {
    throwIfAborted(signal);
    throw wrapAwsError(SealErrorCode.StsError, `STS GetCallerIdentity failed (${awsErrorName(error)}); the build can't tell which payload is its own`, error);
  }
  if (userId === undefined || userId.length === 0) {
    throw new CbactionsError(SealErrorCode.StsError, 'STS GetCallerIdentity returned no UserId');
  }
  const colon = userId.indexOf(':');
  const session = colon < 0 ? '' : userId.slice(colon + 1);
  if (session !== expectedSession) {
    throw new CbactionsError(
      SealErrorCode.IdentityMismatch,
      `this build runs as aws:userid "${userId}", but CODEBUILD_BUILD_ID ${buildId} implies the role session "${expectedSession}": ` +
        `CodeBuild no longer names sessions after the build id (or this is not a CodeBuild build), so the payload addressed to this build can't be found`,
    );
  }
  return { buildId, userId };
}
