import { consoleLink } from '../dispatch/failure.js';
import { shellQuote } from '../util/shell.js';

/** What a user should know about where the job runs. */
export interface BuildFacts {
  buildId: string;
  buildArn?: string;
  computeType?: string;
  environmentType?: string;
  image?: string;
}

/**
 * The runner's job-started hook (ACTIONS_RUNNER_HOOK_JOB_STARTED): its output opens the
 * job's log in the GitHub UI, so every job says which build ran it and links to it. A
 * hook the image already configured still runs, after ours.
 */
export function jobStartedHookScript(facts: BuildFacts, previousHook?: string, timelineLines: string[] = []): string {
  const details = [facts.computeType, facts.environmentType, facts.image].filter(Boolean).join(', ');
  const lines = [
    '#!/bin/sh',
    `echo ${shellQuote(`cbactions: this job runs in AWS CodeBuild build ${facts.buildId}${details ? ` (${details})` : ''}`)}`,
  ];
  const link = consoleLink(facts.buildArn);
  if (link) lines.push(`echo ${shellQuote(`cbactions: build details and logs: ${link}`)}`);
  for (const line of timelineLines) lines.push(`echo ${shellQuote(line)}`);
  if (previousHook) lines.push(`exec ${shellQuote(previousHook)} "$@"`);
  return `${lines.join('\n')}\n`;
}

/**
 * The runner's job-completed hook (ACTIONS_RUNNER_HOOK_JOB_COMPLETED): `cbactions job-hook
 * completed` prints the job's wait and cost lines at the end of its log (job-hook.ts). The
 * real runner fails a job whose hook fails, so ours never does; a hook of the image's own
 * still runs after it, and its exit status is the hook's.
 */
export function jobCompletedHookScript(command: readonly string[], contextFile: string, previousHook?: string): string {
  const lines = ['#!/bin/sh', `${[...command, 'job-hook', 'completed', contextFile].map(shellQuote).join(' ')} || true`];
  if (previousHook) lines.push(`exec ${shellQuote(previousHook)} "$@"`);
  return `${lines.join('\n')}\n`;
}
