import { describe, expect, it } from 'vitest';
import type { BuildSnapshot } from '../../src/dispatch/codebuild-api.js';
import { clockOffset, jobTimelineRecord, MAX_BUILD_TIMELINE_CHARS, parseBuildTimeline, phaseWaits } from '../../src/dispatch/job-timeline.js';

const T = 1_800_000_000_000;
const at = (ms: number) => new Date(T + ms);

function build(changes: Partial<BuildSnapshot> = {}): BuildSnapshot {
  return {
    id: 'cbactions:1',
    status: 'SUCCEEDED',
    complete: true,
    phases: [
      { type: 'SUBMITTED', startTime: at(0), endTime: at(400), contexts: [] },
      { type: 'QUEUED', startTime: at(400), endTime: at(900), contexts: [] },
      { type: 'PROVISIONING', startTime: at(900), endTime: at(20_300), contexts: [] },
    ],
    exported: {},
    startTime: at(0),
    endTime: at(61_000),
    ...changes,
  };
}

describe('the build timeline (CBACTIONS_TIMELINE, untrusted)', () => {
  it('accepts the times the entrypoint records', () => {
    expect(parseBuildTimeline(JSON.stringify({ entrypointStartedAt: T, workerStartedAt: T + 5 }))).toEqual({ timeline: { entrypointStartedAt: T, workerStartedAt: T + 5 } });
  });

  it.each([
    [undefined, /no CBACTIONS_TIMELINE/],
    ['', /no CBACTIONS_TIMELINE/],
    ['{"entrypointStartedAt":', /not JSON/],
    [JSON.stringify({ entrypointStartedAt: 'soon' }), /entrypointStartedAt/],
    [JSON.stringify({ entrypointStartedAt: 12 }), /entrypointStartedAt/],
    [JSON.stringify({ entrypointStartedAt: T, secret: 'x' }), /schema/],
    [JSON.stringify({ entrypointStartedAt: T, workerStartedAt: 1.5e12 + 0.5 }), /workerStartedAt/],
    ['x'.repeat(MAX_BUILD_TIMELINE_CHARS + 1), /more than 512/],
  ])('refuses %j with a reason', (text, reason) => {
    const parsed = parseBuildTimeline(text);
    expect(parsed.timeline).toBeUndefined();
    expect(parsed.problem).toMatch(reason);
  });
});

describe("CodeBuild's waits from its phases", () => {
  it('are known once PROVISIONING has ended', () => {
    expect(phaseWaits(build())).toEqual({ submittedMs: 400, queuedMs: 500, provisioningMs: 19_400, submittedAt: T, queuedAt: T + 400, provisioningAt: T + 900, provisionedAt: T + 20_300 });
    expect(phaseWaits(build({ phases: [{ type: 'PROVISIONING', startTime: at(900), contexts: [] }] }))).toBeUndefined();
  });
});

describe('the clock offset measured at StartBuild', () => {
  it('is 0 when CodeBuild stamped the build inside the round trip, else the least offset that explains it', () => {
    expect(clockOffset(T, T + 200, T + 100)).toEqual({ offsetMs: 0, uncertaintyMs: 200 });
    expect(clockOffset(T, T + 200, T + 1200)).toEqual({ offsetMs: 1000, uncertaintyMs: 200 });
    expect(clockOffset(T, T + 200, T - 3000)).toEqual({ offsetMs: -3000, uncertaintyMs: 200 });
    expect(clockOffset(T, T + 200, undefined)).toBeUndefined();
  });
});

describe('the job.timeline record', () => {
  const price = { computeType: 'BUILD_GENERAL1_SMALL', rule: 'per-minute' as const, region: 'us-east-1', perMinute: 0.005, currency: 'USD', asOf: '2026-05' };

  it("puts CodeBuild's and the build's times on the mux's clock and prices the build from submission to end", () => {
    const exported = JSON.stringify({ entrypointStartedAt: T + 21_000, payloadOpenedAt: T + 21_200, workerStartedAt: T + 21_500, workerExitedAt: T + 59_000 });
    // CodeBuild's clock runs 1 s ahead of the mux's.
    const record = jobTimelineRecord({
      pool: 'small',
      jobId: 'j',
      buildId: 'cbactions:1',
      mux: { assignedAt: T - 1100, dispatchedAt: T - 1050, start: 'cold' },
      clock: { offsetMs: 1000, uncertaintyMs: 40 },
      final: build(),
      exported,
      price,
    });
    expect(record.times).toEqual({
      assignedAt: T - 1100,
      dispatchedAt: T - 1050,
      submittedAt: T - 1000,
      queuedAt: T - 600,
      provisioningAt: T - 100,
      buildStartedAt: T + 19_300,
      payloadOpenedAt: T + 20_200,
      workerStartedAt: T + 20_500,
      workerExitedAt: T + 58_000,
      buildEndedAt: T + 60_000,
    });
    expect(record.durations).toEqual({ dispatchMs: 50, waitedForCodeBuildMs: 20_300, queuedMs: 500, provisioningMs: 19_400, startLatencyMs: 21_600, jobMs: 37_500 });
    expect(record.cost).toMatchObject({ durationMs: 61_000, billedSeconds: 120, amount: 0.01 });
    expect(record.problems).toBeUndefined();
  });

  it('says what it could not know, and still records the rest', () => {
    const record = jobTimelineRecord({ pool: 'p', jobId: 'j', buildId: 'b', mux: { assignedAt: T, dispatchedAt: T, start: 'warm' }, final: build({ phases: [], endTime: undefined }), exported: 'nonsense', price });
    expect(record.problems).toEqual(['CodeBuild reported no end of PROVISIONING', 'CBACTIONS_TIMELINE is not JSON', 'CodeBuild reported no start or end time: no cost']);
    expect(record.clock).toEqual({ offsetMs: 0 });
    expect(record.durations).toEqual({ dispatchMs: 0 });
    expect(record.cost).toBeUndefined();
  });
});
