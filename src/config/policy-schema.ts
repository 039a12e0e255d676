import { z } from 'zod';
import { ServiceRoleSchema } from './role-schema.js';

/**
 * The `policy` section: admission rules evaluated for each job, in order, before any build
 * starts. A rule matches on the job's own context (the job message's `contextData.github`:
 * repository, owner, event, ref, workflow file, actor, whether a pull request comes from a
 * fork) and on the pool; its effect refuses the job (the reason is shown on the job in
 * GitHub) or runs it with a named role and the build settings the pool lets rules override.
 * The first matching rule decides; when none matches, `defaultEffect` does.
 */

/** A glob on one context value (`*` within a path segment, `**` across, `?`, `[…]`, `{a,b}`), or several (any matches). */
const Globs = z
  .union([z.string().min(1).max(256), z.array(z.string().min(1).max(256)).min(1).max(100)])
  .transform((value) => (Array.isArray(value) ? value : [value]));

const NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;
const NAME_MESSAGE = 'lower-case letters, digits and "-", at most 63 characters';

export const PolicyMatchSchema = z.strictObject({
  /** `owner/name` of the job's repository (`github.repository`), e.g. `acme/*`. */
  repository: Globs.optional(),
  /** The repository owner (`github.repository_owner`). */
  owner: Globs.optional(),
  /** `github.event_name`: push, pull_request, pull_request_target, workflow_dispatch, schedule, … (exact names). */
  event: z.array(z.string().regex(/^[a-z_]{1,64}$/, 'expected an event name such as push')).min(1).optional(),
  /** `github.ref`, e.g. `refs/heads/main`, `refs/tags/v*`, `refs/pull/*\/merge`. */
  ref: Globs.optional(),
  /** The workflow file, from `github.workflow_ref` without the repository and `@ref`: `.github/workflows/deploy.yml`. */
  workflow: Globs.optional(),
  /** `github.actor` (who triggered the run). */
  actor: Globs.optional(),
  /** true: only pull requests whose head repository is a fork; false: only jobs that are not. */
  fork: z.boolean().optional(),
  /** Only jobs of these pools. */
  pool: z.array(z.string().min(1)).min(1).optional(),
});
export type PolicyMatch = z.infer<typeof PolicyMatchSchema>;

/** Build settings a rule may set; each must be listed in the pool's `overridable`. */
export const OVERRIDABLE_SETTINGS = ['computeType', 'image', 'privileged', 'timeoutMinutes', 'queuedTimeoutMinutes'] as const;
export type OverridableSetting = (typeof OVERRIDABLE_SETTINGS)[number];

export const PolicyRuleSchema = z.strictObject({
  name: z.string().regex(NAME, NAME_MESSAGE),
  /** Every field present must match (an empty match matches every job). */
  match: PolicyMatchSchema.default(() => ({})),
  effect: z.enum(['run', 'refuse']).default('run'),
  /** Shown on a refused job in GitHub and logged; required with `effect: refuse`. */
  reason: z.string().min(1).max(300).optional(),
  /** A role named in `policy.roles`: the build runs as it (StartBuild serviceRoleOverride). */
  role: z.string().regex(NAME, NAME_MESSAGE).optional(),
  /** Settings for the build, each allowed by the pool's `overridable`. */
  build: z
    .strictObject({
      computeType: z.string().min(1).optional(),
      image: z.string().min(1).optional(),
      privileged: z.boolean().optional(),
      timeoutMinutes: z.number().int().min(5).max(2160).optional(),
      queuedTimeoutMinutes: z.number().int().min(5).max(480).optional(),
    })
    .optional(),
});
export type PolicyRule = z.infer<typeof PolicyRuleSchema>;

export const PolicySchema = z.strictObject({
  /**
   * Roles rules may name. An existing role gives `{arn, roleId}`; `cbactions deploy` creates
   * the roles listed in `deploy.roles` and fills them in here for the runtime.
   */
  roles: z.record(z.string().regex(NAME, NAME_MESSAGE), ServiceRoleSchema).default(() => ({})),
  rules: z.array(PolicyRuleSchema).max(200).default(() => []),
  /** When no rule matches. */
  defaultEffect: z.enum(['run', 'refuse']).default('run'),
  /**
   * The protection that holds whatever the rules say: a pull request from a fork never runs
   * on a privileged pool (or with `privileged` set by a rule) nor under any role but its
   * pool's default. Turn off only for repositories that accept no fork pull requests.
   */
  forkProtection: z.boolean().default(true),
});
export type PolicyConfig = z.infer<typeof PolicySchema>;
