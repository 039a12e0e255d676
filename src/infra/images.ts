import { IgnoreMode, Stack } from 'aws-cdk-lib';
import * as ecr from 'aws-cdk-lib/aws-ecr';
import { DockerImageAsset, Platform } from 'aws-cdk-lib/aws-ecr-assets';
import type { Construct } from 'constructs';
import { RepoFiles } from './paths.js';

/**
 * What the Docker builds may see of the repository (the context is the repository root).
 * An allow-list, so node_modules, .git and cdk.out never reach the asset or the daemon;
 * docker/*.Dockerfile.dockerignore say the same for manual `docker build`s.
 */
export const DOCKER_CONTEXT_EXCLUDE: readonly string[] = [
  '*',
  '!bin/cbactions',
  `!${RepoFiles.bundle}`,
  '!docker/**',
  'docker/*.md',
  '!src/preload/Makefile',
  '!src/preload/*.c',
];

export type ImageArchitecture = 'x86_64' | 'arm64';

export interface RepositoryImageProps {
  /** The repository root (Docker build context). */
  readonly directory: string;
  /** Dockerfile, relative to `directory`. */
  readonly file: string;
  /** actions/runner version, the one build argument both images share. */
  readonly runnerVersion: string;
  readonly architecture: ImageArchitecture;
}

/** An image built from this repository at deploy time and pushed to the CDK asset repository. */
export function repositoryImage(scope: Construct, id: string, props: RepositoryImageProps): DockerImageAsset {
  return new DockerImageAsset(scope, id, {
    directory: props.directory,
    file: props.file,
    buildArgs: { RUNNER_VERSION: props.runnerVersion },
    platform: props.architecture === 'arm64' ? Platform.LINUX_ARM64 : Platform.LINUX_AMD64,
    exclude: [...DOCKER_CONTEXT_EXCLUDE],
    ignoreMode: IgnoreMode.DOCKER,
  });
}

export interface EcrImageUri {
  account: string;
  region: string;
  repositoryName: string;
  /** A tag, or a digest `sha256:…`. */
  tagOrDigest: string;
}

const ECR_URI = /^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?\/([a-z0-9][a-z0-9._/-]*)(?::([\w][\w.-]{0,127})|@(sha256:[a-f0-9]{64}))?$/;

/** A private ECR image URI, split; undefined for any other registry. */
export function parseEcrImageUri(uri: string): EcrImageUri | undefined {
  const match = ECR_URI.exec(uri);
  if (!match) return undefined;
  const [, account, region, repositoryName, tag, digest] = match;
  if (account === undefined || region === undefined || repositoryName === undefined) return undefined;
  return { account, region, repositoryName, tagOrDigest: digest ?? tag ?? 'latest' };
}

/** An imported ECR repository for a URI, so the roles that pull it get ECR permissions on it. */
export function ecrRepositoryFor(scope: Construct, id: string, image: EcrImageUri): ecr.IRepository {
  const partition = Stack.of(scope).partition;
  return ecr.Repository.fromRepositoryAttributes(scope, id, {
    repositoryName: image.repositoryName,
    repositoryArn: `arn:${partition}:ecr:${image.region}:${image.account}:repository/${image.repositoryName}`,
  });
}
