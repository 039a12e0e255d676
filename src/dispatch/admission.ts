/**
 * The admission decision for one job (issue 12): the `policy` section's rules, in order,
 * against the job's context (job-context.ts) and its pool. Pure: the same inputs give the
 * same decision, in the dispatch path (before StartBuild) and in `cbactions policy explain`.
 *
 * - The first rule whose every match field matches decides; when none does, `defaultEffect`.
 * - A rule that matches on a value the job's context lacks (or a context that could not be
 *   read at all) refuses the job: a missing value never lets a job past a rule meant for it.
 * - A `run` rule's `build` settings apply only when the pool lists them in `overridable`;
 *   its `role` names one of `policy.roles` and becomes the build's service role.
 * - Fork protection (`policy.forkProtection`, on by default): a job from a fork pull request
 *   never runs privileged (by its pool or a rule) nor under a role other than its pool's
 *   default; when it cannot be told whether the job comes from a fork, such a job is refused.
 */
import picomatch from 'picomatch';
import type { OverridableSetting, PolicyConfig, PolicyMatch, PolicyRule } from '../config/policy-schema.js';
import { BuildSettingsSchema, buildSettingsProblems, type BuildSettings, type Pool } from '../config/schema.js';
import type { JobContext, JobContextField } from './job-context.js';

/** The pool as the decision needs it. */
export type AdmissionPool = Pick<Pool, 'name' | 'build' | 'overridable'>;

/** The metrics and log label of the decision made by `defaultEffect`. */
export const DEFAULT_RULE = '(default)';

export const AdmissionCode = {
  /** A rule (or the default, or fork protection) refused the job. */
  Refused: 'POLICY_REFUSED',
  /** The job's context lacks what a rule needs, or could not be read. */
  ContextUnreadable: 'JOB_CONTEXT_UNREADABLE',
  /** The matching rule cannot apply to this pool (a setting it may not override, a role that is not there). */
  RuleInapplicable: 'POLICY_RULE_INAPPLICABLE',
} as const;

const REFUSAL_CODES = new Set<string>(Object.values(AdmissionCode));

/**
 * A job the policy refused did what the policy says, it did not fail to run: its log line is
 * `worker.refused`, not `worker.failed` (which the failed-dispatch alarm counts).
 */
export function isAdmissionRefusal(failureCode: string | undefined): boolean {
  return failureCode !== undefined && REFUSAL_CODES.has(failureCode);
}

export type AdmissionDecision =
  | {
      effect: 'run';
      /** The rule's name, or DEFAULT_RULE. */
      rule: string;
      /** The effective build settings: the pool's, the rule's overrides, the rule's role. */
      build: BuildSettings;
      /** The policy role the build runs as, when the rule names one. */
      role?: string;
      /** Which settings the rule changed. */
      overridden: OverridableSetting[];
    }
  | {
      effect: 'refuse';
      rule: string;
      code: (typeof AdmissionCode)[keyof typeof AdmissionCode];
      /** One line for the job in GitHub and the log (config text and names only, never job content but the field names). */
      reason: string;
    };

type MatchResult = { matches: boolean } | { missing: JobContextField };

const GLOB_FIELDS = ['repository', 'owner', 'ref', 'workflow', 'actor'] as const;
/** GitHub logins and repository names are case-insensitive; refs and paths are not. */
const CASE_INSENSITIVE = new Set<JobContextField>(['repository', 'owner', 'actor']);

const matchers = new Map<string, (value: string) => boolean>();
function globMatcher(glob: string, nocase: boolean): (value: string) => boolean {
  const key = `${nocase ? 'i' : 's'}:${glob}`;
  let matcher = matchers.get(key);
  if (matcher === undefined) {
    // dot: `acme/*` covers `acme/.github`; no brace expansion to huge sets (picomatch compiles braces to a regex).
    matcher = picomatch(glob, { dot: true, nocase });
    matchers.set(key, matcher);
  }
  return matcher;
}

/** Whether `match` holds for the job (its `pool` is checked by the caller). */
export function matchRule(match: PolicyMatch, context: JobContext): MatchResult {
  for (const field of GLOB_FIELDS) {
    const globs = match[field];
    if (globs === undefined) continue;
    const value = context[field];
    if (value === undefined) return { missing: field };
    if (!globs.some((glob) => globMatcher(glob, CASE_INSENSITIVE.has(field))(value))) return { matches: false };
  }
  if (match.event !== undefined) {
    if (context.event === undefined) return { missing: 'event' };
    if (!match.event.includes(context.event)) return { matches: false };
  }
  if (match.fork !== undefined) {
    if (context.fork === undefined) return { missing: 'fork' };
    if (match.fork !== context.fork) return { matches: false };
  }
  return { matches: true };
}

