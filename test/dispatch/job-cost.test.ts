import { describe, expect, it } from 'vitest';
import { BuildSettingsSchema, PricingSchema } from '../../src/config/schema.js';
import { billedSeconds, billingRule, buildCost, formatCostLine, priceFacts } from '../../src/dispatch/job-cost.js';

describe("CodeBuild's billing rule per compute type", () => {
  it('on-demand EC2 per started minute, Lambda per started second, a fleet not per build', () => {
    expect(billingRule({ computeType: 'BUILD_GENERAL1_SMALL' })).toBe('per-minute');
    expect(billingRule({ computeType: 'BUILD_LAMBDA_2GB' })).toBe('per-second');
    expect(billingRule({ computeType: 'BUILD_GENERAL1_SMALL', fleetArn: 'arn:aws:codebuild:us-east-1:123456789012:fleet/f:1' })).toBe('fleet');
    expect([0, 1, 60_000, 60_001, 119_999].map((ms) => billedSeconds('per-minute', ms))).toEqual([60, 60, 60, 120, 120]);
    expect([0, 1, 1000, 1001].map((ms) => billedSeconds('per-second', ms))).toEqual([1, 1, 1, 2]);
    expect(billedSeconds('fleet', 3_600_000)).toBe(0);
  });
});

describe('prices from the pricing table', () => {
  const pricing = PricingSchema.parse({});

  it('has documented defaults, dated, and no guess for what it does not list', () => {
    expect(pricing).toMatchObject({ currency: 'USD', asOf: '2026-05', regions: { 'us-east-1': { LINUX_CONTAINER: { BUILD_GENERAL1_SMALL: 0.005, BUILD_GENERAL1_MEDIUM: 0.01, BUILD_GENERAL1_LARGE: 0.02 } } } });
    const arm = priceFacts(pricing, 'us-east-1', BuildSettingsSchema.parse({ environmentType: 'ARM_CONTAINER' }));
    expect(arm.perMinute).toBeUndefined();
    expect(formatCostLine(buildCost(arm, 30_000), 'since the build was submitted')).toBe(
      'cbactions: build cost so far: BUILD_GENERAL1_SMALL, 1 min billed (every started minute counts) for 30.0 s since the build was submitted; no price for it in us-east-1 in the cbactions pricing table (config: pricing.regions)',
    );
  });

  it('prices billed minutes and says so in one line', () => {
    const small = priceFacts(pricing, 'us-east-1', BuildSettingsSchema.parse({}));
    expect(formatCostLine(buildCost(small, 142_700), 'since the build was submitted')).toBe(
      'cbactions: build cost so far: BUILD_GENERAL1_SMALL, 3 min billed (every started minute counts) for 142.7 s since the build was submitted: 0.0150 USD at 0.005 USD/min (us-east-1 list price as of 2026-05)',
    );
    const fleet = priceFacts(pricing, 'us-east-1', BuildSettingsSchema.parse({ fleetArn: 'arn:aws:codebuild:us-east-1:123456789012:fleet/f:1' }));
    expect(buildCost(fleet, 600_000)).toMatchObject({ rule: 'fleet', billedSeconds: 0, amount: 0 });
    expect(formatCostLine(buildCost(fleet, 600_000), 'since the build was submitted')).toMatch(/reserved-capacity fleet: billed per fleet instance/);
  });

  it('refuses a table with a field it does not know, naming it', () => {
    const bad = PricingSchema.safeParse({ regions: { 'us-east-1': { LINUX_CONTAINER: { BUILD_GENERAL1_HUGE: 1 } } } });
    expect(bad.success).toBe(false);
    expect(JSON.stringify(bad.error?.issues)).toContain('BUILD_GENERAL1_HUGE');
    expect(PricingSchema.safeParse({ currency: 'dollars' }).success).toBe(false);
    expect(PricingSchema.safeParse({ regions: { mars: {} } }).success).toBe(false);
    expect(PricingSchema.safeParse({ regions: { 'us-east-1': { LINUX_CONTAINER: { BUILD_GENERAL1_SMALL: -1 } } } }).success).toBe(false);
  });
});
