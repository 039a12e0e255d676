import { open } from 'node:fs/promises';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { CbactionsError } from '../util/errors.js';
import { ConfigSchema, RuntimeConfigSchema, type Config } from './schema.js';

export const ConfigErrorCode = {
  Unreadable: 'CONFIG_UNREADABLE',
  Syntax: 'CONFIG_SYNTAX',
  Invalid: 'CONFIG_INVALID',
  TooLarge: 'CONFIG_TOO_LARGE',
} as const;

/**
 * Largest config file read. A real one is a few kilobytes (100 pools with every setting is
 * well under 100 KiB); YAML parsing costs tens of times the text in memory, so an
 * unbounded read of a wrong or hostile file could take the process down.
 */
export const MAX_CONFIG_FILE_BYTES = 1024 * 1024;

/**
 * Anchors and aliases are fine for sharing a pool's build settings, but each alias can
 * expand to a whole subtree: the `yaml` package refuses documents whose aliases expand
 * past this (its default, stated here so it stays put).
 */
export const MAX_YAML_ALIAS_COUNT = 100;

// Keys come from the file: a newline, escape sequence or bidi control in one must not split
// a problem over lines or reach the terminal raw.
// eslint-disable-next-line no-control-regex
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u2028-\u202e\u2066-\u2069]/g;

function printable(text: string): string {
  return text.replace(UNPRINTABLE, (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** `pools[1].build.privileged` from a zod path. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out === '' ? printable(String(part)) : `.${printable(String(part))}`;
  }
  return out === '' ? '(top level)' : out;
}

/** One line per problem, each naming its field. */
export function formatIssues(issues: readonly z.core.$ZodIssue[]): string[] {
  return issues.map((issue) => `${formatPath(issue.path)}: ${printable(issueMessage(issue))}`);
}

/** zod's message, with why a record key (a role or pool name) was refused: zod keeps that nested. */
function issueMessage(issue: z.core.$ZodIssue): string {
  if (issue.code !== 'invalid_key') return issue.message;
  return `${issue.message}: ${issue.issues.map((nested) => nested.message).join('; ')}`;
}

export interface ConfigUse {
  /**
   * The mux and the worker run jobs with this config: also require what running needs
   * (`runtimeProblems`). `deploy`, `init` and `local` leave it off.
   */
  runtime?: boolean;
}

/**
 * Paths of `__proto__` keys. zod 4 leaves such a key out of a record on purpose (so it cannot
 * set the result's prototype), which would drop e.g. `deploy.tags.__proto__` without a word:
 * the file would not say what gets deployed. They are refused instead, naming the field.
 */
function prototypeKeyPaths(value: unknown, path: PropertyKey[] = [], found: PropertyKey[][] = []): PropertyKey[][] {
  if (value === null || typeof value !== 'object') return found;
  for (const key of Object.keys(value)) {
    const childPath = [...path, Array.isArray(value) ? Number(key) : key];
    if (key === '__proto__') found.push(childPath);
    prototypeKeyPaths((value as Record<string, unknown>)[key], childPath, found);
  }
  return found;
}

export function parseConfig(raw: unknown, source = 'configuration', use: ConfigUse = {}): Config {
  const prototypeKeys = prototypeKeyPaths(raw);
  if (prototypeKeys.length > 0) {
    const error = new z.ZodError(
      prototypeKeys.map((path) => ({ code: 'custom' as const, path, message: 'the key "__proto__" is not allowed (it would be dropped silently)', input: undefined })),
    );
    throw new CbactionsError(ConfigErrorCode.Invalid, `${source} is invalid:\n  ${formatIssues(error.issues).join('\n  ')}`, { cause: error });
  }
  const result = (use.runtime === true ? RuntimeConfigSchema : ConfigSchema).safeParse(raw);
  if (!result.success) {
    const lines = formatIssues(result.error.issues);
    throw new CbactionsError(ConfigErrorCode.Invalid, `${source} is invalid:\n  ${lines.join('\n  ')}`, { cause: result.error });
  }
  return result.data;
}

/**
 * Reads at most `limit` + 1 bytes: a regular file's size is checked first, and anything
 * else (a FIFO, `/dev/stdin`, a file still growing) is cut off one byte past the limit.
 */
async function readBounded(path: string, limit: number): Promise<string> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (error) {
    throw new CbactionsError(ConfigErrorCode.Unreadable, `cannot read config file ${path}: ${(error as Error).message}`, { cause: error });
  }
  const tooLarge = (size: string) =>
    new CbactionsError(ConfigErrorCode.TooLarge, `config file ${path} is ${size}; the limit is ${limit} bytes (${limit / 1024} KiB): is it the right file?`);
  try {
    const stats = await handle.stat();
    if (stats.isFile() && stats.size > limit) throw tooLarge(`${stats.size} bytes`);
    const buffer = Buffer.alloc(limit + 1);
    let filled = 0;
    while (filled < buffer.length) {
      const { bytesRead } = await handle.read(buffer, filled, buffer.length - filled, null);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    if (filled > limit) throw tooLarge(`more than ${limit} bytes`);
    return buffer.toString('utf8', 0, filled);
  } catch (error) {
    if (error instanceof CbactionsError) throw error;
    throw new CbactionsError(ConfigErrorCode.Unreadable, `cannot read config file ${path}: ${(error as Error).message}`, { cause: error });
  } finally {
    await handle.close();
  }
}

/** Reads a YAML or JSON config file (JSON is YAML) and validates it. */
export async function loadConfigFile(path: string, use: ConfigUse = {}): Promise<Config> {
  const text = await readBounded(path, MAX_CONFIG_FILE_BYTES);
  let raw: unknown;
  try {
    // A warning (an unresolved tag such as `!Ref`, an ambiguous alias) means the file does not
    // say what its author meant; it is refused, not printed to stderr as a process warning
    // (`logLevel: 'error'` keeps toJS quiet too: a collection used as a key becomes a string
    // key, which the schema then names).
    const document = parseDocument(text, { prettyErrors: true, logLevel: 'error' });
    const problem = document.errors[0] ?? document.warnings[0];
    if (problem !== undefined) throw problem;
    raw = document.toJS({ maxAliasCount: MAX_YAML_ALIAS_COUNT });
  } catch (error) {
    throw new CbactionsError(ConfigErrorCode.Syntax, `config file ${path} is not valid YAML/JSON: ${(error as Error).message}`, { cause: error });
  }
  return parseConfig(raw, `config file ${path}`, use);
}
