/**
 * The job's own context, as the admission policy sees it: a few values of the job
 * message's `contextData.github` (a typed context tree, RUNNER-PROTOCOL §7), read
 * defensively. The message is untrusted: only the paths below are walked (never the whole
 * tree), every node is checked for its shape, strings and dictionaries are bounded, and a
 * key that appears twice (the runner's dictionaries ignore case) makes the context
 * unreadable rather than picking one of the two.
 *
 * The runner's serialization (actions/runner PipelineContextDataJsonConverter): a string,
 * boolean or number is written as the bare JSON value; an array as `{"t":1,"a":[…]}`; a
 * dictionary as `{"t":2,"d":[{"k":…,"v":…}]}` (case-sensitive dictionary: `t` 5). When
 * reading it also accepts the object forms `{"t":0,"s":…}` (or no `t`), `{"t":3,"b":…}`
 * and `{"t":4,"n":…}`; so does this reader.
 *
 * A value that is missing is just missing (a rule that needs it refuses the job, see
 * admission.ts); a value that is there but malformed, or a tree that is not a tree, makes
 * the whole context unreadable: `problem` says why and every value is left out.
 */
import { z } from 'zod';

/** What the policy matches on. Every value may be missing; `problem` is set when none could be read. */
export interface JobContext {
  /** `owner/name` (`github.repository`). */
  repository?: string;
  /** `github.repository_owner` (or the owner part of the repository). */
  owner?: string;
  /** `github.event_name`. */
  event?: string;
  /** `github.ref` (may be empty for some events). */
  ref?: string;
  /** The workflow file from `github.workflow_ref`: `.github/workflows/ci.yml`. */
  workflow?: string;
  /** `github.actor`. */
  actor?: string;
  /** The job comes from a pull request (or a workflow run) whose head repository is not the job's repository. */
  fork?: boolean;
  /** Why the context could not be read at all. */
  problem?: string;
}

export type JobContextField = Exclude<keyof JobContext, 'problem'>;

/** Entries of one dictionary scanned at most: the github context has ~40, an event payload's objects ~100. */
export const MAX_DICTIONARY_ENTRIES = 10_000;
/** Longest string read (a ref or workflow path is far shorter). */
export const MAX_STRING_LENGTH = 1024;

/** Events whose jobs come from a pull request: their fork status must be known. */
const PULL_REQUEST_EVENTS = new Set(['pull_request', 'pull_request_target', 'pull_request_review', 'pull_request_review_comment']);

class UnreadableContext extends Error {}

const TypedDictionary = z.object({
  t: z.union([z.literal(2), z.literal(5)]),
  d: z.array(z.object({ k: z.string().max(256), v: z.unknown() })).max(MAX_DICTIONARY_ENTRIES, `a dictionary has more than ${MAX_DICTIONARY_ENTRIES} entries`).optional(),
});
const TypedString = z.object({ t: z.literal(0).optional(), s: z.string().optional() });
const TypedBoolean = z.object({ t: z.literal(3), b: z.boolean().optional() });
const TypedNumber = z.object({ t: z.literal(4), n: z.number().optional() });

type Scalar = string | boolean | number;
type Node = { kind: 'dictionary'; entries: Map<string, unknown> } | { kind: 'scalar'; value: Scalar } | { kind: 'array' } | { kind: 'null' };

function decode(value: unknown, where: string): Node {
  if (value === null || value === undefined) return { kind: 'null' };
  if (typeof value === 'string' || typeof value === 'boolean' || typeof value === 'number') return { kind: 'scalar', value };
  if (typeof value !== 'object' || Array.isArray(value)) throw new UnreadableContext(`${where} is not a context value`);
  const t = (value as { t?: unknown }).t;
  if (t === 1) return { kind: 'array' };
  if (t === 2 || t === 5) {
    const parsed = TypedDictionary.safeParse(value);
    if (!parsed.success) throw new UnreadableContext(`${where} is not a well-formed dictionary (${parsed.error.issues[0]?.message ?? 'bad shape'})`);
    const entries = new Map<string, unknown>();
    for (const { k, v } of parsed.data.d ?? []) {
      const key = k.toLowerCase();
      if (entries.has(key)) throw new UnreadableContext(`${where} has the key "${printableKey(k)}" twice`);
      entries.set(key, v);
    }
    return { kind: 'dictionary', entries };
  }
  if (t === 3) {
    const parsed = TypedBoolean.safeParse(value);
    if (parsed.success) return { kind: 'scalar', value: parsed.data.b ?? false };
  } else if (t === 4) {
    const parsed = TypedNumber.safeParse(value);
    if (parsed.success) return { kind: 'scalar', value: parsed.data.n ?? 0 };
  } else if (t === 0 || t === undefined) {
    const parsed = TypedString.safeParse(value);
    if (parsed.success) return { kind: 'scalar', value: parsed.data.s ?? '' };
  }
  throw new UnreadableContext(`${where} has an unknown context type`);
}

