import { invalidInput } from './aws-error.js';
import {
  BUILD_TIMEOUT_RANGE,
  COMPUTE_TYPE_VALUES,
  ENVIRONMENT_TYPE_VALUES,
  LAMBDA_ENVIRONMENT_TYPES,
  MAX_ENVIRONMENT_VALUE_LENGTH,
  QUEUED_TIMEOUT_RANGE,
  RESERVED_VARIABLE_PREFIX,
} from './limits.js';

/** The StartBuild fields the local service acts on, checked as CodeBuild checks them. */
export interface StartBuildInput {
  projectName: string;
  environmentVariablesOverride: { name: string; value: string; type: 'PLAINTEXT' }[] | undefined;
  buildspecOverride: string | undefined;
  timeoutInMinutesOverride: number | undefined;
  queuedTimeoutInMinutesOverride: number | undefined;
  computeTypeOverride: string | undefined;
  environmentTypeOverride: string | undefined;
  imageOverride: string | undefined;
  imagePullCredentialsTypeOverride: string | undefined;
  privilegedModeOverride: boolean | undefined;
  fleetOverride: { fleetArn: string } | undefined;
  serviceRoleOverride: string | undefined;
  idempotencyToken: string | undefined;
  sourceVersion: string | undefined;
}

function optionalString(body: Record<string, unknown>, field: string): string | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw invalidInput(`${field} must be a string`);
  return value;
}

function optionalBoolean(body: Record<string, unknown>, field: string): boolean | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'boolean') throw invalidInput(`${field} must be a boolean`);
  return value;
}

function optionalEnum(body: Record<string, unknown>, field: string, allowed: readonly string[]): string | undefined {
  const value = optionalString(body, field);
  if (value !== undefined && !allowed.includes(value)) {
    throw invalidInput(`1 validation error detected: Value '${value}' at '${field}' failed to satisfy constraint: Member must satisfy enum value set: [${allowed.join(', ')}]`);
  }
  return value;
}

function optionalMinutes(body: Record<string, unknown>, field: string, range: { min: number; max: number }): number | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value)) throw invalidInput(`${field} must be a whole number of minutes`);
  if (value < range.min || value > range.max) {
    throw invalidInput(`Invalid input: ${field} must be between ${range.min} and ${range.max} minutes; got ${value}`);
  }
  return value;
}

/** Checks each override; names a variable by name only, never by value. */
function environmentVariables(body: Record<string, unknown>): StartBuildInput['environmentVariablesOverride'] {
  const raw = body.environmentVariablesOverride;
  if (raw === undefined || raw === null) return undefined;
  if (!Array.isArray(raw)) throw invalidInput('environmentVariablesOverride must be a list of {name, value, type}');
  return raw.map((entry: unknown, index) => {
    const where = `environmentVariablesOverride[${index}]`;
    if (typeof entry !== 'object' || entry === null) throw invalidInput(`${where} must be an object with name and value`);
    const { name, value, type } = entry as Record<string, unknown>;
    if (typeof name !== 'string' || name.length === 0) throw invalidInput(`${where}.name must be a non-empty string`);
    if (typeof value !== 'string') throw invalidInput(`${where}.value (variable ${name}) must be a string`);
    if (name.startsWith(RESERVED_VARIABLE_PREFIX)) {
      throw invalidInput(`Invalid environment variable name ${name}: names starting with ${RESERVED_VARIABLE_PREFIX} are reserved for CodeBuild (${where})`);
    }
    const length = [...value].length;
    if (length > MAX_ENVIRONMENT_VALUE_LENGTH) {
      throw invalidInput(
        `Invalid input: EnvironmentVariable should be at most ${MAX_ENVIRONMENT_VALUE_LENGTH} characters; the value of ${name} (${where}) has ${length}`,
      );
    }
    const kind = type ?? 'PLAINTEXT';
    if (kind === 'PARAMETER_STORE' || kind === 'SECRETS_MANAGER') {
      throw invalidInput(`environment variable ${name}: type ${kind} is not supported by the local build service; send PLAINTEXT values (${where}.type)`);
    }
    if (kind !== 'PLAINTEXT') {
      throw invalidInput(`1 validation error detected: Value '${String(kind)}' at '${where}.type' failed to satisfy constraint: Member must satisfy enum value set: [PLAINTEXT, PARAMETER_STORE, SECRETS_MANAGER]`);
    }
    return { name, value, type: 'PLAINTEXT' as const };
  });
}

