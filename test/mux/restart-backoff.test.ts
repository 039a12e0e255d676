import { describe, expect, it } from 'vitest';
import { restartDelay, RestartBackoff } from '../../src/mux/restart-backoff.js';

const policy = { initialMs: 100, maxMs: 1_000, healthyAfterMs: 5_000 };

describe('restart backoff', () => {
  it('doubles the ceiling per attempt up to the cap, with the delay between half the ceiling and the ceiling', () => {
    const ceilings = [100, 200, 400, 800, 1000, 1000, 1000];
    ceilings.forEach((ceiling, attempt) => {
      expect(restartDelay(policy, attempt, () => 0)).toBe(ceiling / 2);
      expect(restartDelay(policy, attempt, () => 0.999999)).toBe(ceiling - 1);
    });
  });

  it('has a floor, so a listener that dies instantly is restarted at most window / (cap / 2) times once capped', () => {
    const backoff = new RestartBackoff(policy, () => 0);
    // Restart k happens once the first k delays have passed; count those inside ten seconds.
    let elapsed = backoff.next();
    let restarts = 0;
    while (elapsed <= 10_000) {
      restarts += 1;
      elapsed += backoff.next();
    }
    // 50 + 100 + 200 + 400, then 500 each: 4 + 18 restarts fit in ten seconds at most.
    expect(restarts).toBeLessThanOrEqual(22);
  });

  it('survives absurd attempt counts', () => {
    expect(restartDelay(policy, 10_000, () => 0.5)).toBe(750);
  });

  it('resets after a run that lasted long enough or ran a job, not after a short failed one', () => {
    const backoff = new RestartBackoff(policy, () => 0);
    backoff.next();
    backoff.next();
    backoff.next();
    expect(backoff.attempt).toBe(3);
    backoff.observeRun(200, false);
    expect(backoff.attempt).toBe(3);
    expect(backoff.next()).toBe(400);
    backoff.observeRun(5_000, false);
    expect(backoff.attempt).toBe(0);
    backoff.next();
    backoff.observeRun(10, true);
    expect(backoff.attempt).toBe(0);
    expect(backoff.next()).toBe(50);
  });
});
