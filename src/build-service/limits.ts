/**
 * CodeBuild's limits and enumerations, from the service model
 * (botocore codebuild/2016-10-06/service-2.json) and the user guide.
 */
import { COMPUTE_TYPES, ENVIRONMENT_TYPES } from '../config/schema.js';

/** "EnvironmentVariable should be at most 4096 characters" (per value). */
export const MAX_ENVIRONMENT_VALUE_LENGTH = 4096;
/** Names CodeBuild reserves for its own variables; rejected in overrides. */
export const RESERVED_VARIABLE_PREFIX = 'CODEBUILD_';
/** BatchGetBuilds takes 1..100 ids. */
export const MAX_BATCH_GET_IDS = 100;
export const BUILD_TIMEOUT_RANGE = { min: 5, max: 2160 } as const;
export const QUEUED_TIMEOUT_RANGE = { min: 5, max: 480 } as const;
/** An idempotency token is valid for 5 minutes (real minutes: it is not a build timeout). */
export const IDEMPOTENCY_TOKEN_TTL_MS = 5 * 60_000;
/** Above the concurrency limit builds queue, up to 5× the limit; beyond that StartBuild fails. */
export const QUEUE_FACTOR = 5;

/** What StartBuild accepts: the compute types pools may use, and every environment type (Windows and Mac too, which pools do not offer). */
export const COMPUTE_TYPE_VALUES = COMPUTE_TYPES;
export const ENVIRONMENT_TYPE_VALUES = [...ENVIRONMENT_TYPES, 'WINDOWS_CONTAINER', 'WINDOWS_SERVER_2019_CONTAINER', 'WINDOWS_SERVER_2022_CONTAINER', 'WINDOWS_EC2', 'MAC_ARM'] as const;

export const LAMBDA_ENVIRONMENT_TYPES: readonly string[] = ['LINUX_LAMBDA_CONTAINER', 'ARM_LAMBDA_CONTAINER'];
