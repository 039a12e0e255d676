/**
 * Every job's timeline: assigned (NewJobRequest read) → StartBuild sent (or a standby
 * claimed) → build queued → provisioning → started → payload opened → Runner.Worker started →
 * exited → build ended, put together by the mux when the job ends from three sources:
 * - its own times (the mux's clock);
 * - CodeBuild's phases as BatchGetBuilds reports them (CodeBuild's clock);
 * - the times the entrypoint recorded in the build and exported as CBACTIONS_TIMELINE (the
 *   build host's clock; untrusted input, parsed with a schema and bounded).
 *
 * Clocks: durations are taken within one clock wherever possible (CodeBuild's phase
 * durations from its own start and end times; the job's run time from the build's). Times
 * from CodeBuild and the build are put on the mux's clock by the offset seen at StartBuild:
 * CodeBuild stamps the build's `startTime` while the request is in flight, so it lies between
 * the mux's send and answer times; outside that window the difference is the clocks' offset
 * (at least), inside it the offset is taken as 0, and `clock.uncertaintyMs` (the round trip)
 * says how far off that can be. The build host's clock is taken to be CodeBuild's (both are
 * AWS hosts; on the local build service both are this machine).
 */
import { z } from 'zod';
import type { BuildSnapshot } from './codebuild-api.js';
import { buildCost, type BuildCost, type PriceFacts } from './job-cost.js';
import type { MuxTimeline } from '../seal/types.js';

/** Exported variables are visible to anyone who can read builds: times only, and short. */
export const MAX_BUILD_TIMELINE_CHARS = 512;

const EpochMs = z.number().int().min(1_000_000_000_000).max(10_000_000_000_000);

/** What the entrypoint records in the build (its clock, epoch ms). */
export const BuildTimelineSchema = z.strictObject({
  /** `cbactions entrypoint` started (the buildspec's BUILD phase). */
  entrypointStartedAt: EpochMs,
  /** A standby build was ready and began to wait for its job (warm path). */
  readyAt: EpochMs.optional(),
  payloadOpenedAt: EpochMs.optional(),
  workerStartedAt: EpochMs.optional(),
  workerExitedAt: EpochMs.optional(),
});
export type BuildTimeline = z.infer<typeof BuildTimelineSchema>;

export function formatBuildTimeline(timeline: BuildTimeline): string {
  return JSON.stringify(timeline);
}

/** The build's timeline, or why it cannot be used (missing, too long, not the schema). */
export function parseBuildTimeline(text: string | undefined): { timeline?: BuildTimeline; problem?: string } {
  if (text === undefined || text === '') return { problem: 'the build exported no CBACTIONS_TIMELINE' };
  if (text.length > MAX_BUILD_TIMELINE_CHARS) return { problem: `CBACTIONS_TIMELINE is ${text.length} characters, more than ${MAX_BUILD_TIMELINE_CHARS}` };
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { problem: 'CBACTIONS_TIMELINE is not JSON' };
  }
  const parsed = BuildTimelineSchema.safeParse(value);
  if (!parsed.success) return { problem: `CBACTIONS_TIMELINE does not match its schema (${parsed.error.issues[0]?.path.join('.') || 'top level'}: ${parsed.error.issues[0]?.message ?? '?'})` };
  return { timeline: parsed.data };
}

/** CodeBuild's waits before the build ran a command, from its phases; known once PROVISIONING has ended. */
export interface PhaseWaits {
  submittedMs: number;
  queuedMs: number;
  provisioningMs: number;
  /** CodeBuild's clock. */
  submittedAt?: number;
  queuedAt?: number;
  provisioningAt?: number;
  /** PROVISIONING's end: the build's own commands can start. */
  provisionedAt: number;
}

function phaseSpan(build: BuildSnapshot, type: string): { start?: number; end?: number; ms: number } {
  const phase = build.phases.find((candidate) => candidate.type === type);
  const start = phase?.startTime?.getTime();
  const end = phase?.endTime?.getTime();
  return { ...(start !== undefined ? { start } : {}), ...(end !== undefined ? { end } : {}), ms: start !== undefined && end !== undefined ? Math.max(0, end - start) : 0 };
}

export function phaseWaits(build: BuildSnapshot): PhaseWaits | undefined {
  const provisioning = phaseSpan(build, 'PROVISIONING');
  if (provisioning.end === undefined) return undefined;
  const submitted = phaseSpan(build, 'SUBMITTED');
  const queued = phaseSpan(build, 'QUEUED');
  return {
    submittedMs: submitted.ms,
    queuedMs: queued.ms,
    provisioningMs: provisioning.ms,
    ...(submitted.start !== undefined ? { submittedAt: submitted.start } : {}),
    ...(queued.start !== undefined ? { queuedAt: queued.start } : {}),
    ...(provisioning.start !== undefined ? { provisioningAt: provisioning.start } : {}),
    provisionedAt: provisioning.end,
  };
}

export interface ClockOffset {
  /** CodeBuild's clock minus the mux's. */
  offsetMs: number;
  /** How far the true offset may be from `offsetMs`; missing when it was not measured. */
  uncertaintyMs?: number;
}

/** The least offset consistent with CodeBuild stamping `buildStartTime` between `sentAt` and `answeredAt` (mux clock). */
/**
 * The part of CodeBuild's waits after `since` (a standby claimed while it was still queued or
 * provisioning: only what the job itself waited counts). Times are CodeBuild's and the mux's:
 * the few milliseconds they may differ are below what the log line prints.
 */