function printableKey(key: string): string {
  return key.replace(/[^\x20-\x7e]/g, '?').slice(0, 64);
}

/** The dictionary at `where`, or undefined when it is missing (null or absent). */
function dictionaryAt(value: unknown, where: string): Map<string, unknown> | undefined {
  const node = decode(value, where);
  if (node.kind === 'null') return undefined;
  if (node.kind !== 'dictionary') throw new UnreadableContext(`${where} is not a dictionary`);
  return node.entries;
}

function stringAt(dictionary: Map<string, unknown> | undefined, key: string, where: string): string | undefined {
  if (dictionary === undefined) return undefined;
  const node = decode(dictionary.get(key), `${where}.${key}`);
  if (node.kind === 'null') return undefined;
  if (node.kind !== 'scalar' || typeof node.value !== 'string') throw new UnreadableContext(`${where}.${key} is not a string`);
  if (node.value.length > MAX_STRING_LENGTH) throw new UnreadableContext(`${where}.${key} is longer than ${MAX_STRING_LENGTH} characters`);
  return node.value;
}

function booleanAt(dictionary: Map<string, unknown> | undefined, key: string, where: string): boolean | undefined {
  if (dictionary === undefined) return undefined;
  const node = decode(dictionary.get(key), `${where}.${key}`);
  if (node.kind === 'null') return undefined;
  if (node.kind !== 'scalar' || typeof node.value !== 'boolean') throw new UnreadableContext(`${where}.${key} is not a boolean`);
  return node.value;
}

function childAt(dictionary: Map<string, unknown> | undefined, key: string, where: string): Map<string, unknown> | undefined {
  return dictionary === undefined ? undefined : dictionaryAt(dictionary.get(key), `${where}.${key}`);
}

// eslint-disable-next-line no-control-regex
const NO_CONTROL = /^[^\u0000-\u001f\u007f]*$/;
const REPOSITORY = /^[A-Za-z0-9_.-]{1,100}\/[A-Za-z0-9_.-]{1,100}$/;
const OWNER = /^[A-Za-z0-9_.-]{1,100}$/;

/** The values, once read: each must look like what GitHub sends, or the context is unreadable. */
const JobContextSchema = z.object({
  repository: z.string().regex(REPOSITORY, 'github.repository is not "owner/name"').optional(),
  owner: z.string().regex(OWNER, 'github.repository_owner is not an owner login').optional(),
  event: z.string().regex(/^[a-z_]{1,64}$/, 'github.event_name is not an event name').optional(),
  ref: z.string().regex(NO_CONTROL, 'github.ref holds control characters').optional(),
  workflow: z.string().min(1).regex(NO_CONTROL, 'github.workflow_ref holds control characters').optional(),
  actor: z.string().regex(/^[A-Za-z0-9_.[\]-]{1,100}$/, 'github.actor is not a login').optional(),
  fork: z.boolean().optional(),
});

/** `owner/repo/.github/workflows/ci.yml@refs/heads/main` → `.github/workflows/ci.yml`. */
function workflowPath(workflowRef: string | undefined): string | undefined {
  if (workflowRef === undefined) return undefined;
  const match = /^[^/@]+\/[^/@]+\/([^@]+)@/.exec(workflowRef);
  if (!match) throw new UnreadableContext('github.workflow_ref is not "owner/name/path@ref"');
  return match[1];
}

