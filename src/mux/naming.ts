/**
 * Runner names: `<prefix>-<host>-<pool>-<slot>-<suffix>`, at most 64 characters (GitHub's
 * limit for a runner name). Unique (random suffix: a restarted mux on the same host never
 * collides with a registration its previous life left behind) and traceable to the host,
 * pool and slot that registered it.
 */
import { randomBytes } from 'node:crypto';

export const MAX_RUNNER_NAME_LENGTH = 64;
/** The host segment is cut to this length so that the host's prefix is the same for every pool. */
export const HOST_SEGMENT_MAX_LENGTH = 20;
export const SUFFIX_LENGTH = 6;
const SUFFIX_ALPHABET = '0123456789abcdefghijklmnopqrstuvwxyz';

/** The first DNS label of the host name, lower-case, only [a-z0-9-], at most 20 characters. */
export function hostSegment(hostname: string): string {
  const label = hostname.split('.')[0] ?? '';
  const cleaned = label
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/-+/g, '-')
    .replace(/^-|-$/g, '')
    .slice(0, HOST_SEGMENT_MAX_LENGTH)
    .replace(/-$/, '');
  return cleaned === '' ? 'host' : cleaned;
}

/** Every runner this host registers starts with this. */
export function hostNamePrefix(prefix: string, hostname: string): string {
  return `${prefix}-${hostSegment(hostname)}-`;
}

export function randomSuffix(random: (size: number) => Buffer = randomBytes): string {
  const bytes = random(SUFFIX_LENGTH);
  let out = '';
  for (let i = 0; i < SUFFIX_LENGTH; i++) out += SUFFIX_ALPHABET[(bytes[i] ?? 0) % SUFFIX_ALPHABET.length];
  return out;
}

export interface RunnerNameParts {
  prefix: string;
  hostname: string;
  pool: string;
  slot: number;
  suffix: string;
}

/**
 * The pool segment is the only one shortened: the prefix (≤ 24, schema) and host (≤ 20)
 * must stay intact so the host's own registrations can be recognised at start-up.
 */
export function runnerName(parts: RunnerNameParts): string {
  const head = hostNamePrefix(parts.prefix, parts.hostname);
  const tail = `-${parts.slot}-${parts.suffix}`;
  const budget = MAX_RUNNER_NAME_LENGTH - head.length - tail.length;
  const pool = parts.pool.slice(0, Math.max(1, budget)).replace(/-+$/, '') || 'p';
  return `${head}${pool}${tail}`.slice(0, MAX_RUNNER_NAME_LENGTH);
}

/**
 * True for a name this host would have generated for one of `pools`. The remainder after
 * the host prefix must be exactly `<pool>-<slot>-<suffix>`: a bare prefix test would also
 * match host "web-2" from host "web".
 */
export function isOwnRunnerName(name: string, prefix: string, hostname: string, pools: readonly string[]): boolean {
  const head = hostNamePrefix(prefix, hostname);
  if (!name.startsWith(head)) return false;
  const match = /^(.+)-(\d+)-([0-9a-z]+)$/.exec(name.slice(head.length));
  if (!match || match[3]?.length !== SUFFIX_LENGTH) return false;
  const slot = Number(match[2]);
  const suffix = match[3];
  return pools.some((pool) => runnerName({ prefix, hostname, pool, slot, suffix }) === name);
}
