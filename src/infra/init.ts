import { writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline/promises';
import { parse as parseYaml } from 'yaml';
import { parseConfig } from '../config/load.js';
import { GitHubScopeSchema, PoolSchema, type GitHubScope } from '../config/schema.js';
import { ExitCode } from '../protocol/exit-codes.js';
import { CbactionsError, isCbactionsError } from '../util/errors.js';

export interface InitOptions {
  /** `org:NAME`, `repo:OWNER/NAME` or `enterprise:SLUG`. */
  scope?: string;
  /** `app` (GitHub App) or `pat` (personal access token). */
  auth?: string;
  /** GitHub App id (with `--auth app`). */
  appId?: string;
  /** `NAME` or `NAME=LABEL[,LABEL…]`, repeatable. */
  pool?: string[];
  output?: string;
  projectName?: string;
  stackName?: string;
  region?: string;
}

export interface InitAnswers {
  scope: GitHubScope;
  auth: { kind: 'app'; appId: string } | { kind: 'pat' };
  pools: { name: string; labels: string[] }[];
  projectName: string;
  stackName: string;
  region?: string;
}

export interface InitIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  /** Asks a question when there is a terminal; undefined = non-interactive. */
  ask?: (question: string) => Promise<string>;
}

const USAGE = 'CONFIG_USAGE';
export const DEFAULT_INIT_OUTPUT = 'cbactions.yml';

function usage(message: string): CbactionsError {
  return new CbactionsError(USAGE, message);
}

/** `org:octo` → `{ organization: 'octo' }`; validated like the config. */
export function parseScope(value: string): GitHubScope {
  const colon = value.indexOf(':');
  const kind = colon < 0 ? '' : value.slice(0, colon);
  const name = value.slice(colon + 1);
  const raw =
    kind === 'org' || kind === 'organization'
      ? { organization: name }
      : kind === 'repo' || kind === 'repository'
        ? { repository: name }
        : kind === 'enterprise'
          ? { enterprise: name }
          : undefined;
  const parsed = raw === undefined ? undefined : GitHubScopeSchema.safeParse(raw);
  if (parsed === undefined || !parsed.success) {
    throw usage(`--scope: expected org:NAME, repo:OWNER/NAME or enterprise:SLUG, got "${value}"`);
  }
  return parsed.data;
}

/** `small=linux,small` → pool "small" with those labels; `small` alone → label "small". */
export function parsePoolSpec(value: string): { name: string; labels: string[] } {
  const equals = value.indexOf('=');
  const name = equals < 0 ? value : value.slice(0, equals);
  const labels = equals < 0 ? [name] : value.slice(equals + 1).split(',').map((label) => label.trim()).filter((label) => label !== '');
  const parsed = PoolSchema.safeParse({ name, labels });
  if (!parsed.success) {
    const problem = parsed.error.issues[0];
    throw usage(`--pool "${value}": ${problem ? `${problem.path.join('.') || 'pool'}: ${problem.message}` : 'invalid'} (expected NAME or NAME=LABEL,LABEL…)`);
  }
  return { name: parsed.data.name, labels: parsed.data.labels };
}

function quote(value: string): string {
  return JSON.stringify(value);
}

function scopeYaml(scope: GitHubScope): string {
  if ('organization' in scope) return `organization: ${quote(scope.organization)}`;
  if ('repository' in scope) return `repository: ${quote(scope.repository)}`;
  return `enterprise: ${quote(scope.enterprise)}`;
}

