import { mkdtempSync, rmSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { stringify as toYaml } from 'yaml';
import { afterAll, describe, expect, it } from 'vitest';
import type { z } from 'zod';
import { formatPath, loadConfigFile, parseConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';
import { isCbactionsError } from '../../src/util/errors.js';
import { fuzzParameters } from '../support/fuzz.js';

/** A valid config touching every section, so mutations reach every part of the schema. */
const VALID = {
  github: {
    url: 'https://github.example.com',
    scope: { organization: 'octo' },
    runnerGroup: 'ci',
    namePrefix: 'cb',
    auth: { app: { appId: 12345, installationId: '678', privateKey: { secretsManager: 'cbactions/app', jsonKey: 'pem' } } },
    registration: 'jit',
  },
  codebuild: { projectName: 'cbactions', buildRoleId: 'AROAEXAMPLEROLEID1', region: 'eu-west-1' },
  payloads: { key: { kms: { keyId: 'alias/cbactions' } }, store: { s3: { bucket: 'cbactions-payloads', prefix: 'payloads/' } } },
  pools: [
    { name: 'small', labels: ['linux', 'x64'], slots: 4 },
    {
      name: 'big',
      labels: ['big'],
      slots: 1,
      build: {
        computeType: 'BUILD_GENERAL1_LARGE',
        environmentType: 'LINUX_GPU_CONTAINER',
        privileged: true,
        timeoutMinutes: 120,
        serviceRole: { arn: 'arn:aws:iam::123456789012:role/jobs', roleId: 'AROAEXAMPLEROLEID2' },
      },
    },
  ],
  mux: { statusPort: 9090, isolation: 'preload', listenerBackoff: { initialMs: 500, maxMs: 10_000 } },
  deploy: {
    stackName: 'cbactions-test',
    account: '123456789012',
    region: 'eu-west-1',
    network: { vpcId: 'vpc-0123456789abcdef0', subnets: [{ subnetId: 'subnet-01234567', availabilityZone: 'eu-west-1a' }] },
    cpu: 512,
    memoryMiB: 2048,
    logRetentionDays: 14,
    alarms: { listenerRestarts: 2 },
    buildRole: { statements: [{ actions: ['s3:GetObject'], resources: ['arn:aws:s3:::b/*'], conditions: { StringEquals: { 'aws:ResourceTag/team': 'ci' } } }] },
    pools: { small: { serviceRole: { managedPolicyArns: ['arn:aws:iam::aws:policy/ReadOnlyAccess'] } } },
    tags: { team: 'ci' },
  },
};

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Path = (string | number)[];

/** Every path to a value in `value` (the root included). */
function pathsOf(value: Json, path: Path = []): Path[] {
  const out: Path[] = [path];
  if (Array.isArray(value)) value.forEach((item, i) => out.push(...pathsOf(item, [...path, i])));
  else if (value !== null && typeof value === 'object') for (const [key, item] of Object.entries(value)) out.push(...pathsOf(item, [...path, key]));
  return out;
}

/** Keys that break naive code: prototype names, separators, control characters, lone surrogates. */
const nastyKey = fc.oneof(
  { weight: 1, arbitrary: fc.constant('__proto__') },
  { weight: 3, arbitrary: fc.constantFrom( 'constructor', 'prototype', 'toString', '', ' ', 'a.b', 'a[0]', '0', '-1', 'a\nb', 'a\u001b[31mb', '\ud800', 'name', 'labels', 'pools', 'build') },
  { weight: 2, arbitrary: fc.string({ maxLength: 12 }) },
);
const scalar = fc.oneof(
  fc.constantFrom<Json>(null, true, false, 0, -1, 1.5, 1e308, -0, 4_294_967_296, '', ' ', 'null', '~', '0x1F', '\u0000', 'a\nb: c', '*alias', '&anchor x', '!!str', '\ud800'),
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.string({ maxLength: 20 }),
  fc.string({ unit: 'binary', maxLength: 20 }),
);
const jsonValue: fc.Arbitrary<Json> = fc.letrec<{ value: Json }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    scalar,
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(nastyKey, tie('value'), { maxKeys: 4, noNullPrototype: true }),
  ),
})).value;

type Mutation = { at: number; kind: 'delete' | 'replace' | 'add' | 'duplicate'; key: string; value: Json };
const mutation: fc.Arbitrary<Mutation> = fc.record({ at: fc.nat(), kind: fc.constantFrom('delete', 'replace', 'add', 'duplicate'), key: nastyKey, value: jsonValue });

function setOwn(target: Record<string, Json>, key: string, value: Json): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

