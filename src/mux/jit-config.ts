/**
 * The encoded JIT config GitHub returns (RUNNER-PROTOCOL §5): base64 of a UTF-8 JSON object
 * `{fileName: base64(bytes)}` with `.runner`, `.credentials`, `.credentials_rsaparams`.
 * The mux decodes it, forces `disableUpdate: true` and `ephemeral: true` into `.runner`
 * (whether GitHub sets them is server-side and unverified; a self-update would replace
 * the shared installation, Runner.Worker shim included) and writes the files itself.
 */
import { CbactionsError } from '../util/errors.js';

export const JitErrorCode = {
  Malformed: 'MUX_JIT_CONFIG_MALFORMED',
  RunnerFile: 'MUX_RUNNER_FILE_INVALID',
} as const;

/** Files a registration consists of, by name, as raw bytes. */
export type RegistrationFiles = Map<string, Buffer>;

const REQUIRED_FILES = ['.runner', '.credentials'] as const;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

function strictBase64(value: string, what: string): Buffer {
  const compact = value.replace(/\s+/g, '');
  if (compact.length % 4 !== 0 || !BASE64.test(compact)) {
    throw new CbactionsError(JitErrorCode.Malformed, `JIT config: ${what} is not valid base64`);
  }
  return Buffer.from(compact, 'base64');
}

/** A plain file name: the listener writes `<root>/<name>`, so no separators or dot-dirs. */
function checkFileName(name: string): void {
  if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\\') || name.includes('\0')) {
    throw new CbactionsError(JitErrorCode.Malformed, `JIT config: file name ${JSON.stringify(name)} is not a plain file name`);
  }
}

export function decodeJitConfig(encoded: string): RegistrationFiles {
  const outer = strictBase64(encoded, 'the encoded config');
  let parsed: unknown;
  try {
    parsed = JSON.parse(outer.toString('utf8'));
  } catch (error) {
    throw new CbactionsError(JitErrorCode.Malformed, 'JIT config: the decoded value is not JSON', { cause: error });
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new CbactionsError(JitErrorCode.Malformed, 'JIT config: the decoded value is not a JSON object of files');
  }
  const files: RegistrationFiles = new Map();
  for (const [name, value] of Object.entries(parsed as Record<string, unknown>)) {
    checkFileName(name);
    if (typeof value !== 'string') throw new CbactionsError(JitErrorCode.Malformed, `JIT config: the value of ${name} is not a base64 string`);
    files.set(name, strictBase64(value, `the value of ${name}`));
  }
  for (const name of REQUIRED_FILES) {
    if (!files.has(name)) throw new CbactionsError(JitErrorCode.Malformed, `JIT config: ${name} is missing`);
  }
  return files;
}

export function encodeJitConfig(files: RegistrationFiles): string {
  const object: Record<string, string> = {};
  for (const [name, bytes] of files) object[name] = bytes.toString('base64');
  return Buffer.from(JSON.stringify(object), 'utf8').toString('base64');
}

/** The settings the mux reads from `.runner` (camelCase, RUNNER-PROTOCOL §4). */
export interface RunnerSettings {
  agentId: number;
  agentName: string;
  disableUpdate: boolean;
  ephemeral: boolean;
  [key: string]: unknown;
}

/** Parses `.runner`; files the runner writes itself start with a UTF-8 BOM. */
export function parseRunnerFile(bytes: Buffer): RunnerSettings {
  let text = bytes.toString('utf8');
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new CbactionsError(JitErrorCode.RunnerFile, '.runner is not JSON', { cause: error });
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new CbactionsError(JitErrorCode.RunnerFile, '.runner is not a JSON object');
  }
  const settings = parsed as Record<string, unknown>;
  const agentId = Number(settings.agentId);
  if (!Number.isSafeInteger(agentId) || agentId <= 0) throw new CbactionsError(JitErrorCode.RunnerFile, '.runner has no numeric agentId');
  if (typeof settings.agentName !== 'string' || settings.agentName === '') throw new CbactionsError(JitErrorCode.RunnerFile, '.runner has no agentName');
  return { ...settings, agentId, agentName: settings.agentName, disableUpdate: settings.disableUpdate === true, ephemeral: settings.ephemeral === true };
}

/**
 * `.runner` with `disableUpdate` and `ephemeral` set to true, other fields kept, as JSON
 * without a BOM (the listener strips one when present and accepts none, as for JIT files).
 */
export function enforceRunnerSettings(bytes: Buffer): { bytes: Buffer; settings: RunnerSettings; changed: string[] } {
  const settings = parseRunnerFile(bytes);
  const changed: string[] = [];
  let text = bytes.toString('utf8');
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  const object = JSON.parse(text) as Record<string, unknown>;
  for (const field of ['disableUpdate', 'ephemeral'] as const) {
    if (object[field] !== true) {
      changed.push(field);
      object[field] = true;
    }
  }
  return { bytes: Buffer.from(JSON.stringify(object), 'utf8'), settings: { ...settings, disableUpdate: true, ephemeral: true }, changed };
}

/** Decodes a JIT config and enforces the `.runner` settings; the files are ready to write. */
export function prepareJitFiles(encoded: string): { files: RegistrationFiles; settings: RunnerSettings; changed: string[] } {
  const files = decodeJitConfig(encoded);
  const runner = files.get('.runner') as Buffer;
  const enforced = enforceRunnerSettings(runner);
  files.set('.runner', enforced.bytes);
  return { files, settings: enforced.settings, changed: enforced.changed };
}
