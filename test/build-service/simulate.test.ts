import { StopBuildCommand, type Build } from '@aws-sdk/client-codebuild';
import fc from 'fast-check';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { resolveBuildServiceConfig } from '../../src/build-service/config.js';
import { jitteredMs, SimulationSchema, SimulationState, type Simulation } from '../../src/build-service/simulate.js';
import { isCbactionsError } from '../../src/util/errors.js';
import { ManualClock } from '../support/manual-clock.js';
import { phaseSummary, startInProcess, waitUntil, type InProcess } from './harness.js';

// Simulated QUEUED and PROVISIONING delays: drawn per build (fixed or seeded jitter), spent
// on the service's clock (a manual one here: nothing sleeps), visible in the phases exactly
// as BatchGetBuilds reports them, cut short by StopBuild and by timeouts.

const MARK = `version: 0.2
phases:
  build:
    commands:
      - touch "$CODEBUILD_SRC_DIR/build-ran"
`;

const simulation = (input: Partial<Simulation>): Simulation => SimulationSchema.parse(input);

function phase(build: Build | { phases?: Build['phases'] }, type: string) {
  const found = build.phases?.find((candidate) => candidate.phaseType === type);
  if (!found) throw new Error(`no ${type} phase in ${JSON.stringify(build.phases)}`);
  return found;
}

/** Seconds between a phase's start and end, as BatchGetBuilds reports them (epoch seconds). */
function spent(build: Build | { phases?: Build['phases'] }, type: string): number {
  const found = phase(build, type);
  const start = found.startTime instanceof Date ? found.startTime.getTime() / 1000 : Number(found.startTime);
  const end = found.endTime instanceof Date ? found.endTime.getTime() / 1000 : Number(found.endTime);
  return end - start;
}

describe('SimulationState', () => {
  it('gives every build the fixed delays when there is no jitter', () => {
    const state = new SimulationState({ default: simulation({ queuedSeconds: 1.5, provisioningSeconds: 20 }) });
    for (let i = 0; i < 5; i += 1) expect(state.draw('any')).toEqual({ queuedMs: 1500, provisioningMs: 20_000 });
  });

  it("uses a project's own simulation instead of the default, and none when neither is set", () => {
    const state = new SimulationState({ default: simulation({ provisioningSeconds: 20 }), projects: { fast: simulation({ provisioningSeconds: 1 }), plain: undefined } });
    expect(state.draw('fast')).toEqual({ queuedMs: 0, provisioningMs: 1000 });
    expect(state.draw('plain')).toEqual({ queuedMs: 0, provisioningMs: 20_000 });
    expect(new SimulationState().draw('any')).toBeUndefined();
    state.clear();
    expect(state.draw('fast')).toBeUndefined();
    expect(state.snapshot()).toEqual({ projects: {} });
  });

  it('draws jittered delays from the seed: the same seed gives the same delays, another seed others', () => {
    const draws = (seed: number) => {
      const state = new SimulationState({ default: simulation({ queuedSeconds: 2, provisioningSeconds: 20, jitterSeconds: 5, seed }) });
      return Array.from({ length: 50 }, () => state.draw('p'));
    };
    const first = draws(7);
    expect(draws(7)).toEqual(first);
    expect(draws(8)).not.toEqual(first);
    const provisioning = first.map((delays) => delays?.provisioningMs ?? NaN);
    expect(Math.min(...provisioning)).toBeGreaterThanOrEqual(15_000);
    expect(Math.max(...provisioning)).toBeLessThanOrEqual(25_000);
    // Jitter really spreads them (50 draws of a continuous uniform are never all equal).
    expect(new Set(provisioning).size).toBeGreaterThan(1);
    // Never below zero: a 2 s queue with 5 s of jitter is clipped at 0.
    expect(Math.min(...first.map((delays) => delays?.queuedMs ?? NaN))).toBeGreaterThanOrEqual(0);
  });

  it('setting a simulation again starts its draws again from its seed', () => {
    const settings = simulation({ provisioningSeconds: 10, jitterRatio: 0.5, seed: 3 });
    const state = new SimulationState();
    state.set(settings, 'p');
    const once = [state.draw('p'), state.draw('p')];
    state.set(settings, 'p');
    expect([state.draw('p'), state.draw('p')]).toEqual(once);
  });

  it('keeps every draw within its bounds and reproducible (property)', () => {
    fc.assert(
      fc.property(
        fc.double({ min: 0, max: 600, noNaN: true }),
        fc.oneof(fc.record({ jitterSeconds: fc.double({ min: 0, max: 600, noNaN: true }) }), fc.record({ jitterRatio: fc.double({ min: 0, max: 1, noNaN: true }) }), fc.constant({})),
        fc.integer(),
        (seconds, jitter, seed) => {
          const settings = simulation({ queuedSeconds: seconds, provisioningSeconds: seconds, seed, ...jitter });
          const spread = 'jitterSeconds' in jitter ? jitter.jitterSeconds : 'jitterRatio' in jitter ? seconds * jitter.jitterRatio : 0;
          const a = new SimulationState({ default: settings });
          const b = new SimulationState({ default: settings });
          for (let i = 0; i < 10; i += 1) {
            const drawn = a.draw('p');
            expect(b.draw('p')).toEqual(drawn);
            for (const ms of [drawn?.queuedMs ?? NaN, drawn?.provisioningMs ?? NaN]) {
              expect(Number.isInteger(ms)).toBe(true);
              expect(ms).toBeGreaterThanOrEqual(Math.max(0, Math.floor((seconds - spread) * 1000)));
              expect(ms).toBeLessThanOrEqual(Math.ceil((seconds + spread) * 1000));
            }
          }
        },
      ),
    );
  });

  it('maps the two ends of a draw to the two ends of the range', () => {
    expect(jitteredMs(20, { jitterSeconds: 5 }, () => 0)).toBe(15_000);
    expect(jitteredMs(20, { jitterSeconds: 5 }, () => 0.5)).toBe(20_000);
    expect(jitteredMs(20, { jitterRatio: 0.1 }, () => 0.999_999_999)).toBe(22_000);
  });
});

