import { App, Aspects } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { DeploySchema } from '../config/deploy-schema.js';
import { loadConfigFile } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { CbactionsError } from '../util/errors.js';
import { buildRoleGrantWarnings } from './build-role-grants.js';
import { InfraErrorCode, readBuildspec, readRunnerVersion, repositoryRoot } from './paths.js';
import { CbactionsStack, stackIdentity } from './stack.js';

export interface SynthOptions {
  /** Cloud assembly directory (cdk.out). */
  outdir: string;
  /** The repository root (buildspec.yml, docker/); default: the checkout this module is in. */
  root?: string;
}

export interface SynthResult {
  stackName: string;
  /** The cloud assembly directory, for `cdk deploy --app <dir>`. */
  assemblyDir: string;
  templatePath: string;
  /** Whether an image is built from the repository at deploy (needs `npm run build` first). */
  buildsImages: boolean;
  /** Warnings of the synthesis (construct warnings; cdk-nag findings are errors). */
  warnings: string[];
  /** Build roles whose extra grants would matter, one line each (build-role-grants.ts). */
  buildRoleWarnings: string[];
  /**
   * Values CDK looks up in the account (the availability zones of a new VPC when the stack
   * names its account and region). Offline they are placeholders; the CDK CLI looks them up.
   */
  lookups: string[];
}

/** True when the config leaves an image to be built from this repository. */
export function buildsImages(config: Config): boolean {
  const images = (config.deploy ?? DeploySchema.parse({})).images;
  return images.listener === undefined || images.build === undefined;
}

/**
 * Synthesizes the cbactions stack for a config into `outdir`, with cdk-nag's
 * AwsSolutions checks: an unsuppressed finding (or any error annotation) fails it, naming
 * each construct and rule. Offline: nothing here talks to AWS.
 */
export function synthesizeConfig(config: Config, options: SynthOptions): SynthResult {
  const root = options.root ?? repositoryRoot();
  const images = buildsImages(config);
  const app = new App({ outdir: options.outdir, analyticsReporting: false });
  const { stackName, env } = stackIdentity(config);
  new CbactionsStack(app, stackName, {
    stackName,
    env,
    description: 'cbactions: GitHub Actions jobs run in AWS CodeBuild',
    config,
    buildspec: readBuildspec(root),
    assetDirectory: root,
    ...(images ? { runnerVersion: readRunnerVersion(root) } : {}),
  });
  Aspects.of(app).add(new AwsSolutionsChecks({ verbose: true }));
  const assembly = app.synth();
  const artifact = assembly.getStackByName(stackName);
  const describe = (message: (typeof artifact.messages)[number]) => `${message.id}: ${String(message.entry.data)}`;
  const errors = artifact.messages.filter((message) => message.level === 'error').map(describe);
  if (errors.length > 0) {
    throw new CbactionsError(InfraErrorCode.Synth, `the stack ${stackName} has ${errors.length} problem(s):\n  ${errors.join('\n  ')}`);
  }
  return {
    stackName,
    assemblyDir: assembly.directory,
    templatePath: artifact.templateFullPath,
    buildsImages: images,
    warnings: artifact.messages.filter((message) => message.level === 'warning').map(describe),
    buildRoleWarnings: buildRoleGrantWarnings(config),
    lookups: (assembly.manifest.missing ?? []).map((missing) => missing.key),
  };
}

export async function synthesize(configPath: string, options: SynthOptions): Promise<SynthResult> {
  return synthesizeConfig(await loadConfigFile(configPath), options);
}
