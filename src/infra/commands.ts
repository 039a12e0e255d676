import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { ExitCode } from '../protocol/exit-codes.js';
import { CbactionsError, isCbactionsError } from '../util/errors.js';
import { InfraErrorCode, RepoFiles, repositoryRoot } from './paths.js';

export type CdkCommand = 'deploy' | 'diff' | 'destroy';

export interface InfraCommandOptions {
  config?: string;
  /** deploy only: synthesize, print where the template went, deploy nothing. */
  dryRun?: boolean;
  /** Cloud assembly directory; default ./cdk.out. */
  outputDir?: string;
  /** AWS profile for the CDK CLI. */
  profile?: string;
  /** deploy: the CDK CLI's --require-approval (never | any-change | broadening). */
  requireApproval?: string;
  /** deploy: run `cdk bootstrap` for the target environment first. */
  bootstrap?: boolean;
  /** destroy: no confirmation prompt. */
  force?: boolean;
}

export interface CommandIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  /** Environment to read CBACTIONS_CONFIG from. */
  env: Readonly<Record<string, string | undefined>>;
}

const APPROVAL_LEVELS = new Set(['never', 'any-change', 'broadening']);

/**
 * Arguments of the CDK CLI. `app` is the command that synthesizes this app (src/infra/main.ts
 * reading CBACTIONS_CONFIG), so the CLI can do the context lookups an offline synthesis
 * can't (availability zones of an account-specific stack) and cache them in cdk.context.json.
 */
export function cdkArguments(command: CdkCommand | 'bootstrap', app: string, outdir: string, stackName: string, options: InfraCommandOptions = {}): string[] {
  const args = [command, '--app', app, '--output', outdir];
  if (command !== 'bootstrap') args.push(stackName);
  if (options.profile !== undefined) args.push('--profile', options.profile);
  if (command === 'deploy' && options.requireApproval !== undefined) args.push('--require-approval', options.requireApproval);
  if (command === 'destroy' && options.force === true) args.push('--force');
  return args;
}

/** `"node" "<root>/dist/src/infra/main.js"`, quoted for the CDK CLI's shell-like splitting. */
export function cdkAppCommand(root: string): string {
  return `"${process.execPath}" "${join(root, 'dist', 'src', 'infra', 'main.js')}"`;
}

/** The CDK CLI (devDependency `aws-cdk`) of this checkout. */
export function cdkCliPath(root: string): string {
  let packageJson: string;
  try {
    packageJson = createRequire(join(root, 'package.json')).resolve('aws-cdk/package.json');
  } catch (error) {
    throw new CbactionsError(InfraErrorCode.CdkMissing, `the AWS CDK CLI (npm package aws-cdk) is not installed in ${root}: run "npm ci"`, { cause: error });
  }
  return join(dirname(packageJson), 'bin', 'cdk');
}

function runCdk(cli: string, args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [cli, ...args], { stdio: 'inherit', env });
    child.once('error', reject);
    child.once('exit', (code, signal) => resolvePromise(code ?? (signal ? 128 : 1)));
  });
}

function usage(message: string): CbactionsError {
  return new CbactionsError('CONFIG_USAGE', message);
}

/**
 * `cbactions deploy | diff | destroy`: synthesize the stack from the config offline (cdk-nag
 * checked, so a bad config fails here, by field, before anything talks to AWS), then run the
 * CDK CLI on the same app. `deploy --dry-run` stops after the synthesis and says where the
 * template is.
 */
export async function runInfraCommand(command: CdkCommand, options: InfraCommandOptions, io: CommandIo): Promise<number> {
  try {
    const configPath = options.config ?? io.env.CBACTIONS_CONFIG;
    if (configPath === undefined || configPath === '') throw usage(`cbactions ${command} needs the config file: --config FILE (or CBACTIONS_CONFIG)`);
    if (options.requireApproval !== undefined && !APPROVAL_LEVELS.has(options.requireApproval)) {
      throw usage(`--require-approval must be never, any-change or broadening, not "${options.requireApproval}"`);
    }
    const root = repositoryRoot();
    const outdir = resolve(options.outputDir ?? 'cdk.out');
    // aws-cdk-lib is needed only here: load it on demand (and say so when it is missing).
    const { synthesize } = await import('./synth.js').catch((error: unknown) => {
      throw new CbactionsError(InfraErrorCode.CdkMissing, `cannot load the AWS CDK libraries (${(error as Error).message}): deploy from a checkout after "npm ci && npm run build"`, { cause: error });
    });
    const result = await synthesize(resolve(configPath), { outdir, root });
    for (const warning of result.warnings) io.stderr(`warning: ${warning}\n`);
    // What job code gets from its build role is the operator's call; say it before deploying.
    if (command === 'deploy') for (const warning of result.buildRoleWarnings) io.stderr(`warning: ${warning}\n`);
    io.stdout(`synthesized stack ${result.stackName}\n  template: ${result.templatePath}\n  assembly: ${result.assemblyDir}\n`);
    if (result.lookups.length > 0) {
      io.stdout(`  looked up at deploy time (placeholders offline): ${result.lookups.join(', ')}\n`);
    }
    if (command === 'deploy' && options.dryRun === true) {
      io.stdout('dry run: nothing was deployed\n');
      return ExitCode.Ok;
    }
    if (command === 'deploy' && result.buildsImages && !existsSync(join(root, RepoFiles.bundle))) {
      throw new CbactionsError(InfraErrorCode.NotBuilt, `${RepoFiles.bundle} is missing and the images copy it: run "npm run build" first`);
    }
    if (!existsSync(join(root, 'dist', 'src', 'infra', 'main.js'))) {
      throw new CbactionsError(InfraErrorCode.NotBuilt, 'dist/src/infra/main.js is missing: run "npm run build" first');
    }
    const cli = cdkCliPath(root);
    const app = cdkAppCommand(root);
    const env = { ...process.env, CBACTIONS_CONFIG: resolve(configPath) };
    if (command === 'deploy' && options.bootstrap === true) {
      const code = await runCdk(cli, cdkArguments('bootstrap', app, outdir, result.stackName, options), env);
      if (code !== 0) return code;
    }
    return await runCdk(cli, cdkArguments(command, app, outdir, result.stackName, options), env);
  } catch (error) {
    if (!isCbactionsError(error)) throw error;
    io.stderr(`cbactions ${command}: ${error.message}\n`);
    return error.code.startsWith('CONFIG_') ? ExitCode.UsageOrConfig : ExitCode.InfrastructureFailure;
  }
}