describe('simulate in the configuration', () => {
  const resolve = (file: unknown, flags: Record<string, string> = {}) => resolveBuildServiceConfig({ file, configDir: '/cfg', flags, cwd: '/cwd' });

  it('takes a default and per-project simulations, and --simulate', () => {
    const config = resolve({ simulate: { provisioningSeconds: 20, jitterSeconds: 2, seed: 4 }, projects: [{ name: 'pa' }, { name: 'pb', simulate: { queuedSeconds: 1 } }] });
    expect(config.simulate).toEqual({ queuedSeconds: 0, provisioningSeconds: 20, jitterSeconds: 2, seed: 4 });
    expect(config.projects.map((project) => project.simulate)).toEqual([undefined, { queuedSeconds: 1, provisioningSeconds: 0, seed: 1 }]);
    expect(resolve({}, { simulate: '{"provisioningSeconds": 3}' }).simulate).toMatchObject({ provisioningSeconds: 3 });
  });

  it('refuses a bad simulation naming the field', () => {
    const message = (file: unknown, flags?: Record<string, string>) => {
      try {
        resolve(file, flags);
      } catch (error) {
        if (isCbactionsError(error)) return error.message;
        throw error;
      }
      throw new Error('expected a configuration error');
    };
    expect(message({ simulate: { provisioningSeconds: 20, jitterSeconds: 1, jitterRatio: 0.1 } })).toContain('simulate.jitterRatio: give jitterSeconds or jitterRatio, not both');
    expect(message({ simulate: { provisioningSeconds: -1 } })).toContain('simulate.provisioningSeconds');
    expect(message({ projects: [{ name: 'pa', simulate: { provisioning: 20 } }] })).toContain('projects[0].simulate');
    expect(message({ simulate: { jitterRatio: 2 } })).toContain('simulate.jitterRatio');
    expect(message({}, { simulate: '{nope' })).toContain('simulate: --simulate is not valid JSON');
  });
});

