import { describe, expect, it } from 'vitest';
import { MuxMetrics } from '../../src/mux/metrics.js';

describe('policy decisions in /metrics', () => {
  it('are counted per pool, rule and effect', async () => {
    const metrics = new MuxMetrics(() => []);
    metrics.recordAdmission({ rule: 'app-deploy', effect: 'run' }, { pool: 'small' });
    metrics.recordAdmission({ rule: 'app-deploy', effect: 'run' }, { pool: 'small' });
    metrics.recordAdmission({ rule: '(default)', effect: 'refuse' }, { pool: 'docker' });
    const text = await metrics.registry.metrics();
    expect(text).toContain('cbactions_mux_policy_decisions_total{pool="small",rule="app-deploy",effect="run"} 2');
    expect(text).toContain('cbactions_mux_policy_decisions_total{pool="docker",rule="(default)",effect="refuse"} 1');
  });
});