export function waitsSince(waits: PhaseWaits, since: number): PhaseWaits {
  const after = (start: number | undefined, ms: number): number => (start === undefined ? 0 : Math.max(0, start + ms - Math.max(start, since)));
  return { ...waits, submittedMs: after(waits.submittedAt, waits.submittedMs), queuedMs: after(waits.queuedAt, waits.queuedMs), provisioningMs: after(waits.provisioningAt, waits.provisioningMs) };
}

export function clockOffset(sentAt: number, answeredAt: number, buildStartTime: number | undefined): ClockOffset | undefined {
  if (buildStartTime === undefined || answeredAt < sentAt) return undefined;
  const offsetMs = buildStartTime < sentAt ? buildStartTime - sentAt : buildStartTime > answeredAt ? buildStartTime - answeredAt : 0;
  return { offsetMs, uncertaintyMs: answeredAt - sentAt };
}

/** The `job.timeline` event: one per job, times in epoch ms on the mux's clock, durations in ms. */
export interface JobTimelineRecord {
  pool: string;
  jobId: string;
  buildId: string;
  start: 'warm' | 'cold';
  times: {
    assignedAt: number;
    dispatchedAt: number;
    submittedAt?: number;
    queuedAt?: number;
    provisioningAt?: number;
    buildStartedAt?: number;
    readyAt?: number;
    payloadOpenedAt?: number;
    workerStartedAt?: number;
    workerExitedAt?: number;
    buildEndedAt?: number;
  };
  durations: {
    /** Assigned → StartBuild sent (or standby claimed): the mux's own part. */
    dispatchMs: number;
    /** SUBMITTED + QUEUED + PROVISIONING, CodeBuild's own durations. */
    waitedForCodeBuildMs?: number;
    queuedMs?: number;
    provisioningMs?: number;
    /** Assigned → Runner.Worker started: the start latency a user feels. */
    startLatencyMs?: number;
    /** Runner.Worker started → exited (build clock). */
    jobMs?: number;
  };
  clock: ClockOffset;
  cost?: BuildCost;
  /** What could not be known, e.g. a build that exported no timeline. */
  problems?: string[];
}

export interface TimelineInput {
  pool: string;
  jobId: string;
  buildId: string;
  mux: MuxTimeline;
  /** How CodeBuild's clock relates to ours (from StartBuild); offset 0, unmeasured, when missing. */
  clock?: ClockOffset;
  final: BuildSnapshot;
  /** The raw CBACTIONS_TIMELINE. */
  exported: string | undefined;
  price?: PriceFacts;
}

export function jobTimelineRecord(input: TimelineInput): JobTimelineRecord {
  const { final } = input;
  const clock: ClockOffset = input.clock ?? { offsetMs: 0 };
  const onMuxClock = (ms: number | undefined) => (ms === undefined ? undefined : Math.round(ms - clock.offsetMs));
  const problems: string[] = [];
  const waits = phaseWaits(final);
  if (!waits) problems.push('CodeBuild reported no end of PROVISIONING');
  // A standby's own queueing and provisioning were before the job was handed to it.
  const jobWaits = waits && input.mux.start === 'warm' ? waitsSince(waits, input.mux.dispatchedAt) : waits;
  const parsed = parseBuildTimeline(input.exported);
  if (parsed.problem) problems.push(parsed.problem);
  const build = parsed.timeline;
  const times: JobTimelineRecord['times'] = { assignedAt: input.mux.assignedAt, dispatchedAt: input.mux.dispatchedAt };
  const put = (name: keyof JobTimelineRecord['times'], ms: number | undefined) => {
    const value = onMuxClock(ms);
    if (value !== undefined) times[name] = value;
  };
  put('submittedAt', waits?.submittedAt ?? final.startTime?.getTime());
  put('queuedAt', waits?.queuedAt);
  put('provisioningAt', waits?.provisioningAt);
  put('buildStartedAt', waits?.provisionedAt);
  put('readyAt', build?.readyAt);
  put('payloadOpenedAt', build?.payloadOpenedAt);
  put('workerStartedAt', build?.workerStartedAt);
  put('workerExitedAt', build?.workerExitedAt);
  put('buildEndedAt', final.endTime?.getTime());
  const durations: JobTimelineRecord['durations'] = { dispatchMs: Math.max(0, input.mux.dispatchedAt - input.mux.assignedAt) };
  if (jobWaits) {
    durations.waitedForCodeBuildMs = jobWaits.submittedMs + jobWaits.queuedMs + jobWaits.provisioningMs;
    durations.queuedMs = jobWaits.queuedMs;
    durations.provisioningMs = jobWaits.provisioningMs;
  }
  if (times.workerStartedAt !== undefined) durations.startLatencyMs = Math.max(0, times.workerStartedAt - input.mux.assignedAt);
  if (build?.workerStartedAt !== undefined && build.workerExitedAt !== undefined) durations.jobMs = Math.max(0, build.workerExitedAt - build.workerStartedAt);
  const record: JobTimelineRecord = { pool: input.pool, jobId: input.jobId, buildId: input.buildId, start: input.mux.start, times, durations, clock };
  // CodeBuild's own interval (one clock): submission to end.
  const startTime = final.startTime?.getTime();
  const endTime = final.endTime?.getTime();
  if (input.price && startTime !== undefined && endTime !== undefined) record.cost = buildCost(input.price, endTime - startTime);
  else if (input.price) problems.push('CodeBuild reported no start or end time: no cost');
  if (problems.length > 0) record.problems = problems;
  return record;
}
