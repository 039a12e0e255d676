import { readFile } from 'node:fs/promises';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { CbactionsError } from '../util/errors.js';
import { ConfigSchema, type Config } from './schema.js';

export const ConfigErrorCode = {
  Unreadable: 'CONFIG_UNREADABLE',
  Syntax: 'CONFIG_SYNTAX',
  Invalid: 'CONFIG_INVALID',
} as const;

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
  return issues.map((issue) => `${formatPath(issue.path)}: ${printable(issue.message)}`);
}

export function parseConfig(raw: unknown, source = 'configuration'): Config {
  const result = ConfigSchema.safeParse(raw);
  if (!result.success) {
    const lines = formatIssues(result.error.issues);
    throw new CbactionsError(ConfigErrorCode.Invalid, `${source} is invalid:\n  ${lines.join('\n  ')}`, { cause: result.error });
  }
  return result.data;
}

/** Reads a YAML or JSON config file (JSON is YAML) and validates it. */
export async function loadConfigFile(path: string): Promise<Config> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new CbactionsError(ConfigErrorCode.Unreadable, `cannot read config file ${path}: ${(error as Error).message}`, { cause: error });
  }
  let raw: unknown;
  try {
    // A warning (an unresolved tag such as `!Ref`, an ambiguous alias) means the file does not
    // say what its author meant; it is refused, not printed to stderr as a process warning
    // (`logLevel: 'error'` keeps toJS quiet too: a collection used as a key becomes a string
    // key, which the schema then names).
    const document = parseDocument(text, { prettyErrors: true, logLevel: 'error' });
    const problem = document.errors[0] ?? document.warnings[0];
    if (problem !== undefined) throw problem;
    raw = document.toJS();
  } catch (error) {
    throw new CbactionsError(ConfigErrorCode.Syntax, `config file ${path} is not valid YAML/JSON: ${(error as Error).message}`, { cause: error });
  }
  return parseConfig(raw, `config file ${path}`);
}
