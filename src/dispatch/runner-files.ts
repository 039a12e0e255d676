import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CbactionsError } from '../util/errors.js';

export interface RunnerFiles {
  runnerFile: Buffer;
  credentialsFile?: Buffer;
  runnerName?: string;
}

/** Files the runner writes itself begin with a UTF-8 BOM (RUNNER-PROTOCOL §4). */
export function stripBom(text: string): string {
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

/**
 * Reads `.runner` (required) and `.credentials` (optional) from the directory that holds
 * this runner's configuration. `.credentials` is reduced to the fields the real worker
 * reads (`scheme`, `data.clientId`, and the non-secret URL/FIPS fields); the RSA key in
 * `.credentials_rsaparams` is never read.
 */
export async function readRunnerFiles(configDir: string): Promise<RunnerFiles> {
  const runnerPath = join(configDir, '.runner');
  let runnerText: string;
  try {
    runnerText = stripBom(await readFile(runnerPath, 'utf8'));
  } catch (error) {
    throw new CbactionsError('RUNNER_FILE_MISSING', `cannot read the runner settings ${runnerPath}: ${(error as Error).message}`, { cause: error });
  }
  let settings: unknown;
  try {
    settings = JSON.parse(runnerText);
  } catch {
    throw new CbactionsError('RUNNER_FILE_INVALID', `${runnerPath} is not valid JSON`);
  }
  if (typeof settings !== 'object' || settings === null) {
    throw new CbactionsError('RUNNER_FILE_INVALID', `${runnerPath} is not a JSON object`);
  }
  const files: RunnerFiles = { runnerFile: Buffer.from(runnerText, 'utf8') };
  const agentName = (settings as Record<string, unknown>).agentName;
  if (typeof agentName === 'string') files.runnerName = agentName;

  const credentialsPath = join(configDir, '.credentials');
  let credentialsText: string | undefined;
  try {
    credentialsText = stripBom(await readFile(credentialsPath, 'utf8'));
  } catch {
    credentialsText = undefined;
  }
  if (credentialsText !== undefined) {
    const reduced = reduceCredentials(credentialsText);
    if (reduced !== undefined) files.credentialsFile = Buffer.from(reduced, 'utf8');
  }
  return files;
}

const CREDENTIAL_DATA_FIELDS = ['clientId', 'authorizationUrl', 'requireFipsCryptography'];

export function reduceCredentials(text: string): string | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null) return undefined;
  const source = parsed as { scheme?: unknown; data?: Record<string, unknown> };
  const data: Record<string, string> = {};
  for (const field of CREDENTIAL_DATA_FIELDS) {
    const value = source.data?.[field];
    if (typeof value === 'string') data[field] = value;
  }
  return JSON.stringify({ scheme: typeof source.scheme === 'string' ? source.scheme : 'OAuth', data });
}