/** The starter config: every value valid, every choice explained. */
export function renderStarterConfig(answers: InitAnswers): string {
  const repoScope = 'repository' in answers.scope;
  const auth =
    answers.auth.kind === 'app'
      ? [
          '    app:',
          `      appId: ${answers.auth.appId}`,
          '      # installationId: 12345678   # optional: looked up from the scope when omitted',
          "      # The App's private key (PEM). `cbactions deploy` creates an empty Secrets Manager",
          '      # secret for it (stack output GitHubSecretSetup says how to fill it); `cbactions local`',
          '      # reads it from this environment variable. An existing secret: { secretsManager: NAME-OR-ARN }.',
          '      privateKey: { env: CBACTIONS_GITHUB_APP_PRIVATE_KEY }',
        ]
      : [
          '    # A fine-grained or classic personal access token that may administer self-hosted runners',
          '    # of the scope. `cbactions deploy` creates an empty Secrets Manager secret for it (stack',
          '    # output GitHubSecretSetup); `cbactions local` reads it from this environment variable.',
          '    # An existing secret: { secretsManager: NAME-OR-ARN }.',
          '    token: { env: CBACTIONS_GITHUB_TOKEN }',
        ];
  const pools = answers.pools.flatMap((pool) => [
    `  - name: ${quote(pool.name)}`,
    `    labels: [${pool.labels.map(quote).join(', ')}]`,
    '    slots: 2                      # listeners (jobs at once) per listener task',
    '    build:',
    '      computeType: BUILD_GENERAL1_SMALL   # …MEDIUM, LARGE, XLARGE, 2XLARGE, BUILD_LAMBDA_*GB',
    '      environmentType: LINUX_CONTAINER    # ARM_CONTAINER, LINUX_GPU_CONTAINER, …',
    '      privileged: false                   # true: Docker in the build (container: jobs, services)',
    '      # timeoutMinutes: 360',
    '    overridable: []               # settings policy rules may change here: computeType, image, privileged, timeoutMinutes, queuedTimeoutMinutes',
  ]);
  return [
    '# cbactions configuration, written by `cbactions init`. One file drives the runtime',
    '# (`cbactions mux`, `cbactions local`) and the AWS deployment (`cbactions deploy`); the schema',
    '# is src/config/schema.ts (+ src/config/deploy-schema.ts for `deploy`). Check it offline:',
    '#   cbactions deploy --config THIS_FILE --dry-run',
    '',
    'github:',
    '  url: https://github.com          # or your GitHub Enterprise Server URL',
    '  # Where the runners register.',
    '  scope:',
    `    ${scopeYaml(answers.scope)}`,
    ...(repoScope ? [] : ['  runnerGroup: Default             # runner group name or id']),
    '  namePrefix: cbactions            # runner names: <prefix>-<host>-<pool>-<slot>-<n>',
    '  auth:',
    ...auth,
    '',
    'codebuild:',
    '  # The CodeBuild project `cbactions deploy` creates and the worker starts builds of.',
    `  projectName: ${quote(answers.projectName)}`,
    ...(answers.region === undefined ? ['  # region: us-east-1'] : [`  region: ${quote(answers.region)}`]),
    '',
    'payloads:',
    "  # Sealed jobs. `cbactions deploy` replaces both with the stack's own KMS key and S3 bucket",
    '  # (keeping the prefix). For `cbactions local`: key: { local: { file: … } }, store: { local: { dir: … } }.',
    '  key: { kms: { keyId: alias/cbactions-payloads } }',
    '  store: { s3: { bucket: cbactions-payloads, prefix: payloads/ } }',
    '',
    '# Runner pools: a workflow job picks one with `runs-on: [self-hosted, <labels>]`.',
    'pools:',
    ...pools,
    '',
    "# Admission policy: decided for each job from its own context (repository, event, ref, workflow,",
    '# actor, fork pull request) before any build starts. Rules in order, the first match decides;',
    '# check a job against it with `cbactions policy explain --config THIS_FILE --job JOB.json`.',
    'policy:',
    '  forkProtection: true             # fork pull requests never run privileged nor under a rule\'s role',
    '  defaultEffect: run               # when no rule matches (refuse: only what a rule allows runs)',
    '  # roles:                         # roles rules may name (an existing role; its unique id binds payloads)',
    '  #   deployer: { arn: arn:aws:iam::123456789012:role/ci-deployer, roleId: AROAEXAMPLEROLEID03 }',
    '  rules: []',
    '  # rules:',
    '  #   - name: no-archived          # refuse, with the reason shown on the job in GitHub',
    '  #     match: { repository: "my-org/legacy-*" }',
    '  #     effect: refuse',
    '  #     reason: archived repositories do not run CI',
    '  #   - name: deploy-from-main     # only pushes to main of one repository get the deploy role',
    '  #     match: { repository: my-org/app, ref: refs/heads/main, event: [push, workflow_dispatch] }',
    '  #     role: deployer',
    '  #   - name: nightly-large        # bigger machines for scheduled runs (the pool must list computeType in overridable)',
    '  #     match: { event: [schedule] }',
    '  #     build: { computeType: BUILD_GENERAL1_LARGE }',
    '',
    '# Only `cbactions deploy` reads this section.',
    'deploy:',
    `  stackName: ${quote(answers.stackName)}`,
    '  # account: "123456789012"',
    '  tasks: 1                         # listener tasks; each runs every pool\'s slots',
    '  # scaling: { minTasks: 1, maxTasks: 4 }   # instead of tasks: ECS auto scaling on demand',
    '  # network:                       # default: a new VPC with public subnets, no NAT gateway',
    '  #   vpcId: vpc-0123456789abcdef0',
    '  #   subnets:',
    '  #     - { subnetId: subnet-0123456789abcdef0, availabilityZone: us-east-1a }',
    '  #     - { subnetId: subnet-0fedcba987654321f, availabilityZone: us-east-1b }',
    '  #   assignPublicIp: false',
    '  #   codebuild: false             # true: builds run in these (private, NAT-routed) subnets too',
    '  logRetentionDays: 30',
    '  events: true                     # EventBridge build state changes → SQS → faster job completion',
    '  # alarmEmail: ops@example.com',
    '  # buildRole:                     # what your jobs may do in AWS',
    '  #   managedPolicyArns: [arn:aws:iam::aws:policy/ReadOnlyAccess]',
    '  #   statements:',
    '  #     - { actions: ["s3:GetObject"], resources: ["arn:aws:s3:::my-bucket/*"] }',
    '',
  ].join('\n');
}