const FIELD_SOURCE: Record<JobContextField, string> = {
  repository: 'github.repository',
  owner: 'github.repository_owner',
  event: 'github.event_name',
  ref: 'github.ref',
  workflow: 'github.workflow_ref',
  actor: 'github.actor',
  fork: 'whether the pull request comes from a fork (github.event.pull_request.head.repo)',
};

function unreadable(rule: string, needs: JobContextField, context: JobContext, what: string): AdmissionDecision {
  const why = context.problem ?? `the job's context has no ${FIELD_SOURCE[needs]}`;
  return { effect: 'refuse', rule, code: AdmissionCode.ContextUnreadable, reason: `${what}, but ${why}; the job was refused rather than let past the rule` };
}

function applyRun(policy: PolicyConfig, pool: AdmissionPool, context: JobContext, rule: PolicyRule | undefined): AdmissionDecision {
  const name = rule?.name ?? DEFAULT_RULE;
  const ruleText = rule ? `policy rule "${rule.name}"` : 'the policy default';
  const overrides = rule?.build ?? {};
  const overridden = (Object.keys(overrides) as OverridableSetting[]).filter((key) => overrides[key] !== undefined);
  const allowed = new Set(pool.overridable);
  const denied = overridden.filter((setting) => !allowed.has(setting));
  if (denied.length > 0) {
    return {
      effect: 'refuse',
      rule: name,
      code: AdmissionCode.RuleInapplicable,
      reason: `${ruleText} sets ${denied.join(', ')}, which pool "${pool.name}" does not let rules override (pools[].overridable)`,
    };
  }
  const merged = BuildSettingsSchema.safeParse({ ...pool.build, ...overrides });
  const problem = merged.success ? buildSettingsProblems(merged.data)[0]?.message : merged.error.issues[0]?.message;
  if (!merged.success || problem !== undefined) {
    return { effect: 'refuse', rule: name, code: AdmissionCode.RuleInapplicable, reason: `${ruleText} gives pool "${pool.name}" build settings CodeBuild would refuse: ${problem ?? 'invalid settings'}` };
  }
  const build: BuildSettings = merged.data;
  let roleChanged = false;
  if (rule?.role !== undefined) {
    const role = policy.roles[rule.role];
    if (role === undefined) {
      return { effect: 'refuse', rule: name, code: AdmissionCode.RuleInapplicable, reason: `${ruleText} names role "${rule.role}", which policy.roles does not define` };
    }
    roleChanged = role.arn !== pool.build.serviceRole?.arn;
    build.serviceRole = role;
  }
  if (policy.forkProtection && (build.privileged || roleChanged)) {
    const what = build.privileged ? `privileged (Docker) builds${pool.build.privileged ? ` (pool "${pool.name}")` : ''}` : `role "${rule?.role}"`;
    if (context.fork === undefined) return unreadable(name, 'fork', context, `${ruleText} matched, and fork protection keeps pull requests from forks off ${what}`);
    if (context.fork) {
      return { effect: 'refuse', rule: name, code: AdmissionCode.Refused, reason: `${ruleText} matched, but pull requests from forks may not use ${what} (policy.forkProtection)` };
    }
  }
  return { effect: 'run', rule: name, build, ...(rule?.role !== undefined ? { role: rule.role } : {}), overridden };
}

/** The decision for a job of `pool` with `context`. */
export function decideAdmission(policy: PolicyConfig, pool: AdmissionPool, context: JobContext): AdmissionDecision {
  for (const rule of policy.rules) {
    if (rule.match.pool !== undefined && !rule.match.pool.includes(pool.name)) continue;
    const result = matchRule(rule.match, context);
    if ('missing' in result) return unreadable(rule.name, result.missing, context, `policy rule "${rule.name}" matches on ${FIELD_SOURCE[result.missing]}`);
    if (!result.matches) continue;
    if (rule.effect === 'refuse') return { effect: 'refuse', rule: rule.name, code: AdmissionCode.Refused, reason: `refused by policy rule "${rule.name}": ${rule.reason ?? 'no reason given'}` };
    return applyRun(policy, pool, context, rule);
  }
  if (policy.defaultEffect === 'refuse') {
    return { effect: 'refuse', rule: DEFAULT_RULE, code: AdmissionCode.Refused, reason: 'no policy rule matched the job and policy.defaultEffect is refuse' };
  }
  return applyRun(policy, pool, context, undefined);
}