function differs(a: string | undefined, b: string | undefined): boolean | undefined {
  return a === undefined || b === undefined ? undefined : a.toLowerCase() !== b.toLowerCase();
}

/**
 * Whether the job comes from another repository than its own: the pull request's head
 * repository is not its base repository (the head's `fork` flag alone is not enough: a
 * repository that is itself a fork has it on its own branches too, so it is used only when
 * the names are missing), or a workflow run was triggered from another repository. A pull
 * request whose head repository is gone (deleted fork) counts as a fork. Undefined when it
 * cannot be told.
 */
function forkOf(event: string | undefined, payload: Map<string, unknown> | undefined, repository: string | undefined): boolean | undefined {
  const pullRequest = childAt(payload, 'pull_request', 'github.event');
  if (pullRequest !== undefined) {
    const where = 'github.event.pull_request';
    const head = childAt(pullRequest, 'head', where);
    if (head === undefined) return undefined;
    const headRepo = childAt(head, 'repo', `${where}.head`);
    if (headRepo === undefined) return head.has('repo') ? true : undefined;
    const baseName = stringAt(childAt(childAt(pullRequest, 'base', where), 'repo', `${where}.base`), 'full_name', `${where}.base.repo`) ?? repository;
    const byName = differs(stringAt(headRepo, 'full_name', `${where}.head.repo`), baseName);
    return byName ?? booleanAt(headRepo, 'fork', `${where}.head.repo`);
  }
  if (event !== undefined && PULL_REQUEST_EVENTS.has(event)) return undefined;
  if (event === 'workflow_run') {
    const run = childAt(payload, 'workflow_run', 'github.event');
    return differs(stringAt(childAt(run, 'head_repository', 'github.event.workflow_run'), 'full_name', 'github.event.workflow_run.head_repository'), repository);
  }
  return event === undefined ? undefined : false;
}

/**
 * The policy's view of a parsed job message. Never throws: an unreadable context comes
 * back with `problem` set and no values.
 */
export function readJobContext(message: Record<string, unknown>): JobContext {
  try {
    const contextData = message.contextData;
    if (contextData === undefined || contextData === null) throw new UnreadableContext('the job message has no contextData');
    if (typeof contextData !== 'object' || Array.isArray(contextData)) throw new UnreadableContext('the job message\'s contextData is not an object');
    // The runner's context names ignore case: two spellings of github would be two answers.
    const names = Object.keys(contextData).filter((name) => name.toLowerCase() === 'github');
    if (names.length === 0) throw new UnreadableContext('the job message\'s contextData has no github context');
    if (names.length > 1) throw new UnreadableContext('the job message\'s contextData has the github context twice');
    const github = dictionaryAt((contextData as Record<string, unknown>)[names[0] as string], 'contextData.github');
    if (github === undefined) throw new UnreadableContext('the job message\'s contextData.github is empty');
    const repository = stringAt(github, 'repository', 'github');
    const event = stringAt(github, 'event_name', 'github');
    const payload = childAt(github, 'event', 'github');
    const owner = stringAt(github, 'repository_owner', 'github') ?? repository?.split('/')[0];
    if (repository !== undefined && owner !== undefined && repository.split('/')[0]?.toLowerCase() !== owner.toLowerCase()) {
      throw new UnreadableContext('github.repository_owner is not the owner of github.repository');
    }
    const values = {
      repository,
      owner,
      event,
      ref: stringAt(github, 'ref', 'github'),
      workflow: workflowPath(stringAt(github, 'workflow_ref', 'github')),
      actor: stringAt(github, 'actor', 'github'),
      fork: forkOf(event, payload, repository),
    };
    const parsed = JobContextSchema.safeParse(values);
    if (!parsed.success) throw new UnreadableContext(parsed.error.issues[0]?.message ?? 'a github value is malformed');
    const context: JobContext = {};
    for (const [key, value] of Object.entries(parsed.data)) if (value !== undefined) (context as Record<string, unknown>)[key] = value;
    return context;
  } catch (error) {
    if (error instanceof UnreadableContext) return { problem: error.message };
    // A tree nested too deep for the stack, or anything else unexpected: still just unreadable.
    return { problem: 'the job message\'s contextData could not be read' };
  }
}
