import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CbactionsError } from '../util/errors.js';

/** Files of the repository the CDK app reads at synth time, relative to its root. */
export const RepoFiles = {
  buildspec: 'buildspec.yml',
  listenerDockerfile: 'docker/listener.Dockerfile',
  buildDockerfile: 'docker/build.Dockerfile',
  runnerVersion: 'docker/runner-version',
  runnerChecksums: 'docker/runner-checksums.txt',
  bundle: 'dist/bundle/cbactions.mjs',
  preloadMakefile: 'src/preload/Makefile',
} as const;

export const InfraErrorCode = {
  NoRepository: 'INFRA_NO_REPOSITORY',
  Buildspec: 'INFRA_BUILDSPEC',
  RunnerVersion: 'INFRA_RUNNER_VERSION',
  Invalid: 'CONFIG_INVALID',
  Synth: 'INFRA_SYNTH_FAILED',
  NotBuilt: 'INFRA_NOT_BUILT',
  CdkMissing: 'INFRA_CDK_MISSING',
} as const;

/**
 * The cbactions checkout this module belongs to: the first directory above it holding
 * both `package.json` and `buildspec.yml`. Works from `src/` (tests), `dist/src/` and the
 * bundle in `dist/bundle/`.
 */
export function repositoryRoot(fromUrl: string = import.meta.url): string {
  let dir = dirname(fileURLToPath(fromUrl));
  for (;;) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, RepoFiles.buildspec))) return dir;
    const parent = dirname(dir);
    if (parent === dir) {
      throw new CbactionsError(
        InfraErrorCode.NoRepository,
        `cannot find the cbactions repository (package.json next to ${RepoFiles.buildspec}) above ${fileURLToPath(fromUrl)}: deploy from a checkout`,
      );
    }
    dir = parent;
  }
}

/** CodeBuild refuses longer inline buildspecs (observed limit, CODEBUILD-FACTS.md). */
export const MAX_INLINE_BUILDSPEC_CHARS = 25_600;

/** The buildspec text, exactly as in the file: the project gets its content, not a path. */
export function readBuildspec(root: string): string {
  const path = join(root, RepoFiles.buildspec);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new CbactionsError(InfraErrorCode.Buildspec, `cannot read ${path}: ${(error as Error).message}`, { cause: error });
  }
  if (text.length > MAX_INLINE_BUILDSPEC_CHARS) {
    throw new CbactionsError(InfraErrorCode.Buildspec, `${path} has ${text.length} characters; CodeBuild accepts at most ${MAX_INLINE_BUILDSPEC_CHARS} inline`);
  }
  return text;
}

/** actions/runner version the images install: `docker/runner-version`, one line. */
export function readRunnerVersion(root: string): string {
  const path = join(root, RepoFiles.runnerVersion);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new CbactionsError(InfraErrorCode.RunnerVersion, `cannot read ${path}: ${(error as Error).message}`, { cause: error });
  }
  const version = text.trim();
  if (!/^\d+\.\d+\.\d+$/.test(version)) {
    throw new CbactionsError(InfraErrorCode.RunnerVersion, `${path} must hold one actions/runner version such as 2.337.0, not "${version.slice(0, 40)}"`);
  }
  return version;
}
