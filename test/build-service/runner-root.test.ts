import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { makeFakeRunnerRoot } from '../support/runner-root.js';
import { phaseSummary, startInProcess, waitUntil, type InProcess } from './harness.js';

// A project's `runnerRoot`: every build gets its own copy of the installation, as every
// CodeBuild build gets a fresh container from its image.

/**
 * Plays what the real Runner.Worker does to its root (writes `.runner`, `_diag`, empties and
 * fills `_work/_temp`), waits until the test lets both builds go on, then exports what it sees.
 */
const PLAYS_THE_RUNNER = `version: 0.2
env:
  exported-variables: [ROOT, SEEN]
phases:
  build:
    commands:
      - export ROOT="$CBACTIONS_RUNNER_ROOT"
      - test -x "$ROOT/bin/Runner.Worker"
      - rm -rf "$ROOT/_work/_temp" && mkdir -p "$ROOT/_work/_temp" "$ROOT/_diag"
      - touch "$ROOT/_work/_temp/job-$CODEBUILD_BUILD_NUMBER" && echo "agent $CODEBUILD_BUILD_NUMBER" > "$ROOT/.runner" && echo "log of $CODEBUILD_BUILD_NUMBER" > "$ROOT/_diag/Worker.log"
      - touch "$RENDEZVOUS/ready-$CODEBUILD_BUILD_NUMBER"; while [ ! -e "$RENDEZVOUS/go" ]; do sleep 0.05; done
      - export SEEN="$(ls -A "$ROOT/_work/_temp" | tr '\\n' ' ')$(cat "$ROOT/.runner")"
`;

describe('build-service: a runner root of its own for every build', () => {
  let service: InProcess | undefined;
  afterEach(async () => {
    await service?.close();
    service = undefined;
  });

  async function startWith(installation: (dir: string) => string): Promise<InProcess & { rendezvous: string; installation: string }> {
    const base = mkdtempSync(join(tmpdir(), 'runner-root-bs-'));
    const rendezvous = join(base, 'rendezvous');
    mkdirSync(rendezvous);
    const root = installation(base);
    service = await startInProcess({
      buildspecs: { cbactions: PLAYS_THE_RUNNER },
      projects: { cbactions: { runnerRoot: root } },
      baseEnv: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: base, RENDEZVOUS: rendezvous },
    });
    return { ...service, rendezvous, installation: root };
  }

  it('gives two concurrent builds different roots; neither sees the other, and the roots go when the builds end', { timeout: 60_000 }, async () => {
    const rig = await startWith((base) => {
      const root = makeFakeRunnerRoot(join(base, 'installation'));
      mkdirSync(join(root, 'externals', 'node20', 'bin'), { recursive: true });
      writeFileSync(join(root, 'externals', 'node20', 'bin', 'node'), '');
      return root;
    });
    const first = await rig.start({});
    const second = await rig.start({});
    // Both builds are inside BUILD at the same time before either goes on.
    await waitUntil(() => existsSync(join(rig.rendezvous, 'ready-1')) && existsSync(join(rig.rendezvous, 'ready-2')), 30_000, 'both builds to reach the rendezvous');
    writeFileSync(join(rig.rendezvous, 'go'), '');
    const done = await Promise.all([rig.waitComplete(String(first.id)), rig.waitComplete(String(second.id))]);

    const exported = done.map((build) => Object.fromEntries((build.exportedEnvironmentVariables ?? []).map(({ name, value }) => [name, value])));
    expect(done.map((build) => build.buildStatus)).toEqual(['SUCCEEDED', 'SUCCEEDED']);
    const [one, two] = exported;
    expect(one?.ROOT).not.toBe(two?.ROOT);
    expect(one?.SEEN).toBe('job-1 agent 1');
    expect(two?.SEEN).toBe('job-2 agent 2');
    for (const [index, build] of done.entries()) {
      const buildDir = join(rig.stateDir, 'builds', String(String(build.id).split(':')[1]));
      expect(exported[index]?.ROOT).toBe(join(buildDir, 'runner'));
      // The root is gone with the build; the runner's own log stays beside the build log.
      expect(existsSync(join(buildDir, 'runner'))).toBe(false);
      expect(readFileSync(join(buildDir, 'runner-diag', 'Worker.log'), 'utf8')).toBe(`log of ${index + 1}\n`);
    }
    // The installation itself is never written to.
    expect(readdirSync(rig.installation).sort()).toEqual(['bin', 'externals']);
  });

  it('fails PROVISIONING with a reason naming the installation when it cannot be copied', async () => {
    const rig = await startWith((base) => join(base, 'no-such-runner'));
    const build = await rig.waitComplete(String((await rig.start({})).id));
    expect(build.buildStatus).toBe('FAILED');
    expect(phaseSummary(build)).toContain('PROVISIONING:FAILED');
    const context = build.phases?.find((phase) => phase.phaseType === 'PROVISIONING')?.contexts?.[0];
    expect(context?.statusCode).toBe('CLIENT_ERROR');
    expect(context?.message).toContain(rig.installation);
  });
});