/** Parses a StartBuild body; throws InvalidInputException naming the field. */
export function parseStartBuild(body: unknown): StartBuildInput {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw invalidInput('the request body must be a JSON object');
  const fields = body as Record<string, unknown>;
  const projectName = optionalString(fields, 'projectName');
  if (projectName === undefined || projectName.length === 0) {
    throw invalidInput("1 validation error detected: Value null at 'projectName' failed to satisfy constraint: Member must not be null");
  }
  const fleet = fields.fleetOverride;
  let fleetOverride: StartBuildInput['fleetOverride'];
  if (fleet !== undefined && fleet !== null) {
    const fleetArn = typeof fleet === 'object' ? (fleet as Record<string, unknown>).fleetArn : undefined;
    if (typeof fleetArn !== 'string' || fleetArn.length === 0) throw invalidInput('fleetOverride.fleetArn must be a non-empty string');
    fleetOverride = { fleetArn };
  }
  const imageOverride = optionalString(fields, 'imageOverride');
  if (imageOverride === '') throw invalidInput('imageOverride must not be empty');
  return {
    projectName,
    environmentVariablesOverride: environmentVariables(fields),
    buildspecOverride: optionalString(fields, 'buildspecOverride'),
    timeoutInMinutesOverride: optionalMinutes(fields, 'timeoutInMinutesOverride', BUILD_TIMEOUT_RANGE),
    queuedTimeoutInMinutesOverride: optionalMinutes(fields, 'queuedTimeoutInMinutesOverride', QUEUED_TIMEOUT_RANGE),
    computeTypeOverride: optionalEnum(fields, 'computeTypeOverride', COMPUTE_TYPE_VALUES),
    environmentTypeOverride: optionalEnum(fields, 'environmentTypeOverride', ENVIRONMENT_TYPE_VALUES),
    imageOverride,
    imagePullCredentialsTypeOverride: optionalEnum(fields, 'imagePullCredentialsTypeOverride', ['CODEBUILD', 'SERVICE_ROLE']),
    privilegedModeOverride: optionalBoolean(fields, 'privilegedModeOverride'),
    fleetOverride,
    serviceRoleOverride: optionalString(fields, 'serviceRoleOverride'),
    idempotencyToken: optionalString(fields, 'idempotencyToken'),
    sourceVersion: optionalString(fields, 'sourceVersion'),
  };
}

/** Lambda compute refuses Docker and custom timeouts (CodeBuild user guide, "Lambda compute"). */
export function lambdaProblems(input: StartBuildInput, computeType: string, environmentType: string): string | undefined {
  const lambda = computeType.startsWith('BUILD_LAMBDA_') || LAMBDA_ENVIRONMENT_TYPES.includes(environmentType);
  if (!lambda) return undefined;
  if (computeType.startsWith('BUILD_LAMBDA_') !== LAMBDA_ENVIRONMENT_TYPES.includes(environmentType)) {
    return `Invalid input: compute type ${computeType} cannot be used with environment type ${environmentType}`;
  }
  if (input.privilegedModeOverride === true) return 'Invalid input: privileged mode is not supported on Lambda compute';
  if (input.timeoutInMinutesOverride !== undefined) return 'Invalid input: timeoutInMinutesOverride is not supported on Lambda compute';
  if (input.queuedTimeoutInMinutesOverride !== undefined) return 'Invalid input: queuedTimeoutInMinutesOverride is not supported on Lambda compute';
  return undefined;
}
