import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { CbactionsError } from '../util/errors.js';
import { ConfigSchema, type Config } from './schema.js';

export const ConfigErrorCode = {
  Unreadable: 'CONFIG_UNREADABLE',
  Syntax: 'CONFIG_SYNTAX',
  Invalid: 'CONFIG_INVALID',
} as const;

/** `pools[1].build.privileged` from a zod path. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out === '' ? String(part) : `.${String(part)}`;
  }
  return out === '' ? '(top level)' : out;
}

/** One line per problem, each naming its field. */
export function formatIssues(issues: readonly z.core.$ZodIssue[]): string[] {
  return issues.map((issue) => `${formatPath(issue.path)}: ${issue.message}`);
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
    raw = parseYaml(text, { prettyErrors: true });
  } catch (error) {
    throw new CbactionsError(ConfigErrorCode.Syntax, `config file ${path} is not valid YAML/JSON: ${(error as Error).message}`, { cause: error });
  }
  return parseConfig(raw, `config file ${path}`);
}
