import { z } from 'zod';
import { seededRandom } from '../util/seeded-random.js';

/**
 * Simulated CodeBuild latency: how long a build waits in QUEUED and in PROVISIONING before
 * its buildspec runs. On real on-demand compute users report about 20 s of provisioning and
 * often far more; locally both phases take milliseconds, so start latency (and what warm
 * builds save) can only be measured here with these delays.
 */

/** CodeBuild's longest queued timeout (480 minutes): no simulated phase needs more. */
const MAX_DELAY_SECONDS = 480 * 60;

const SimulationFields = {
  /** Time in QUEUED before the build may run (a concurrency limit can add to it). */
  queuedSeconds: z.number().min(0).max(MAX_DELAY_SECONDS).default(0),
  /** Time in PROVISIONING before DOWNLOAD_SOURCE. */
  provisioningSeconds: z.number().min(0).max(MAX_DELAY_SECONDS).default(0),
  /** Each delay is drawn uniformly from [d - jitterSeconds, d + jitterSeconds] (never below 0). */
  jitterSeconds: z.number().min(0).max(MAX_DELAY_SECONDS).optional(),
  /** Each delay is drawn uniformly from [d × (1 - jitterRatio), d × (1 + jitterRatio)]. */
  jitterRatio: z.number().min(0).max(1).optional(),
  /** Seed of the draws: the same seed and the same order of builds give the same delays. */
  seed: z.number().int().default(1),
};

function oneJitter(simulation: { jitterSeconds?: number | undefined; jitterRatio?: number | undefined }, ctx: z.RefinementCtx): void {
  if (simulation.jitterSeconds !== undefined && simulation.jitterRatio !== undefined) {
    ctx.addIssue({ code: 'custom', path: ['jitterRatio'], message: 'give jitterSeconds or jitterRatio, not both' });
  }
}

/** `simulate` in the config file (top level: every project; in a project: that project's). */
export const SimulationSchema = z.strictObject(SimulationFields).superRefine(oneJitter);
export type Simulation = z.infer<typeof SimulationSchema>;
export type SimulationInput = z.input<typeof SimulationSchema>;

/** `POST /_local/simulate`: a simulation, for one `project` or (without it) the default. */
export const SimulationUpdateSchema = z
  .strictObject({
    ...SimulationFields,
    /** The project this applies to; default: every project without a simulation of its own. */
    project: z.string().min(1).optional(),
  })
  .superRefine(oneJitter);

/** The delays one build was given, drawn at StartBuild. */
export interface SimulatedDelays {
  queuedMs: number;
  provisioningMs: number;
}

/** What `GET /_local/simulate` shows: the default and each project's own. */
export interface SimulationSnapshot {
  default?: Simulation;
  projects: Record<string, Simulation>;
}

interface Armed {
  settings: Simulation;
  random: () => number;
}

/** A delay around `seconds`, jittered by one draw of `random`, in whole milliseconds. */
export function jitteredMs(seconds: number, settings: Pick<Simulation, 'jitterSeconds' | 'jitterRatio'>, random: () => number): number {
  const spread = settings.jitterSeconds ?? seconds * (settings.jitterRatio ?? 0);
  return Math.max(0, Math.round((seconds + (2 * random() - 1) * spread) * 1000));
}

/**
 * The simulations in force. A project's own replaces the default for its builds; each has
 * its own seeded stream, drawn twice per build (queued, then provisioning), so a run of the
 * same builds in the same order gets the same delays.
 */
export class SimulationState {
  #default: Armed | undefined;
  readonly #projects = new Map<string, Armed>();

  constructor(initial: { default?: Simulation | undefined; projects?: Record<string, Simulation | undefined> } = {}) {
    if (initial.default) this.set(initial.default);
    for (const [project, simulation] of Object.entries(initial.projects ?? {})) if (simulation) this.set(simulation, project);
  }

  /** Replaces the default (no `project`) or one project's simulation; its draws start again from its seed. */
  set(simulation: Simulation, project?: string): void {
    const armed = { settings: { ...simulation }, random: seededRandom(simulation.seed) };
    if (project === undefined) this.#default = armed;
    else this.#projects.set(project, armed);
  }

  /** No simulated delays for anyone (the projects' configured ones too). */
  clear(): void {
    this.#default = undefined;
    this.#projects.clear();
  }

  /** The delays of a new build of `project`, or undefined when none is simulated. */
  draw(project: string): SimulatedDelays | undefined {
    const armed = this.#projects.get(project) ?? this.#default;
    if (!armed) return undefined;
    const { settings, random } = armed;
    return { queuedMs: jitteredMs(settings.queuedSeconds, settings, random), provisioningMs: jitteredMs(settings.provisioningSeconds, settings, random) };
  }

  snapshot(): SimulationSnapshot {
    const out: SimulationSnapshot = { projects: Object.fromEntries([...this.#projects].map(([name, armed]) => [name, { ...armed.settings }])) };
    if (this.#default) out.default = { ...this.#default.settings };
    return out;
  }
}
