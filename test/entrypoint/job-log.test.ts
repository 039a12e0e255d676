import { describe, expect, it } from 'vitest';
import { jobCompletedLines, jobStartedLines } from '../../src/entrypoint/job-log.js';

const T = 1_800_000_000_000;
const price = { computeType: 'BUILD_GENERAL1_MEDIUM', rule: 'per-minute' as const, region: 'us-east-1', perMinute: 0.01, currency: 'USD', asOf: '2026-05' };
const waits = { submittedMs: 400, queuedMs: 400, provisioningMs: 19_000 };

describe("the lines in the job's log", () => {
  it("with CodeBuild's split, as the issue words it", () => {
    expect(jobStartedLines({ submittedAt: T, entrypointStartedAt: T + 21_000 }, { waits, price })).toEqual(['cbactions: waited 19.8 s for CodeBuild (queued 0.4 s, provisioning 19.0 s)']);
  });

  it("without it yet: the build's own measure, and where the split will be", () => {
    expect(jobStartedLines({ submittedAt: T, entrypointStartedAt: T + 21_000 }, { price })).toEqual([
      "cbactions: waited 21.0 s for CodeBuild, from the build's submission to its first cbactions command (how much of it was queueing and how much provisioning follows at the end of the job)",
    ]);
    expect(jobCompletedLines({ entrypointStartedAt: T + 21_000 }, undefined, T + 60_000)).toEqual([
      "cbactions: waited for CodeBuild, from the build's submission to its first cbactions command (cbactions had not seen the end of its PROVISIONING phase)",
      "cbactions: build cost: unknown (cbactions passed this build no price; see the mux's job.timeline event)",
    ]);
  });

  it('a warm start did not wait, and the cost is counted from the build submission to now', () => {
    const lines = jobCompletedLines({ submittedAt: T, entrypointStartedAt: T + 600_000, start: 'warm' }, { waits, price }, T + 725_000);
    expect(lines).toEqual([
      'cbactions: this job went to a standby build that was already running: it did not wait for CodeBuild',
      "cbactions: build cost so far: BUILD_GENERAL1_MEDIUM, 13 min billed (every started minute counts) for 725.0 s since the build was submitted; the build's last seconds after the job are not in it: 0.1300 USD at 0.01 USD/min (us-east-1 list price as of 2026-05)",
    ]);
  });
});
