/**
 * The name a mux puts on every build its workers start (`CBACTIONS_MUX_INSTANCE`), so an
 * operator can find in the CodeBuild console which task or host a build belongs to. On ECS:
 * the task ARN from the task metadata endpoint; elsewhere `<host>:<stateDir>`.
 */
import { describeError } from '../util/errors.js';
import type { Logger } from '../util/logger.js';

/** Set by the ECS agent in every container (task metadata endpoint version 4). */
export const ECS_METADATA_VARIABLE = 'ECS_CONTAINER_METADATA_URI_V4';
const METADATA_TIMEOUT_MS = 2_000;
/** ARNs are far shorter; anything longer is not what the endpoint documents. */
const MAX_INSTANCE_LENGTH = 512;

export interface MuxInstanceOptions {
  env: NodeJS.ProcessEnv;
  hostname: string;
  stateDir: string;
  logger: Logger;
  fetchImpl?: typeof fetch;
}

export async function muxInstanceId(options: MuxInstanceOptions): Promise<string> {
  const fallback = `${options.hostname}:${options.stateDir}`.slice(0, MAX_INSTANCE_LENGTH);
  const metadataUri = options.env[ECS_METADATA_VARIABLE];
  if (!metadataUri) return fallback;
  try {
    const response = await (options.fetchImpl ?? fetch)(`${metadataUri}/task`, { signal: AbortSignal.timeout(METADATA_TIMEOUT_MS) });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const body = (await response.json()) as { TaskARN?: unknown };
    const arn = body.TaskARN;
    if (typeof arn !== 'string' || !/^arn:aws[a-zA-Z-]*:ecs:[^\s]+$/.test(arn) || arn.length > MAX_INSTANCE_LENGTH) throw new Error('no TaskARN in the task metadata');
    return arn;
  } catch (error) {
    options.logger.warn({ event: 'mux.instance-metadata-failed', error: describeError(error), instance: fallback }, 'naming builds by host instead of ECS task');
    return fallback;
  }
}
