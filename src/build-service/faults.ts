import { z } from 'zod';
import { seededRandom } from '../util/seeded-random.js';

/** Phases a build can be made to fail in without running that phase's commands. */
export const FAULT_PHASES = ['PROVISIONING', 'DOWNLOAD_SOURCE', 'INSTALL', 'PRE_BUILD', 'BUILD', 'POST_BUILD'] as const;
export type FaultPhase = (typeof FAULT_PHASES)[number];

const OperationsSchema = z
  .array(z.string().regex(/^[A-Za-z]+$/, 'expected a CodeBuild operation name such as StartBuild'))
  .min(1)
  .optional()
  .describe('only these operations (default: every operation)');

export const BuildFailureFaultSchema = z.strictObject({
  phase: z.enum(FAULT_PHASES),
  status: z.enum(['FAILED', 'FAULT']).default('FAILED'),
  /** Phase context status code, e.g. CLIENT_ERROR, COMMAND_EXECUTION_ERROR. */
  statusCode: z.string().min(1).default('CLIENT_ERROR'),
  message: z.string().default('Injected failure'),
  /** How many of the next builds fail this way. */
  count: z.number().int().min(1).default(1),
  /** Only builds of this project (default: any project). */
  project: z.string().min(1).optional(),
});
export type BuildFailureFault = z.infer<typeof BuildFailureFaultSchema>;

/**
 * Fault injection, the same shape in the config file, `--faults` and `POST /_local/faults`.
 * Each key present replaces that kind of fault; absent keys are left as they are.
 */
export const FaultsSchema = z.strictObject({
  /** Throttle the next `count` calls (of `operations`). */
  throttle: z
    .strictObject({
      count: z.number().int().min(1),
      operations: OperationsSchema,
    })
    .optional(),
  /** Throttle a seeded-random share of calls (of `operations`) until cleared. */
  throttleRatio: z
    .strictObject({
      ratio: z.number().min(0).max(1),
      seed: z.number().int().default(1),
      operations: OperationsSchema,
    })
    .optional(),
  /** Refuse StartBuild with AccountLimitExceededException: the next `count` times, or always. */
  accountLimit: z
    .strictObject({
      count: z.number().int().min(1).optional(),
      /** The N in CodeBuild's message "Cannot have more than N active builds for the account". */
      limit: z.number().int().min(0).default(1),
    })
    .optional(),
  /** Fail the next builds in a phase. */
  buildFailures: z.array(BuildFailureFaultSchema).optional(),
});
export type Faults = z.infer<typeof FaultsSchema>;
export type FaultsInput = z.input<typeof FaultsSchema>;

/** What is left of each armed fault, as `GET /_local/faults` shows it. */
export interface FaultsSnapshot {
  throttle?: { remaining: number; operations?: string[] };
  throttleRatio?: { ratio: number; seed: number; operations?: string[] };
  accountLimit?: { remaining?: number; limit: number };
  buildFailures: (BuildFailureFault & { remaining: number })[];
}

/** Armed faults. Every decision consumes the fault it used, so counts are exact. */
export class FaultState {
  private throttle: { remaining: number; operations?: string[] } | undefined;
  private throttleRatio: { ratio: number; seed: number; operations?: string[]; random: () => number } | undefined;
  private accountLimit: { remaining?: number; limit: number } | undefined;
  private buildFailures: (BuildFailureFault & { remaining: number })[] = [];

  constructor(initial?: Faults) {
    if (initial) this.set(initial);
  }

  set(faults: Faults): void {
    if (faults.throttle) this.throttle = { remaining: faults.throttle.count, ...(faults.throttle.operations ? { operations: faults.throttle.operations } : {}) };
    if (faults.throttleRatio) {
      const { ratio, seed, operations } = faults.throttleRatio;
      this.throttleRatio = { ratio, seed, random: seededRandom(seed), ...(operations ? { operations } : {}) };
    }
    if (faults.accountLimit) {
      this.accountLimit = { limit: faults.accountLimit.limit, ...(faults.accountLimit.count !== undefined ? { remaining: faults.accountLimit.count } : {}) };
    }
    if (faults.buildFailures) this.buildFailures = faults.buildFailures.map((fault) => ({ ...fault, remaining: fault.count }));
  }

  clear(): void {
    this.throttle = undefined;
    this.throttleRatio = undefined;
    this.accountLimit = undefined;
    this.buildFailures = [];
  }

  /** Whether this call of `operation` is throttled. */
  takeThrottle(operation: string): boolean {
    const counted = this.throttle;
    if (counted && counted.remaining > 0 && (!counted.operations || counted.operations.includes(operation))) {
      counted.remaining -= 1;
      if (counted.remaining === 0) this.throttle = undefined;
      return true;
    }
    const ratio = this.throttleRatio;
    if (ratio && (!ratio.operations || ratio.operations.includes(operation))) {
      return ratio.random() < ratio.ratio;
    }
    return false;
  }

  /** The limit to report when this StartBuild is refused, or undefined to accept it. */
  takeAccountLimit(): number | undefined {
    const fault = this.accountLimit;
    if (!fault) return undefined;
    if (fault.remaining !== undefined) {
      fault.remaining -= 1;
      if (fault.remaining <= 0) this.accountLimit = undefined;
    }
    return fault.limit;
  }

  /** The failure planned for a new build of `project`, if one is armed. */
  takeBuildFailure(project: string): BuildFailureFault | undefined {
    const index = this.buildFailures.findIndex((fault) => fault.remaining > 0 && (fault.project === undefined || fault.project === project));
    if (index < 0) return undefined;
    const fault = this.buildFailures[index];
    if (!fault) return undefined;
    fault.remaining -= 1;
    if (fault.remaining === 0) this.buildFailures.splice(index, 1);
    const { remaining: _remaining, ...planned } = fault;
    return planned;
  }

  snapshot(): FaultsSnapshot {
    const out: FaultsSnapshot = { buildFailures: this.buildFailures.map((fault) => ({ ...fault })) };
    if (this.throttle) out.throttle = { ...this.throttle };
    if (this.throttleRatio) {
      const { random: _random, ...rest } = this.throttleRatio;
      out.throttleRatio = rest;
    }
    if (this.accountLimit) out.accountLimit = { ...this.accountLimit };
    return out;
  }
}

/**
 * Faults done to one running build at the moment a test chooses (`POST
 * /_local/builds/<id>/<action>`), for races such as a standby that stops answering, or dies,
 * exactly while a job is handed to it: `freeze` stops every process of the build's group
 * (SIGSTOP: it takes nothing, answers nothing, as a hung container), `thaw` lets it go on
 * (SIGCONT), `kill` SIGKILLs the group (the container died: the running command fails,
 * so the build ends FAILED).
 */
export const BUILD_ACTIONS = { freeze: 'SIGSTOP', thaw: 'SIGCONT', kill: 'SIGKILL' } as const satisfies Record<string, NodeJS.Signals>;
export type BuildAction = keyof typeof BUILD_ACTIONS;

export function isBuildAction(value: string | undefined): value is BuildAction {
  return value !== undefined && Object.hasOwn(BUILD_ACTIONS, value);
}
