import { Command, CommanderError } from 'commander';
import { ENTRYPOINT_ENVIRONMENT } from '../entrypoint/environment.js';
import { ExitCode } from '../protocol/exit-codes.js';
import { describeError, isCbactionsError } from '../util/errors.js';
import { WORKER_ENVIRONMENT } from '../worker/environment.js';

/** The "Environment:" section of a command's --help, one variable a line. */
export function environmentHelp(title: string, variables: Readonly<Record<string, string>>): string {
  const names = Object.keys(variables);
  const width = Math.max(...names.map((name) => name.length));
  return `\n${title}:\n${names.map((name) => `  ${name.padEnd(width)}  ${variables[name]}`).join('\n')}\n`;
}

/**
 * `cbactions <command>`. Thin: each command's module is imported only when it runs, so
 * `cbactions worker` (started once per job by the listener) loads only what it needs.
 */
export function buildProgram(): Command {
  const program = new Command('cbactions')
    .description('GitHub Actions jobs that run in AWS CodeBuild')
    .showHelpAfterError()
    .exitOverride();

  program
    .command('worker')
    .description('Runner.Worker replacement: run the job handed over by Runner.Listener in a CodeBuild build')
    .argument('<mode>', 'must be "spawnclient", as the listener passes it')
    .argument('<readFd>', 'fd the listener writes messages to')
    .argument('<writeFd>', 'fd back to the listener (never written)')
    .addHelpText('after', environmentHelp('Environment (the mux sets the CBACTIONS_ ones for each listener)', WORKER_ENVIRONMENT))
    .action(async (mode: string, readFd: string, writeFd: string) => {
      const { runWorkerCommand } = await import('../worker/main.js');
      process.exitCode = await runWorkerCommand({ mode, readFd, writeFd });
    });

  program
    .command('entrypoint')
    .description('inside a CodeBuild build: open the sealed job, run the real Runner.Worker, record its exit code')
    .addHelpText('after', environmentHelp('Environment (set by CodeBuild, the buildspec, the project and the worker)', ENTRYPOINT_ENVIRONMENT))
    .action(async () => {
      const { runEntrypointCommand } = await import('../entrypoint/main.js');
      process.exitCode = await runEntrypointCommand();
    });

  program
    .command('job-hook', { hidden: true })
    .description("inside a CodeBuild build: the runner's job-completed hook, printing the job's wait and cost lines")
    .argument('<which>', 'must be "completed"')
    .argument('<contextFile>', 'the context the entrypoint wrote for the hook')
    .action(async (which: string, contextFile: string) => {
      const { runJobHookCommand } = await import('../entrypoint/job-hook.js');
      process.exitCode = await runJobHookCommand(which, contextFile);
    });

  program
    .command('build-service')
    .description('a CodeBuild-compatible endpoint that runs builds as local processes (development, tests, local mode)')
    .option('--config <file>', 'build-service configuration file (projects, listen address, state directory)')
    .option('--port <port>', 'TCP port on 127.0.0.1 (0 = any free port)')
    .option('--host <host>', 'listen address (default: 127.0.0.1)')
    .option('--state-dir <dir>', 'where build records and build logs are kept')
    .option('--buildspec <file>', 'buildspec of the default project (with --config: of the project named by --project)')
    .option('--project <name>', 'name of the default project (default: cbactions)')
    .option('--minute-ms <ms>', 'length of one CodeBuild "minute" for timeouts (shorten only for tests)')
    .option('--region <region>', 'region in build ARNs and AWS_REGION (default: us-east-1)')
    .option('--account-id <id>', 'account id in build ARNs (default: 000000000000)')
    .option('--stop-grace-ms <ms>', 'StopBuild/timeout/shutdown: SIGTERM, then SIGKILL after this (default: 10000)')
    .option('--concurrent-build-limit <n>', 'builds running at once; more wait in QUEUED')
    .option('--assume-service-role <true|false>', "give builds their service role's credentials through STS AssumeRole")
    .option('--faults <json>', 'faults to inject from the start (same JSON as POST /_local/faults)')
    .option('--simulate <json>', 'simulated QUEUED/PROVISIONING delays of every project, e.g. {"provisioningSeconds":20} (as POST /_local/simulate)')
    .option('--credentials-file <file>', "where to write the service's key pair for callers (AWS shared-credentials format; default: <state dir>/credentials)")
    .option('--log-level <level>', 'log level of the JSON logs on stderr', 'info')
    .action(async (options: Record<string, string | undefined>) => {
      const { runBuildServiceCommand } = await import('../build-service/main.js');
      process.exitCode = await runBuildServiceCommand(options);
    });

  program
    .command('mux')
    .description('run the runner pools: many Runner.Listener processes, each an ephemeral runner, in one container')
    .option('--config <file>', 'configuration file (YAML or JSON; default: $CBACTIONS_CONFIG)')
    .action(async (options: { config?: string }) => {
      const { runMuxCommand } = await import('../mux/main.js');
      process.exitCode = await runMuxCommand(options);
    });

  program
    .command('local')
    .description('try it on one machine: the mux against GitHub, jobs run by the local build service instead of CodeBuild')
    .option('--config <file>', 'configuration file, e.g. from `cbactions init` (default: $CBACTIONS_CONFIG)')
    .option('--state-dir <dir>', 'local key, payloads, build records and logs', '.cbactions')
    .option('--runner-root <dir>', "an actions/runner installation (default: the config's mux.runnerRoot)")
    .action(async (options: { config?: string; stateDir?: string; runnerRoot?: string }) => {
      const { runLocalCommand } = await import('./local.js');
      process.exitCode = await runLocalCommand(options);
    });

  program
    .command('status')
    .description("show a running mux's pools and slots")
    .option('--url <url>', "the mux's status endpoint", 'http://127.0.0.1:8080')
    .option('--json', 'print the raw /status JSON')
    .action(async (options: { url: string; json?: boolean }) => {
      const { runStatusCommand } = await import('../mux/status-command.js');
      process.exitCode = await runStatusCommand(options, { stdout: (text) => process.stdout.write(text), stderr: (text) => process.stderr.write(text) });
    });

  program
    .command('install-worker')
    .description('install the Runner.Worker shim into a runner installation')
    .argument('<runnerRoot>', 'the runner installation (the directory holding bin/)')
    .action(async (runnerRoot: string) => {
      const { runInstallWorkerCommand } = await import('../worker/install.js');
      process.exitCode = await runInstallWorkerCommand(runnerRoot);
    });

  program
    .command('create-local-key')
    .description('create a payload key for payloads.key.local.file (local sealing): 32 random bytes, mode 0600, never overwritten')
    .argument('<file>', 'where to write the key')
    .action(async (file: string) => {
      const { runCreateLocalKeyCommand } = await import('./create-local-key.js');
      process.exitCode = await runCreateLocalKeyCommand(file, { stdout: (text) => process.stdout.write(text), stderr: (text) => process.stderr.write(text) });
    });

  program
    .command('policy')
    .description('the admission policy (config section policy)')
    .command('explain')
    .description('which policy rule a job message matches, and the pool, role and settings its build would get (or why it is refused)')
    .option('--config <file>', 'configuration file (default: $CBACTIONS_CONFIG)')
    .requiredOption('--job <file>', 'a job message (JSON, as the listener hands it to Runner.Worker; UTF-8 or UTF-16LE)')
    .option('--pool <name>', 'the pool the job would run on (needed when the config has several)')
    .addHelpText('after', '\nExit code: 0 the job would run, 1 it would be refused, 2 bad usage or an unreadable file.\n')
    .action(async (options: { config?: string; job: string; pool?: string }) => {
      const { runPolicyExplainCommand } = await import('./policy-explain.js');
      process.exitCode = await runPolicyExplainCommand({ ...options, config: options.config || process.env.CBACTIONS_CONFIG }, { stdout: (text) => process.stdout.write(text), stderr: (text) => process.stderr.write(text) });
    });

  // Setup and deployment (src/infra): `init` writes a starter config; `deploy`, `diff` and
  // `destroy` synthesize the CDK app from a config and run the AWS CDK CLI on it. The
  // container images carry only the runtime bundle, so these say where they do work.
  const infra = <T>(load: () => Promise<T>): Promise<T> =>
    load().catch((error: unknown) => {
      throw new Error(`this command runs from a cbactions checkout after "npm ci && npm run build" (${describeError(error)})`);
    });
  program
    .command('init')
    .description('write a commented starter config (asks when stdin is a terminal, else uses the flags)')
    .option('--scope <scope>', 'org:NAME, repo:OWNER/NAME or enterprise:SLUG')
    .option('--auth <kind>', 'app (GitHub App) or pat (personal access token)')
    .option('--app-id <id>', 'GitHub App id (with --auth app)')
    .option('--pool <spec>', 'a runner pool: NAME or NAME=LABEL,LABEL (repeatable)', (value: string, previous: string[] = []) => [...previous, value])
    .option('--project-name <name>', 'CodeBuild project name', 'cbactions')
    .option('--stack-name <name>', 'CloudFormation stack name', 'cbactions')
    .option('--region <region>', 'AWS region')
    .option('--output <file>', 'where to write (never overwritten)', 'cbactions.yml')
    .action(async (options: Record<string, string | string[] | undefined>) => {
      const { runInitCommand } = await infra(() => import('../infra/init.js'));
      process.exitCode = await runInitCommand(options);
    });

  for (const [name, description] of [
    ['deploy', 'deploy the AWS resources for a config (ECS service, CodeBuild project, key, bucket, alarms)'],
    ['diff', 'show what `deploy` would change'],
    ['destroy', 'delete the deployed stack'],
  ] as const) {
    const command = program
      .command(name)
      .description(description)
      .option('--config <file>', 'configuration file (default: $CBACTIONS_CONFIG)')
      .option('--output-dir <dir>', 'where the synthesized CloudFormation assembly goes', 'cdk.out')
      .option('--profile <name>', 'AWS profile for the CDK CLI');
    if (name === 'deploy') {
      command
        .option('--dry-run', 'synthesize only (offline): print where the template went, deploy nothing')
        .option('--require-approval <level>', 'never, any-change or broadening (the CDK CLI default)')
        .option('--bootstrap', 'run `cdk bootstrap` for the target account and region first');
    }
    if (name === 'destroy') command.option('--force', 'do not ask for confirmation');
    command.action(async (options: Record<string, string | boolean | undefined>) => {
      const { runInfraCommand } = await infra(() => import('../infra/commands.js'));
      process.exitCode = await runInfraCommand(name, options, {
        stdout: (text) => process.stdout.write(text),
        stderr: (text) => process.stderr.write(text),
        env: process.env,
      });
    });
  }

  return program;
}

export async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (error) {
    if (error instanceof CommanderError) {
      // Commander already printed the problem (or the help).
      process.exitCode = error.exitCode === 0 ? ExitCode.Ok : ExitCode.UsageOrConfig;
      return;
    }
    process.stderr.write(`cbactions: ${isCbactionsError(error) ? error.message : describeError(error)}\n`);
    process.exitCode = isCbactionsError(error) && error.code.startsWith('CONFIG_') ? ExitCode.UsageOrConfig : ExitCode.InfrastructureFailure;
  }
}

await main(process.argv);
