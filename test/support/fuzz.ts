import type { Parameters } from 'fast-check';

/**
 * The one knob of the property tests. `CBACTIONS_FUZZ_RUNS` is the number of cases a
 * property gets (default 2,000, what CI runs); `npm run fuzz` raises it a hundredfold.
 * `CBACTIONS_FUZZ_SEED` (and `CBACTIONS_FUZZ_PATH`) replay the failure fast-check printed.
 */
export const DEFAULT_FUZZ_RUNS = 2_000;

function positiveInteger(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isSafeInteger(value) || value <= 0) throw new Error(`${name} must be a positive integer, got "${raw}"`);
  return value;
}

function seed(): number | undefined {
  const raw = process.env.CBACTIONS_FUZZ_SEED;
  if (raw === undefined || raw === '') return undefined;
  const value = Number(raw);
  // fast-check prints seeds as signed 32-bit integers.
  if (!Number.isInteger(value) || value < -0x80000000 || value > 0xffffffff) throw new Error(`CBACTIONS_FUZZ_SEED must be a 32-bit integer, got "${raw}"`);
  return value;
}

export const FUZZ_RUNS = positiveInteger('CBACTIONS_FUZZ_RUNS', DEFAULT_FUZZ_RUNS);

/**
 * Parameters for `fc.assert`. `cost` says how much dearer one case of this property is
 * than a typical one (it seals, or tampers with every byte), so it gets `FUZZ_RUNS / cost`
 * cases and CI time stays bounded while `npm run fuzz` scales every property alike.
 * `extra` adds fast-check parameters (say `endOnFailure` where shrinking is slow).
 */
export function fuzzParameters<T>(cost = 1, extra: Parameters<T> = {}): Parameters<T> {
  const parameters: Parameters<T> = { ...extra, numRuns: Math.max(1, Math.round(FUZZ_RUNS / cost)) };
  const replaySeed = seed();
  if (replaySeed !== undefined) {
    parameters.seed = replaySeed;
    const path = process.env.CBACTIONS_FUZZ_PATH;
    if (path !== undefined && path !== '') parameters.path = path;
  }
  return parameters;
}