function mutate(config: Json, mutations: readonly Mutation[]): Json {
  let root = structuredClone(config);
  for (const { at, kind, key, value } of mutations) {
    const paths = pathsOf(root);
    const path = paths[at % paths.length] ?? [];
    if (path.length === 0) {
      if (kind === 'replace') root = value;
      else if (root !== null && typeof root === 'object' && !Array.isArray(root)) setOwn(root, key, value);
      continue;
    }
    const parent = path.slice(0, -1).reduce<Json>((node, part) => (node as Record<string | number, Json>)[part] as Json, root) as Record<string | number, Json> | Json[];
    const last = path[path.length - 1] as string | number;
    if (Array.isArray(parent)) {
      const index = last as number;
      if (kind === 'delete') parent.splice(index, 1);
      else if (kind === 'replace') parent[index] = value;
      else if (kind === 'add') parent.push(value);
      else parent.push(structuredClone(parent[index] as Json));
    } else {
      const record = parent as Record<string, Json>;
      if (kind === 'delete') delete record[last];
      else if (kind === 'replace') setOwn(record, String(last), value);
      else if (kind === 'add') setOwn(record, key, value);
      else setOwn(record, key, structuredClone(record[last] as Json));
    }
  }
  return root;
}

function hasPath(value: unknown, path: Path): boolean {
  let node = value;
  for (const part of path) {
    if (node === null || typeof node !== 'object' || !Object.hasOwn(node, part)) return false;
    node = (node as Record<string | number, unknown>)[part];
  }
  return true;
}

type Outcome = { config: Config } | { lines: string[]; issues: readonly z.core.$ZodIssue[] };

/** Runs the loader; anything but a config or a CONFIG_INVALID that lists every issue by field fails the property. */
function outcome(run: () => Config, source: string): Outcome {
  try {
    return { config: run() };
  } catch (error) {
    if (!isCbactionsError(error, 'CONFIG_INVALID')) throw error;
    return { lines: checkedLines(error.message, source, error.cause), issues: (error.cause as z.ZodError).issues };
  }
}

function checkedLines(message: string, source: string, cause: unknown): string[] {
  const [first, ...lines] = message.split('\n');
  expect(first).toBe(`${source} is invalid:`);
  const issues = (cause as z.ZodError | undefined)?.issues ?? [];
  expect(issues.length).toBeGreaterThan(0);
  // One line per issue, each starting with the field it is about.
  expect(lines).toHaveLength(issues.length);
  issues.forEach((issue, i) => {
    expect(lines[i]?.startsWith(`  ${formatPath(issue.path)}: `), `line ${JSON.stringify(lines[i])} for path ${JSON.stringify(issue.path)}`).toBe(true);
    expect(issue.message.length).toBeGreaterThan(0);
  });
  // eslint-disable-next-line no-control-regex
  for (const line of lines) expect(line, 'control characters in an error line').not.toMatch(/[\u0000-\u001f\u007f]/);
  return lines.map((line) => line.trim());
}

/** Process warnings (the YAML library reports through them): stderr text outside the structured logs. */
const warnings: string[] = [];
const onWarning = (warning: Error) => warnings.push(`${warning.name}: ${warning.message}`);
process.on('warning', onWarning);
afterAll(() => process.off('warning', onWarning));

const directory = mkdtempSync(join(tmpdir(), 'cbactions-config-fuzz-'));
afterAll(() => rmSync(directory, { recursive: true, force: true }));
let fileCount = 0;

async function loadText(text: string): Promise<{ outcome?: Outcome; code?: string }> {
  const path = join(directory, `config-${(fileCount += 1)}.yaml`);
  await writeFile(path, text);
  try {
    return await loadAndClassify(path);
  } finally {
    await rm(path, { force: true });
  }
}

async function loadAndClassify(path: string): Promise<{ outcome?: Outcome; code?: string }> {
  try {
    return { outcome: { config: await loadConfigFile(path) } };
  } catch (error) {
    if (!isCbactionsError(error) || !/^CONFIG_/.test(error.code)) throw new Error(`the loader threw something that is not a config error: ${String(error)}`, { cause: error });
    expect(error.message).toContain(path);
    if (error.code === 'CONFIG_INVALID') return { outcome: { lines: checkedLines(error.message, `config file ${path}`, error.cause), issues: (error.cause as z.ZodError).issues }, code: error.code };
    return { code: error.code };
  }
}

