import { chmodSync, copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { CbactionsError } from '../util/errors.js';
import { InfraErrorCode, RepoFiles } from './paths.js';

/**
 * The build kit: what `cbactions entrypoint` needs inside a build whose image has no
 * cbactions (a stock CodeBuild image set as a pool's `build.image`). Laid out exactly like
 * /opt/cbactions in docker/build.Dockerfile, so the entrypoint finds `docker/install-runner.sh`
 * and `docker/runner-checksums.txt` from the package root as it does in the image.
 *
 * The CDK app uploads it as a zipped S3 asset (src/infra/build-kit-asset.ts); the buildspec's
 * INSTALL phase downloads and unpacks it when `cbactions` is not on the PATH.
 *
 * No CDK imports here: the process tests stage a kit the same way.
 */

/** Where the buildspec unpacks the kit (`CBACTIONS_KIT_DIR` overrides it). */
export const BUILD_KIT_DIR = '/opt/cbactions';

/** The project environment variable naming the kit: `s3://<bucket>/<key>`. */
export const BUILD_KIT_ENV = 'CBACTIONS_KIT_S3_URI';

export interface BuildKitFile {
  /** Path inside the kit. */
  readonly path: string;
  /** Path in the repository (after `npm run build`). */
  readonly source: string;
  readonly mode: number;
}

/** Every file of the kit, and nothing else. */
export const BUILD_KIT_FILES: readonly BuildKitFile[] = [
  { path: 'bin/cbactions', source: 'bin/cbactions', mode: 0o755 },
  // The single-file bundle where bin/cbactions imports the CLI from (dist/src/cli/main.js).
  { path: 'dist/src/cli/main.js', source: RepoFiles.bundle, mode: 0o644 },
  // Marks the kit as the package root and makes main.js an ES module.
  { path: 'package.json', source: 'docker/image-package.json', mode: 0o644 },
  { path: 'docker/install-runner.sh', source: 'docker/install-runner.sh', mode: 0o755 },
  { path: 'docker/runner-checksums.txt', source: RepoFiles.runnerChecksums, mode: 0o644 },
  { path: 'docker/start-dockerd.sh', source: 'docker/start-dockerd.sh', mode: 0o755 },
];

/**
 * Copies the kit's files from the repository `root` into the empty directory `into`, with
 * their modes (the zip keeps them, so `bin/cbactions` and the scripts stay executable).
 * Fails naming `npm run build` when a built file is missing.
 */
export function stageBuildKit(root: string, into: string): void {
  const missing = BUILD_KIT_FILES.filter((file) => !existsSync(join(root, file.source))).map((file) => file.source);
  if (missing.length > 0) {
    throw new CbactionsError(InfraErrorCode.NotBuilt, `the build kit needs ${missing.join(', ')} in ${root}: run "npm run build" first`);
  }
  for (const file of BUILD_KIT_FILES) {
    const target = join(into, file.path);
    mkdirSync(dirname(target), { recursive: true });
    copyFileSync(join(root, file.source), target);
    chmodSync(target, file.mode);
  }
}
