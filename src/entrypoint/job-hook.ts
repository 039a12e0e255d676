/**
 * `cbactions job-hook completed <context-file>`: the runner's job-completed hook
 * (ACTIONS_RUNNER_HOOK_JOB_COMPLETED) in the build. It reads the job's lease once, for the
 * facts the mux added while the job ran, and prints the wait and cost lines into the job's
 * log. A hook that fails fails the job in the real runner, so this never exits nonzero.
 */
import { readFile } from 'node:fs/promises';
import { S3Client } from '@aws-sdk/client-s3';
import { z } from 'zod';
import { createPayloadStore, parsePayloadStoreRef } from '../seal/index.js';
import { formatLeaseFacts, MAX_LEASE_FACTS_CHARS, parseLeaseFacts } from '../seal/lease.js';
import type { JobLogFacts } from '../seal/types.js';
import { describeError } from '../util/errors.js';
import { jobCompletedLines, type JobLogContext } from './job-log.js';

/** Written by the entrypoint beside the hook scripts: ids and times, nothing secret. */
export const HookContextSchema = z.strictObject({
  binding: z.strictObject({ buildId: z.string().min(1).max(300), userId: z.string().min(1).max(300).optional() }),
  submittedAt: z.number().int().positive().optional(),
  entrypointStartedAt: z.number().int().positive(),
  start: z.enum(['warm', 'cold']).optional(),
  /** The facts the entrypoint saw when the job started (used when the lease cannot be read now). */
  facts: z.string().max(MAX_LEASE_FACTS_CHARS).optional(),
});
export type HookContext = z.infer<typeof HookContextSchema>;

export function hookContext(context: JobLogContext, binding: { buildId: string; userId?: string }, facts: JobLogFacts | undefined): HookContext {
  return {
    binding: { buildId: binding.buildId, ...(binding.userId ? { userId: binding.userId } : {}) },
    ...(context.submittedAt !== undefined ? { submittedAt: context.submittedAt } : {}),
    entrypointStartedAt: context.entrypointStartedAt,
    ...(context.start ? { start: context.start } : {}),
    ...(facts ? { facts: formatLeaseFacts(facts) } : {}),
  };
}

export async function runJobHookCommand(which: string, contextFile: string, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const out = (line: string) => process.stdout.write(`${line}\n`);
  try {
    if (which !== 'completed') throw new Error(`unknown hook "${which.slice(0, 20)}" (expected "completed")`);
    const context = HookContextSchema.parse(JSON.parse(await readFile(contextFile, 'utf8')));
    let facts: JobLogFacts | undefined = parseLeaseFacts(context.facts);
    try {
      const ref = parsePayloadStoreRef(env.CBACTIONS_PAYLOAD_STORE);
      const s3 = ref.kind === 's3' ? new S3Client(env.AWS_REGION ? { region: env.AWS_REGION } : {}) : undefined;
      try {
        const store = createPayloadStore(ref, s3 ? { s3 } : {});
        const lease = await store.readLease(context.binding, AbortSignal.timeout(10_000));
        if (lease?.facts) facts = { ...facts, ...lease.facts };
      } finally {
        s3?.destroy();
      }
    } catch (error) {
      out(`cbactions: could not read the job's lease for its timeline (${describeError(error).slice(0, 200)})`);
    }
    const { submittedAt, entrypointStartedAt, start } = context;
    for (const line of jobCompletedLines({ entrypointStartedAt, ...(submittedAt !== undefined ? { submittedAt } : {}), ...(start ? { start } : {}) }, facts, Date.now())) out(line);
  } catch (error) {
    out(`cbactions: no timeline for this job (${describeError(error).slice(0, 200)})`);
  }
  return 0;
}