async function answer(io: InitIo, question: string, fallback?: string): Promise<string> {
  if (io.ask === undefined) {
    if (fallback !== undefined) return fallback;
    throw usage(`${question.replace(/\?.*$/, '')}: not given, and stdin is not a terminal to ask`);
  }
  const reply = (await io.ask(`${question}${fallback === undefined ? '' : ` [${fallback}]`} `)).trim();
  return reply === '' && fallback !== undefined ? fallback : reply;
}

/** Flags first; a terminal is asked for the rest; without one, missing required flags are errors. */
export async function collectAnswers(options: InitOptions, io: InitIo): Promise<InitAnswers> {
  const scopeText = options.scope ?? (io.ask === undefined ? undefined : await answer(io, 'GitHub scope (org:NAME, repo:OWNER/NAME or enterprise:SLUG)?'));
  if (scopeText === undefined) throw usage('--scope is required when stdin is not a terminal (org:NAME, repo:OWNER/NAME or enterprise:SLUG)');
  const scope = parseScope(scopeText);
  const authText = options.auth ?? (await answer(io, 'Authenticate as a GitHub App or with a personal access token (app/pat)?', 'app'));
  let auth: InitAnswers['auth'];
  if (authText === 'pat') auth = { kind: 'pat' };
  else if (authText === 'app') {
    const appId = options.appId ?? (io.ask === undefined ? undefined : await answer(io, 'GitHub App id?'));
    if (appId === undefined) throw usage('--app-id is required with --auth app when stdin is not a terminal');
    if (!/^[1-9]\d{0,11}$/.test(appId)) throw usage(`--app-id: expected the App's numeric id, got "${appId}"`);
    auth = { kind: 'app', appId };
  } else throw usage(`--auth: expected app or pat, got "${authText}"`);
  let poolSpecs = options.pool ?? [];
  if (poolSpecs.length === 0) {
    const labels = await answer(io, 'Labels of the first runner pool (comma-separated)?', 'cbactions');
    poolSpecs = [`default=${labels}`];
  }
  const pools = poolSpecs.map(parsePoolSpec);
  const seen = new Set<string>();
  for (const pool of pools) {
    if (seen.has(pool.name)) throw usage(`--pool: the name "${pool.name}" is used twice`);
    seen.add(pool.name);
  }
  return {
    scope,
    auth,
    pools,
    projectName: options.projectName ?? 'cbactions',
    stackName: options.stackName ?? 'cbactions',
    ...(options.region === undefined ? {} : { region: options.region }),
  };
}

/**
 * `cbactions init`: writes a commented starter config that `loadConfigFile` accepts.
 * Refuses to overwrite an existing file.
 */
export async function runInit(options: InitOptions, io: InitIo): Promise<number> {
  try {
    const answers = await collectAnswers(options, io);
    const text = renderStarterConfig(answers);
    // The file must load as written: a flag value the schema refuses is reported here, by field.
    parseConfig(parseYaml(text), 'the generated config');
    const output = resolve(options.output ?? DEFAULT_INIT_OUTPUT);
    try {
      await writeFile(output, text, { flag: 'wx', mode: 0o644 });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') throw usage(`${output} already exists; not overwriting it (choose another --output)`);
      throw new CbactionsError('INIT_WRITE_FAILED', `cannot write ${output}: ${(error as Error).message}`, { cause: error });
    }
    io.stdout(`wrote ${output}\nnext: review it (GitHub credential, pools, deploy), then check it offline with\n  cbactions deploy --config ${output} --dry-run\n`);
    return ExitCode.Ok;
  } catch (error) {
    if (!isCbactionsError(error)) throw error;
    io.stderr(`cbactions init: ${error.message}\n`);
    return error.code.startsWith('CONFIG_') ? ExitCode.UsageOrConfig : ExitCode.InfrastructureFailure;
  }
}

/** Wires `cbactions init` to the terminal: asks only when stdin is a TTY. */
export async function runInitCommand(options: InitOptions): Promise<number> {
  const io: InitIo = { stdout: (text) => process.stdout.write(text), stderr: (text) => process.stderr.write(text) };
  if (!process.stdin.isTTY) return runInit(options, io);
  const readline = createInterface({ input: process.stdin, output: process.stdout });
  try {
    return await runInit(options, { ...io, ask: (question) => readline.question(question) });
  } finally {
    readline.close();
  }
}
