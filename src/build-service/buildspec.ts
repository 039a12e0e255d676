import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { formatIssues } from '../config/load.js';
import { CbactionsError } from '../util/errors.js';

/**
 * Buildspec 0.2, as the CodeBuild buildspec reference defines it: `env` (shell, variables,
 * exported-variables) and the four command phases with `commands`, `finally` and
 * `on-failure`. What the local service cannot do (parameter store, secrets manager,
 * run-as, retries) is refused by name rather than silently ignored.
 */

export const BUILDSPEC_PHASES = ['install', 'pre_build', 'build', 'post_build'] as const;
export type BuildspecPhaseName = (typeof BUILDSPEC_PHASES)[number];

export interface BuildspecPhase {
  commands: string[];
  finally: string[];
  /** Absent: the default phase transitions. */
  onFailure: 'ABORT' | 'CONTINUE' | undefined;
}

export interface Buildspec {
  /** `bash` or `/bin/sh` (the Linux default). */
  shell: 'bash' | '/bin/sh';
  variables: Record<string, string>;
  exportedVariables: string[];
  phases: Partial<Record<BuildspecPhaseName, BuildspecPhase>>;
}

export const BuildspecErrorCode = 'BUILDSPEC_INVALID';

const NOT_SUPPORTED = 'is not supported by the local build service';

const ScalarSchema = z.union([z.string(), z.number(), z.boolean()]).transform(String);
const CommandSchema = z.union([z.string(), z.number(), z.boolean()], {
  error: 'expected a command string (quote a command that contains ": ")',
}).transform(String);
const CommandListSchema = z
  .array(CommandSchema)
  .nullish()
  .transform((list) => list ?? []);

const PhaseSchema = z
  .looseObject({
    commands: CommandListSchema,
    finally: CommandListSchema,
    'on-failure': z.enum(['ABORT', 'CONTINUE'], { error: `expected ABORT or CONTINUE (RETRY ${NOT_SUPPORTED})` }).optional(),
    'runtime-versions': z.record(z.string(), z.unknown()).optional(),
  })
  .superRefine((phase, ctx) => {
    for (const key of Object.keys(phase)) {
      if (key === 'run-as') ctx.addIssue({ code: 'custom', path: [key], message: `run-as ${NOT_SUPPORTED}` });
      else if (!['commands', 'finally', 'on-failure', 'runtime-versions'].includes(key)) ctx.addIssue({ code: 'custom', path: [key], message: 'is not a phase setting' });
    }
  })
  .nullish();

const BuildspecSchema = z.looseObject({
  version: z.union([z.number(), z.string()]).refine((version) => String(version) === '0.2', 'only buildspec version 0.2 is supported'),
  'run-as': z.never({ error: `run-as ${NOT_SUPPORTED}` }).optional(),
  env: z
    .looseObject({
      shell: z.enum(['bash', '/bin/sh'], { error: 'expected bash or /bin/sh (the Linux shells CodeBuild supports)' }).optional(),
      variables: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'expected a variable name'), ScalarSchema).nullish(),
      'exported-variables': z.array(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'expected a variable name')).nullish(),
      'parameter-store': z.never({ error: `parameter-store ${NOT_SUPPORTED}: pass values as environment variables` }).optional(),
      'secrets-manager': z.never({ error: `secrets-manager ${NOT_SUPPORTED}: pass values as environment variables` }).optional(),
      'git-credential-helper': z.unknown().optional(),
      'run-as': z.never({ error: `run-as ${NOT_SUPPORTED}` }).optional(),
    })
    .nullish(),
  phases: z
    .looseObject({ install: PhaseSchema, pre_build: PhaseSchema, build: PhaseSchema, post_build: PhaseSchema })
    .superRefine((phases, ctx) => {
      for (const key of Object.keys(phases)) {
        if (!(BUILDSPEC_PHASES as readonly string[]).includes(key)) {
          ctx.addIssue({ code: 'custom', path: [key], message: `unknown phase (expected one of ${BUILDSPEC_PHASES.join(', ')})` });
        }
      }
    })
    .nullish(),
});

/** Parses buildspec YAML; `source` names it in errors (a path, or "buildspecOverride"). */
export function parseBuildspec(text: string, source: string): Buildspec {
  let raw: unknown;
  try {
    raw = parseYaml(text, { prettyErrors: true });
  } catch (error) {
    throw new CbactionsError(BuildspecErrorCode, `YAML_FILE_ERROR: ${source} is not valid YAML: ${(error as Error).message.split('\n')[0] ?? ''}`, { cause: error });
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new CbactionsError(BuildspecErrorCode, `YAML_FILE_ERROR: ${source} is not a buildspec (expected a mapping with version and phases)`);
  }
  const result = BuildspecSchema.safeParse(raw);
  if (!result.success) {
    throw new CbactionsError(BuildspecErrorCode, `YAML_FILE_ERROR: ${source} is invalid: ${formatIssues(result.error.issues).join('; ')}`, { cause: result.error });
  }
  const spec = result.data;
  const phases: Partial<Record<BuildspecPhaseName, BuildspecPhase>> = {};
  for (const name of BUILDSPEC_PHASES) {
    const phase = spec.phases?.[name];
    if (phase) phases[name] = { commands: phase.commands, finally: phase.finally, onFailure: phase['on-failure'] };
  }
  return {
    shell: spec.env?.shell ?? '/bin/sh',
    variables: spec.env?.variables ?? {},
    exportedVariables: spec.env?.['exported-variables'] ?? [],
    phases,
  };
}
