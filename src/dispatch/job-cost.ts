/**
 * What a build costs under CodeBuild's billing rule for its compute type, priced from the
 * config's `pricing` table. The rules (README, "Cost of a job"):
 * - on-demand EC2 compute (BUILD_GENERAL1_*): per build minute, every started minute counts
 *   (so at least one), from the build's submission to its end, as the CodeBuild price list
 *   words it;
 * - Lambda compute (BUILD_LAMBDA_*): per second, every started second counts;
 * - a reserved-capacity fleet: billed for the fleet's instances while they exist, not per
 *   build, so a build on one adds nothing.
 * These are list prices: free tier, savings plans and taxes are not in them.
 */
import type { BuildSettings, PricingConfig } from '../config/schema.js';
import type { JobLogFacts } from '../seal/types.js';

export type BillingRule = 'per-minute' | 'per-second' | 'fleet';
export type PriceFacts = NonNullable<JobLogFacts['price']>;

export function billingRule(build: Pick<BuildSettings, 'computeType' | 'fleetArn'>): BillingRule {
  if (build.fleetArn !== undefined) return 'fleet';
  return build.computeType.startsWith('BUILD_LAMBDA_') ? 'per-second' : 'per-minute';
}

/** The seconds CodeBuild bills for a build that lasted `durationMs`. */
export function billedSeconds(rule: BillingRule, durationMs: number): number {
  const ms = Math.max(0, durationMs);
  switch (rule) {
    case 'per-minute':
      return Math.max(1, Math.ceil(ms / 60_000)) * 60;
    case 'per-second':
      return Math.max(1, Math.ceil(ms / 1000));
    case 'fleet':
      return 0;
  }
}

/** The price of one build minute for these settings in `region`, as the build's log and the metrics state it. */
export function priceFacts(pricing: PricingConfig, region: string, build: Pick<BuildSettings, 'computeType' | 'environmentType' | 'fleetArn'>): PriceFacts {
  const rule = billingRule(build);
  const perMinute = rule === 'fleet' ? undefined : pricing.regions[region]?.[build.environmentType]?.[build.computeType];
  return { computeType: build.computeType, rule, region, currency: pricing.currency, asOf: pricing.asOf, ...(perMinute !== undefined ? { perMinute } : {}) };
}

export interface BuildCost {
  computeType: string;
  rule: BillingRule;
  region: string;
  durationMs: number;
  billedSeconds: number;
  currency: string;
  asOf: string;
  perMinute?: number;
  /** Missing when the table has no price for this compute type (and 0 on a fleet). */
  amount?: number;
}

export function buildCost(price: PriceFacts, durationMs: number): BuildCost {
  const billed = billedSeconds(price.rule, durationMs);
  // Rounded to a billionth: float noise (0.01 × 6 = 0.060000000000000005) is no part of a price.
  const amount = price.rule === 'fleet' ? 0 : price.perMinute === undefined ? undefined : Math.round(((price.perMinute * billed) / 60) * 1e9) / 1e9;
  return {
    computeType: price.computeType,
    rule: price.rule,
    region: price.region,
    durationMs: Math.max(0, durationMs),
    billedSeconds: billed,
    currency: price.currency,
    asOf: price.asOf,
    ...(price.perMinute !== undefined ? { perMinute: price.perMinute } : {}),
    ...(amount !== undefined ? { amount } : {}),
  };
}

/** Enough digits for a fraction of a cent, without float noise. */
export function formatAmount(amount: number, currency: string): string {
  return `${amount.toFixed(amount >= 1 ? 2 : 4)} ${currency}`;
}

export function formatSeconds(ms: number): string {
  return `${(Math.max(0, ms) / 1000).toFixed(1)} s`;
}

function formatBilled(cost: BuildCost): string {
  if (cost.rule === 'per-minute') return `${cost.billedSeconds / 60} min billed (every started minute counts)`;
  return `${cost.billedSeconds} s billed (every started second counts)`;
}

/**
 * The cost line. `sinceWhat` says which interval `durationMs` covers, e.g. "since the build
 * was submitted" (the job's log, before the build has ended) or "from submission to end".
 */
export function formatCostLine(cost: BuildCost, sinceWhat: string): string {
  const head = `cbactions: build cost${cost.rule === 'fleet' ? '' : ' so far'}: ${cost.computeType}`;
  if (cost.rule === 'fleet') return `${head} on a reserved-capacity fleet: billed per fleet instance while the fleet exists, not per build (${formatSeconds(cost.durationMs)} ${sinceWhat})`;
  const duration = `${formatSeconds(cost.durationMs)} ${sinceWhat}`;
  if (cost.amount === undefined || cost.perMinute === undefined) {
    return `${head}, ${formatBilled(cost)} for ${duration}; no price for it in ${cost.region} in the cbactions pricing table (config: pricing.regions)`;
  }
  return `${head}, ${formatBilled(cost)} for ${duration}: ${formatAmount(cost.amount, cost.currency)} at ${cost.perMinute} ${cost.currency}/min (${cost.region} list price as of ${cost.asOf})`;
}
