/**
 * The lines cbactions prints in the job's own log (GitHub UI) through the runner's job hooks.
 *
 * What the build can know by itself is little: when CodeBuild accepted it
 * (CODEBUILD_START_TIME) and its own clock. How much of the wait was queueing and how much
 * provisioning only BatchGetBuilds tells, and only the mux calls it: the mux adds CodeBuild's
 * phase durations to the job's lease as soon as it sees PROVISIONING end, with the price of
 * this build's compute (its config's table). The build already reads the lease (no new
 * permission). At job start the split may not be there yet: the line then says what the
 * build measured itself and that the split follows; the job-completed hook reads the lease
 * again and prints both the split and the cost.
 *
 * Clocks: the queued and provisioning durations are CodeBuild's own (its phase start and end
 * times); the build's own wait and the cost interval compare CODEBUILD_START_TIME with the
 * build host's clock, both AWS clocks. No line mixes in the mux's clock.
 */
import { buildCost, formatCostLine, formatSeconds } from '../dispatch/job-cost.js';
import type { JobLogFacts, MuxTimeline } from '../seal/types.js';

export interface JobLogContext {
  /** CODEBUILD_START_TIME: when CodeBuild accepted the build (epoch ms). */
  submittedAt?: number;
  /** When `cbactions entrypoint` started (build clock). */
  entrypointStartedAt: number;
  start?: MuxTimeline['start'];
}

export function waitLine(context: JobLogContext, facts: JobLogFacts | undefined, final: boolean): string {
  if (context.start === 'warm') return 'cbactions: this job went to a standby build that was already running: it did not wait for CodeBuild';
  const waits = facts?.waits;
  if (waits) {
    return `cbactions: waited ${formatSeconds(waits.submittedMs + waits.queuedMs + waits.provisioningMs)} for CodeBuild (queued ${formatSeconds(waits.queuedMs)}, provisioning ${formatSeconds(waits.provisioningMs)})`;
  }
  const own = context.submittedAt === undefined ? '' : ` ${formatSeconds(context.entrypointStartedAt - context.submittedAt)}`;
  const why = final ? 'cbactions had not seen the end of its PROVISIONING phase' : 'how much of it was queueing and how much provisioning follows at the end of the job';
  return `cbactions: waited${own} for CodeBuild, from the build's submission to its first cbactions command (${why})`;
}

export function costLine(context: JobLogContext, facts: JobLogFacts | undefined, now: number): string {
  const price = facts?.price;
  if (!price) return "cbactions: build cost: unknown (cbactions passed this build no price; see the mux's job.timeline event)";
  if (context.submittedAt === undefined) return `cbactions: build cost: unknown (CODEBUILD_START_TIME is not set, so the build's billed time is unknown)`;
  return formatCostLine(buildCost(price, now - context.submittedAt), "since the build was submitted; the build's last seconds after the job are not in it");
}

export function jobStartedLines(context: JobLogContext, facts: JobLogFacts | undefined): string[] {
  return [waitLine(context, facts, false)];
}

export function jobCompletedLines(context: JobLogContext, facts: JobLogFacts | undefined, now: number): string[] {
  return [waitLine(context, facts, true), costLine(context, facts, now)];
}