describe('config loader properties', () => {
  it('the base config is valid (so the mutations below start from a config that loads)', () => {
    expect(parseConfig(VALID).pools).toHaveLength(2);
  });

  it('random mutations of a valid config give a config, or CONFIG_INVALID listing every issue by field', () => {
    fc.assert(
      fc.property(fc.array(mutation, { minLength: 1, maxLength: 3 }), (mutations) => {
        const raw = mutate(VALID as Json, mutations);
        const result = outcome(() => parseConfig(raw), 'configuration');
        if ('config' in result) {
          // Nothing the file says is silently dropped: every key is still there (a `__proto__`
          // key, which zod would drop from a record, is refused by parseConfig).
          for (const path of pathsOf(raw)) {
            expect(hasPath(result.config, path), `${formatPath(path)} was dropped`).toBe(true);
          }
          // A parsed config is a fixed point: defaults filled in, nothing left to change.
          expect(parseConfig(result.config)).toEqual(result.config);
        }
      }),
      fuzzParameters(2),
    );
  });

  it('random documents of any shape never make the schema throw anything but CONFIG_INVALID', () => {
    fc.assert(
      fc.property(jsonValue, (raw) => {
        outcome(() => parseConfig(raw), 'configuration');
      }),
      fuzzParameters(),
    );
  });

  it('a mutated config reads the same from a YAML file as from the object', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(mutation, { minLength: 1, maxLength: 3 }), fc.constantFrom('block', 'flow', 'json'), async (mutations, style) => {
        const raw = mutate(VALID as Json, mutations);
        const text = style === 'json' ? JSON.stringify(raw) : toYaml(raw, style === 'flow' ? { collectionStyle: 'flow' } : {});
        const direct = outcome(() => parseConfig(raw), 'configuration');
        const { outcome: fromFile, code } = await loadText(text);
        expect(code === undefined || code === 'CONFIG_INVALID', `file gave ${code}`).toBe(true);
        if ('config' in direct) expect(fromFile).toEqual(direct);
        else expect(fromFile && 'lines' in fromFile ? fromFile.issues.map((issue) => issue.path) : fromFile).toEqual(direct.issues.map((issue) => issue.path));
      }),
      fuzzParameters(8),
    );
  });

  it('random YAML text gives a config or a CONFIG_* error naming the file, never anything else', async () => {
    const token = fc.oneof(
      fc.constantFrom(
        ':', ': ', '- ', '\n', '  ', '\t', '{', '}', '[', ']', ',', '"', "'", '#', '|', '>', '? ', '&a ', '*a', '*b', '<<: *a', '!!str ', '!!map ', '!!binary ', '!foo ',
        '%YAML 1.2\n', '---\n', '...\n', '\ufeff', '\u0000', '\r\n', 'null', '~', 'true', 'no', '0o17', '.inf', '1e999',
        'github', 'pools', 'name', 'labels', 'build', 'deploy', 'tags', '__proto__', 'scope', 'organization', 'auth', 'token', 'env',
      ),
      fc.string({ maxLength: 8 }),
    );
    const yamlText = fc.oneof(
      fc.array(token, { maxLength: 60 }).map((tokens) => tokens.join('')),
      // A valid file with bytes inserted, removed or replaced.
      fc.tuple(fc.nat(), fc.nat({ max: 4 }), fc.array(token, { maxLength: 3 })).map(([at, remove, insert]) => {
        const text = toYaml(VALID);
        const cut = at % (text.length + 1);
        return text.slice(0, cut) + insert.join('') + text.slice(cut + remove);
      }),
    );
    await fc.assert(
      fc.asyncProperty(yamlText, async (text) => {
        warnings.length = 0;
        await loadText(text);
        // Warnings are emitted on the next tick; one turn of the event loop delivers them.
        await new Promise<void>((resolve) => setImmediate(resolve));
        expect(warnings).toEqual([]);
      }),
      fuzzParameters(4),
    );
  });
});

describe('regressions the properties found', () => {
  it('a key with a newline or an escape sequence stays on its problem line, escaped', () => {
    for (const [key, printed] of [
      ['a\nb', 'a\\u000ab'],
      ['a\u001b[31mb', 'a\\u001b[31mb'],
      ['\u0000github', '\\u0000github'],
    ]) {
      const error = (() => {
        try {
          parseConfig({ ...VALID, [key as string]: 0 });
        } catch (caught) {
          return caught as Error;
        }
        throw new Error('expected CONFIG_INVALID');
      })();
      expect(error.message.split('\n')).toEqual(['configuration is invalid:', `  (top level): Unrecognized key: "${printed}"`]);
    }
    expect(formatPath(['deploy', 'tags', 'x\ny'])).toBe('deploy.tags.x\\u000ay');
  });

  it('an unresolved YAML tag is CONFIG_SYNTAX naming it, and no YAML warning reaches stderr as a process warning', async () => {
    for (const text of ['!#', `${toYaml(VALID)}extra: !Ref Thing\n`]) {
      warnings.length = 0;
      const { code } = await loadText(text);
      await new Promise<void>((resolve) => setImmediate(resolve));
      expect(code).toBe('CONFIG_SYNTAX');
      expect(warnings).toEqual([]);
    }
    // A collection as a key: the JS object gets a string key, which the schema names.
    warnings.length = 0;
    const complexKey = await loadText(`? ${toYaml(VALID).replace(/\n/g, '\n  ')}\n`);
    await new Promise<void>((resolve) => setImmediate(resolve));
    expect(complexKey.code).toBe('CONFIG_INVALID');
    expect(warnings).toEqual([]);
    const path = join(directory, 'tagged.yaml');
    await writeFile(path, toYaml(VALID).replace('projectName: cbactions', 'projectName: !Sub cbactions'));
    await expect(loadConfigFile(path)).rejects.toMatchObject({ code: 'CONFIG_SYNTAX', message: expect.stringContaining('Unresolved tag: !Sub') });
  });
});
