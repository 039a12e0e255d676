import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLocalKeyFile } from '../../src/seal/local-key-service.js';
import { makeMuxRunnerRoot } from '../mux/helpers.js';
import { startBuildService, type BuildServiceProcess } from './build-service.js';
import { makeFakeRunnerRoot, PROJECT_ROOT } from './runner-root.js';

/** A directory for one built `cbactions mux`: its runner root, its state directory with a local key, and the build service's state. */
export interface MuxBuildRig {
  dir: string;
  runnerRoot: string;
  stateDir: string;
  /** The local build service as its own process, so builds outlive the mux as CodeBuild builds do. */
  service: BuildServiceProcess;
}

/** The rig of the process tests that kill or restart a mux while its builds run (project `cbactions-test`, the repository's buildspec). */
export async function startMuxBuildRig(prefix: string): Promise<MuxBuildRig> {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const runnerRoot = makeMuxRunnerRoot(join(dir, 'runner'));
  const stateDir = join(dir, 'state');
  mkdirSync(stateDir, { mode: 0o700 });
  await createLocalKeyFile(join(stateDir, 'key'));
  mkdirSync(join(dir, 'build-service'));
  const service = await startBuildService({
    stateDir: join(dir, 'build-service'),
    stopGraceMs: 3000,
    config: {
      projects: [
        {
          name: 'cbactions-test',
          buildspec: join(PROJECT_ROOT, 'buildspec.yml'),
          environmentVariables: { CBACTIONS_RUNNER_ROOT: makeFakeRunnerRoot(join(dir, 'build-runner')), CBACTIONS_CANCEL_POLL_SECONDS: '0.2', CBACTIONS_PAYLOAD_WAIT_SECONDS: '60' },
        },
      ],
    },
    env: { PATH: `${join(PROJECT_ROOT, 'bin')}:${process.env.PATH ?? ''}` },
  });
  return { dir, runnerRoot, stateDir, service };
}