describe('simulated delays in builds (manual clock)', () => {
  let clock: ManualClock;
  let service: InProcess;

  async function control(method: string, path: string, body?: unknown): Promise<{ status: number; json: unknown }> {
    const response = await fetch(`${service.endpoint}${path}`, { method, headers: { authorization: `Bearer ${service.controlToken}` }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
    return { status: response.status, json: await response.json() };
  }

  /** Waits until the service has armed a timer `ms` from now: the build is in its simulated wait. */
  async function waitForTimer(ms: number): Promise<void> {
    await waitUntil(() => clock.pending.includes(ms), 15_000, `a ${ms} ms timer on the clock (pending: ${clock.pending.join(', ')})`);
  }

  function ranBuildspec(id: string): boolean {
    return existsSync(join(service.stateDir, 'builds', id.split(':')[1] as string, 'src', 'build-ran'));
  }

  beforeAll(async () => {
    // The real time at the start: requests are signed with it and must be within 15 min of the service's.
    clock = new ManualClock(Date.now());
    service = await startInProcess({
      buildspecs: { fixed: MARK, jittered: MARK, stoppable: MARK, plain: MARK },
      clock,
      config: { simulate: { provisioningSeconds: 600 } },
      projects: {
        fixed: { simulate: { queuedSeconds: 30, provisioningSeconds: 20 } },
        jittered: { simulate: { queuedSeconds: 10, provisioningSeconds: 20, jitterSeconds: 5, seed: 11 } },
        stoppable: { simulate: { queuedSeconds: 600, provisioningSeconds: 600 } },
      },
    });
  });

  afterEach(async () => {
    await service.running.service.settled();
  });

  afterAll(async () => {
    await service?.close();
  });

  it('spends the queue and provisioning delays in QUEUED and PROVISIONING; the phases carry their times and durations', async () => {
    const started = await service.start({ projectName: 'fixed' });
    expect(started.currentPhase).toBe('QUEUED');
    await waitForTimer(30_000);
    expect(service.running.service.record(started.id as string)?.currentPhase).toBe('QUEUED');
    clock.advance(30_000);
    await waitForTimer(20_000);
    const provisioning = service.running.service.record(started.id as string);
    expect(provisioning?.currentPhase).toBe('PROVISIONING');
    expect(ranBuildspec(started.id as string)).toBe(false);
    clock.advance(20_000);
    const build = await service.waitComplete(started.id as string);
    expect(build.buildStatus).toBe('SUCCEEDED');
    expect(ranBuildspec(started.id as string)).toBe(true);
    expect(phase(build, 'QUEUED')).toMatchObject({ phaseStatus: 'SUCCEEDED', durationInSeconds: 30 });
    expect(phase(build, 'PROVISIONING')).toMatchObject({ phaseStatus: 'SUCCEEDED', durationInSeconds: 20 });
    expect(spent(build, 'QUEUED')).toBeCloseTo(30, 3);
    expect(spent(build, 'PROVISIONING')).toBeCloseTo(20, 3);
    // QUEUED starts at StartBuild, PROVISIONING where QUEUED ended.
    expect((phase(build, 'QUEUED').startTime as Date).getTime()).toBe((build.startTime as Date).getTime());
    expect((phase(build, 'PROVISIONING').startTime as Date).getTime()).toBe((phase(build, 'QUEUED').endTime as Date).getTime());
    expect(service.running.service.record(started.id as string)?.simulated).toEqual({ queuedSeconds: 30, provisioningSeconds: 20 });
  });

  it('spends jittered delays drawn from the seed, and the record says which', async () => {
    const expected = new SimulationState({ default: simulation({ queuedSeconds: 10, provisioningSeconds: 20, jitterSeconds: 5, seed: 11 }) });
    for (let i = 0; i < 2; i += 1) {
      const drawn = expected.draw('jittered');
      const started = await service.start({ projectName: 'jittered' });
      await waitForTimer(drawn?.queuedMs ?? NaN);
      clock.advance(drawn?.queuedMs ?? NaN);
      await waitForTimer(drawn?.provisioningMs ?? NaN);
      clock.advance(drawn?.provisioningMs ?? NaN);
      const build = await service.waitComplete(started.id as string);
      expect(build.buildStatus).toBe('SUCCEEDED');
      expect(service.running.service.record(started.id as string)?.simulated).toEqual({ queuedSeconds: (drawn?.queuedMs ?? NaN) / 1000, provisioningSeconds: (drawn?.provisioningMs ?? NaN) / 1000 });
      expect(spent(build, 'QUEUED')).toBeCloseTo((drawn?.queuedMs ?? NaN) / 1000, 3);
      expect(spent(build, 'PROVISIONING')).toBeCloseTo((drawn?.provisioningMs ?? NaN) / 1000, 3);
    }
  });

  it('StopBuild during the simulated provisioning ends the build STOPPED at once, without running the buildspec', async () => {
    await control('POST', '/_local/simulate', { project: 'stoppable', provisioningSeconds: 600 });
    const id = (await service.start({ projectName: 'stoppable' })).id as string;
    await waitForTimer(600_000);
    expect(service.running.service.record(id)?.currentPhase).toBe('PROVISIONING');
    const stopped = await service.client().send(new StopBuildCommand({ id }));
    expect(stopped.build?.buildStatus).toBe('STOPPED');
    // The clock never moves: the delay is not waited out.
    const build = await service.waitComplete(id);
    expect(build.buildStatus).toBe('STOPPED');
    expect(phaseSummary(build)).toEqual(['SUBMITTED:SUCCEEDED', 'QUEUED:SUCCEEDED', 'PROVISIONING:STOPPED', 'FINALIZING:SUCCEEDED', 'COMPLETED']);
    expect(phase(build, 'PROVISIONING').contexts).toEqual([{ statusCode: 'BUILD_STOPPED', message: 'Build was stopped' }]);
    expect(ranBuildspec(id)).toBe(false);
    // Its wait is gone from the clock.
    expect(clock.pending).not.toContain(600_000);
  });

  it('StopBuild during the simulated queue ends the build STOPPED in QUEUED', async () => {
    await control('POST', '/_local/simulate', { project: 'stoppable', queuedSeconds: 600 });
    const id = (await service.start({ projectName: 'stoppable' })).id as string;
    await waitForTimer(600_000);
    const stopped = await service.client().send(new StopBuildCommand({ id }));
    expect(stopped.build?.buildComplete).toBe(true);
    expect(phaseSummary(stopped.build ?? {})).toEqual(['SUBMITTED:SUCCEEDED', 'QUEUED:STOPPED', 'COMPLETED']);
    expect(clock.pending).not.toContain(600_000);
  });

  it('times a build out in PROVISIONING after timeoutInMinutes', async () => {
    await control('POST', '/_local/simulate', { project: 'stoppable', provisioningSeconds: 3000 });
    const id = (await service.start({ projectName: 'stoppable', timeoutInMinutesOverride: 5 })).id as string;
    await waitForTimer(3_000_000);
    clock.advance(5 * 60_000);
    const build = await service.waitComplete(id);
    expect(build.buildStatus).toBe('TIMED_OUT');
    expect(phaseSummary(build)).toEqual(['SUBMITTED:SUCCEEDED', 'QUEUED:SUCCEEDED', 'PROVISIONING:TIMED_OUT', 'FINALIZING:SUCCEEDED', 'COMPLETED']);
    expect(ranBuildspec(id)).toBe(false);
  });

  it('times a build out in the simulated queue after queuedTimeoutInMinutes, counted from StartBuild', async () => {
    await control('POST', '/_local/simulate', { project: 'stoppable', queuedSeconds: 2000 });
    const id = (await service.start({ projectName: 'stoppable', queuedTimeoutInMinutesOverride: 5 })).id as string;
    await waitForTimer(2_000_000);
    clock.advance(5 * 60_000);
    const build = await service.waitComplete(id);
    expect(build.buildStatus).toBe('TIMED_OUT');
    expect(phaseSummary(build)).toEqual(['SUBMITTED:SUCCEEDED', 'QUEUED:TIMED_OUT', 'COMPLETED']);
    expect(phase(build, 'QUEUED').contexts?.[0]?.statusCode).toBe('BUILD_TIMED_OUT');
  });

  it('sets, shows and clears simulations through the control API, refusing bad ones naming the field', async () => {
    const shown = await control('GET', '/_local/simulate');
    expect(shown.json).toMatchObject({ default: { provisioningSeconds: 600 }, projects: { fixed: { queuedSeconds: 30, provisioningSeconds: 20 } } });

    const set = await control('POST', '/_local/simulate', { project: 'plain', provisioningSeconds: 7, jitterRatio: 0.5, seed: 2 });
    expect(set.status).toBe(200);
    expect((set.json as { projects: Record<string, unknown> }).projects.plain).toEqual({ queuedSeconds: 0, provisioningSeconds: 7, jitterRatio: 0.5, seed: 2 });
    const expected = new SimulationState({ default: simulation({ provisioningSeconds: 7, jitterRatio: 0.5, seed: 2 }) }).draw('plain');
    const id = (await service.start({ projectName: 'plain' })).id as string;
    expect(service.running.service.record(id)?.simulated).toEqual({ queuedSeconds: 0, provisioningSeconds: (expected?.provisioningMs ?? NaN) / 1000 });
    await waitForTimer(expected?.provisioningMs ?? NaN);
    clock.advance(expected?.provisioningMs ?? NaN);
    await service.waitComplete(id);

    const both = await control('POST', '/_local/simulate', { provisioningSeconds: 1, jitterSeconds: 1, jitterRatio: 0.1 });
    expect(both.status).toBe(400);
    expect(both.json).toEqual({ error: 'invalid simulation', issues: ['jitterRatio: give jitterSeconds or jitterRatio, not both'] });
    const unknownField = await control('POST', '/_local/simulate', { provisioning: 1 });
    expect(unknownField.status).toBe(400);
    expect(JSON.stringify(unknownField.json)).toContain('provisioning');
    const unknownProject = await control('POST', '/_local/simulate', { project: 'nope', provisioningSeconds: 1 });
    expect(unknownProject).toEqual({ status: 400, json: { error: 'invalid simulation', issues: ['project: no project "nope" in this build service'] } });
    const notJson = await fetch(`${service.endpoint}/_local/simulate`, { method: 'POST', headers: { authorization: `Bearer ${service.controlToken}` }, body: '{' });
    expect(notJson.status).toBe(400);

    const cleared = await control('DELETE', '/_local/simulate');
    expect(cleared.json).toEqual({ projects: {} });
    // Without a simulation a build runs at once: no timer needed.
    const plain = await service.waitComplete((await service.start({ projectName: 'plain' })).id as string);
    expect(plain.buildStatus).toBe('SUCCEEDED');
    expect(service.running.service.record(plain.id as string)?.simulated).toBeUndefined();
  });
});
