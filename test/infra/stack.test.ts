import { Match } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import type { ConfigInput } from '../../src/config/schema.js';
import { FilterPatterns, LogEvents } from '../../src/infra/monitoring.js';
import {
  actionsOf,
  BUILDSPEC,
  configInput,
  fakeRoleId,
  logicalId,
  nagFindings,
  onlyResource,
  resolveIntrinsics,
  resourcesOfType,
  roleStatements,
  synth,
  type Statement,
  type Synthesized,
} from './helpers.js';

const USERID = '${aws:userid}';

/**
 * The full-featured deployment: a privileged pool, an ARM pool with a role of its own, a
 * pool on an existing role, build events, an alarm e-mail.
 */
const FULL = configInput({
  pools: [
    { name: 'default', labels: ['cbactions'], slots: 2, build: { privileged: true } },
    { name: 'arm', labels: ['cbactions-arm'], build: { environmentType: 'ARM_CONTAINER', computeType: 'BUILD_GENERAL1_LARGE' } },
    { name: 'legacy', labels: ['legacy'], build: { serviceRole: { arn: 'arn:aws:iam::123456789012:role/legacy-builds', roleId: 'AROAEXISTINGROLE1234' } } },
  ],
  deploy: {
    stackName: 'cbactions-test',
    tasks: 2,
    alarmEmail: 'ops@example.com',
    pools: { arm: { serviceRole: { managedPolicyArns: ['arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess'], statements: [{ actions: ['sqs:SendMessage'], resources: ['arn:aws:sqs:eu-west-1:123456789012:jobs'] }] } } },
  },
});

let full: Synthesized;
let ids: { key: string; bucket: string; buildRole: string; taskRole: string; armRole: string; project: string; cluster: string; muxLogs: string };

beforeAll(() => {
  full = synth(FULL);
  const { stack } = full;
  const c = stack.cbactions;
  ids = {
    key: logicalId(stack, c.payloadKey),
    bucket: logicalId(stack, c.payloadBucket),
    buildRole: logicalId(stack, c.buildRole),
    taskRole: logicalId(stack, c.taskRole),
    armRole: logicalId(stack, c.poolBuildRoles.get('arm')),
    project: logicalId(stack, c.project),
    cluster: logicalId(stack, c.cluster),
    muxLogs: logicalId(stack, c.muxLogGroup),
  };
});

function objectArn(suffix: string): unknown {
  return { 'Fn::Join': ['', [{ 'Fn::GetAtt': [ids.bucket, 'Arn'] }, `/jobs/${suffix}`]] };
}

function kmsStatements(statements: Statement[]): Statement[] {
  return statements.filter((statement) => actionsOf(statement).some((action) => action.startsWith('kms:')));
}

describe('build roles: a build reaches only its own payload', () => {
  for (const role of ['buildRole', 'armRole'] as const) {
    it(`${role}: S3 GetObject/DeleteObject only on <prefix>\${aws:userid} and its .cancel marker, GetObject on its .lease`, () => {
      // The build kit's one object is checked in build-kit.test.ts.
      const statements = roleStatements(full.json, ids[role]).filter((statement) => statement.Sid !== 'ReadBuildKit');
      const s3 = statements.filter((statement) => actionsOf(statement).some((action) => action.startsWith('s3:')));
      const objectStatements = s3.filter((statement) => !actionsOf(statement).includes('s3:ListBucket'));
      expect(objectStatements).toEqual([
        { Sid: 'OwnPayloadOnly', Effect: 'Allow', Action: ['s3:GetObject', 's3:DeleteObject'], Resource: [objectArn(USERID), objectArn(`${USERID}.cancel`)] },
        { Sid: 'ReadOwnLeaseOnly', Effect: 'Allow', Action: 's3:GetObject', Resource: objectArn(`${USERID}.lease`) },
      ]);
      const list = s3.find((statement) => actionsOf(statement).includes('s3:ListBucket'));
      expect(list?.Condition).toEqual({ StringEquals: { 's3:prefix': [`jobs/${USERID}`, `jobs/${USERID}.cancel`, `jobs/${USERID}.lease`] } });
    });

    it(`${role}: kms:Decrypt only with cbactions:userid = \${aws:userid} (or S3's decrypt of that same object)`, () => {
      const statements = kmsStatements(roleStatements(full.json, ids[role]));
      expect(statements.length).toBe(2);
      for (const statement of statements) {
        expect(actionsOf(statement)).toEqual(['kms:Decrypt']);
        expect(statement.Resource).toEqual({ 'Fn::GetAtt': [ids.key, 'Arn'] });
      }
      expect(statements.find((statement) => statement.Sid === 'DecryptOwnDataKeyOnly')?.Condition).toEqual({
        StringEquals: { 'kms:EncryptionContext:cbactions:userid': USERID },
      });
      expect(statements.find((statement) => statement.Sid === 'DecryptOwnPayloadObjectOnly')?.Condition).toEqual({
        StringEquals: {
          'kms:ViaService': { 'Fn::Join': ['', ['s3.', { Ref: 'AWS::Region' }, '.', { Ref: 'AWS::URLSuffix' }]] },
          'kms:EncryptionContext:aws:s3:arn': [objectArn(USERID), objectArn(`${USERID}.cancel`), objectArn(`${USERID}.lease`)],
        },
      });
    });

    it(`${role}: writes only to the build log group (plus CodeBuild's defaults)`, () => {
      const logs = roleStatements(full.json, ids[role]).filter((statement) => actionsOf(statement).some((action) => action.startsWith('logs:')));
      expect(logs).toContainEqual(expect.objectContaining({ Action: ['logs:CreateLogStream', 'logs:PutLogEvents'], Resource: { 'Fn::GetAtt': [logicalId(full.stack, full.stack.cbactions.buildLogGroup), 'Arn'] } }));
    });
  }

  it('no build role may read the bucket or use the key beyond that', () => {
    for (const role of [ids.buildRole, ids.armRole]) {
      for (const statement of roleStatements(full.json, role)) {
        const text = JSON.stringify(statement.Resource);
        if (text.includes(ids.bucket) && !actionsOf(statement).includes('s3:ListBucket')) expect(text).toContain(USERID);
        if (text.includes(ids.key)) expect(statement.Condition).toBeDefined();
      }
    }
  });

  it('the pool role carries the operator\'s own permissions; the project role does not', () => {
    const arm = roleStatements(full.json, ids.armRole);
    expect(arm).toContainEqual(expect.objectContaining({ Action: 'sqs:SendMessage', Resource: 'arn:aws:sqs:eu-west-1:123456789012:jobs' }));
    expect(roleStatements(full.json, ids.buildRole).some((statement) => actionsOf(statement).includes('sqs:SendMessage'))).toBe(false);
    full.template.hasResourceProperties('AWS::IAM::Role', {
      ManagedPolicyArns: ['arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess'],
      AssumeRolePolicyDocument: {
        Statement: [
          Match.objectLike({
            Principal: { Service: 'codebuild.amazonaws.com' },
            Condition: { StringEquals: { 'aws:SourceAccount': { Ref: 'AWS::AccountId' } }, ArnLike: { 'aws:SourceArn': Match.anyValue() } },
          }),
        ],
      },
    });
  });

  it('an existing pool role gets the same payload statements, attached by name', () => {
    const policies = resourcesOfType(full.json, 'AWS::IAM::Policy').filter(([, policy]) => JSON.stringify((policy.Properties as Record<string, unknown>).Roles).includes('legacy-builds'));
    expect(policies).toHaveLength(1);
    const statements = ((policies[0]?.[1].Properties as Record<string, unknown>).PolicyDocument as { Statement: Statement[] }).Statement;
    expect(statements.find((statement) => statement.Sid === 'OwnPayloadOnly')?.Resource).toEqual([objectArn(USERID), objectArn(`${USERID}.cancel`)]);
    expect(statements.find((statement) => statement.Sid === 'DecryptOwnDataKeyOnly')?.Condition).toEqual({ StringEquals: { 'kms:EncryptionContext:cbactions:userid': USERID } });
  });
});

describe('task role: least privilege for the mux and its workers', () => {
  let statements: Statement[];
  beforeAll(() => {
    statements = roleStatements(full.json, ids.taskRole);
  });
  const sid = (name: string) => statements.find((statement) => statement.Sid === name);

  it('starts, watches and stops builds of its own project only', () => {
    expect(sid('RunBuildsOfOwnProject')).toEqual({
      Sid: 'RunBuildsOfOwnProject',
      Effect: 'Allow',
      Action: ['codebuild:StartBuild', 'codebuild:BatchGetBuilds', 'codebuild:StopBuild'],
      Resource: { 'Fn::GetAtt': [ids.project, 'Arn'] },
    });
    const codebuildActions = statements.flatMap(actionsOf).filter((action) => action.startsWith('codebuild:'));
    expect(codebuildActions.sort()).toEqual(['codebuild:BatchGetBuilds', 'codebuild:StartBuild', 'codebuild:StopBuild']);
  });

  it('mints data keys only with both cbactions encryption-context keys', () => {
    expect(sid('SealForOneBuild')).toEqual({
      Sid: 'SealForOneBuild',
      Effect: 'Allow',
      Action: 'kms:GenerateDataKey',
      Resource: { 'Fn::GetAtt': [ids.key, 'Arn'] },
      Condition: {
        'ForAllValues:StringEquals': { 'kms:EncryptionContextKeys': ['cbactions:build-id', 'cbactions:userid'] },
        Null: { 'kms:EncryptionContext:cbactions:build-id': 'false', 'kms:EncryptionContext:cbactions:userid': 'false' },
      },
    });
    expect(sid('EncryptPayloadObjects')?.Condition).toEqual({
      StringEquals: { 'kms:ViaService': { 'Fn::Join': ['', ['s3.', { Ref: 'AWS::Region' }, '.', { Ref: 'AWS::URLSuffix' }]] } },
      StringLike: { 'kms:EncryptionContext:aws:s3:arn': objectArn('*') },
    });
    // Never Decrypt: the task seals, only builds open.
    expect(statements.flatMap(actionsOf)).not.toContain('kms:Decrypt');
  });

  it('writes and deletes payloads under the prefix only, and can not read them', () => {
    expect(sid('WritePayloads')).toMatchObject({ Action: ['s3:PutObject', 's3:DeleteObject'], Resource: objectArn('*') });
    expect(statements.flatMap(actionsOf)).not.toContain('s3:GetObject');
  });

  it('passes exactly the build roles, to CodeBuild only', () => {
    expect(sid('PassBuildRolesToCodeBuild')).toEqual({
      Sid: 'PassBuildRolesToCodeBuild',
      Effect: 'Allow',
      Action: 'iam:PassRole',
      Resource: [{ 'Fn::GetAtt': [ids.buildRole, 'Arn'] }, { 'Fn::GetAtt': [ids.armRole, 'Arn'] }, 'arn:aws:iam::123456789012:role/legacy-builds'],
      Condition: { StringEquals: { 'iam:PassedToService': 'codebuild.amazonaws.com' } },
    });
  });

  it('may set scale-in protection on its own cluster\'s tasks', () => {
    expect(sid('ProtectOwnTasks')).toEqual({
      Sid: 'ProtectOwnTasks',
      Effect: 'Allow',
      Action: ['ecs:UpdateTaskProtection', 'ecs:GetTaskProtection'],
      Resource: { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':ecs:', { Ref: 'AWS::Region' }, ':', { Ref: 'AWS::AccountId' }, ':task/', { Ref: ids.cluster }, '/*']] },
    });
  });

  it('reads the GitHub secret and consumes the build events queue', () => {
    const secret = logicalId(full.stack, full.stack.cbactions.createdGithubSecret);
    expect(statements).toContainEqual(expect.objectContaining({ Action: ['secretsmanager:GetSecretValue', 'secretsmanager:DescribeSecret'], Resource: { Ref: secret } }));
    expect(statements).toContainEqual(
      expect.objectContaining({ Action: ['sqs:ReceiveMessage', 'sqs:DeleteMessage'], Resource: { 'Fn::GetAtt': [logicalId(full.stack, full.stack.cbactions.eventsQueue), 'Arn'] } }),
   );
  });

  it('is assumable by ECS tasks of this account only', () => {
    full.template.hasResourceProperties('AWS::IAM::Role', {
      AssumeRolePolicyDocument: { Statement: [Match.objectLike({ Principal: { Service: 'ecs-tasks.amazonaws.com' }, Condition: { StringEquals: { 'aws:SourceAccount': { Ref: 'AWS::AccountId' } } } })] },
    });
  });
});

describe('payload key and bucket', () => {
  it('the key rotates', () => {
    expect((full.json.Resources as Record<string, { Properties: Record<string, unknown> }>)[ids.key]?.Properties.EnableKeyRotation).toBe(true);
  });

  /** Every role a build may run as: the project's, the ARM pool's own, the legacy pool's existing one. */
  function buildRoleArns(): unknown[] {
    return [{ 'Fn::GetAtt': [ids.buildRole, 'Arn'] }, { 'Fn::GetAtt': [ids.armRole, 'Arn'] }, 'arn:aws:iam::123456789012:role/legacy-builds'];
  }

  it("the bucket policy's Deny guards name every build role (isolation that survives broad grants; iam-evaluation.test.ts evaluates them)", () => {
    const [, policy] = resourcesOfType(full.json, 'AWS::S3::BucketPolicy').find(([, resource]) => JSON.stringify((resource.Properties as Record<string, unknown>).Bucket).includes(ids.bucket)) ?? [];
    const statements = ((policy?.Properties as Record<string, unknown>).PolicyDocument as { Statement: Statement[] }).Statement;
    const guards = statements.filter((statement) => statement.Sid?.startsWith('Builds'));
    expect(guards.map((statement) => statement.Sid)).toEqual([
      'BuildsReachOnlyTheirOwnObjects',
      'BuildsOnlyGetOrDeleteTheirPayloadAndCancelMarker',
      'BuildsOnlyReadTheirLease',
      'BuildsChangeNothingOfTheBucket',
      'BuildsListOnlyTheirOwnKeys',
    ]);
    for (const guard of guards) {
      expect(guard.Effect).toBe('Deny');
      expect(guard.Condition?.ArnEquals).toEqual({ 'aws:PrincipalArn': buildRoleArns() });
    }
  });

  it("the key policy gives the account administration only; cryptography goes to cbactions' roles, and builds are denied everything but their own Decrypt", () => {
    const keyPolicy = (full.json.Resources as Record<string, { Properties: { KeyPolicy: { Statement: Statement[] } } }>)[ids.key]?.Properties.KeyPolicy.Statement ?? [];
    const bySid = new Map(keyPolicy.map((statement) => [statement.Sid, statement]));
    expect([...bySid.keys()]).toEqual(['KeyAdministrationByTheAccount', 'SealingByTheListenerTask', 'OpeningByBuilds', 'BuildsDoNothingButDecrypt', 'BuildsDecryptOnlyTheirOwn']);
    const administration = actionsOf(bySid.get('KeyAdministrationByTheAccount')!);
    for (const crypto of ['kms:*', 'kms:Decrypt', 'kms:Encrypt', 'kms:GenerateDataKey', 'kms:GenerateDataKey*', 'kms:ReEncrypt*', 'kms:CreateGrant', 'kms:Create*']) {
      expect(administration).not.toContain(crypto);
    }
    expect(bySid.get('SealingByTheListenerTask')).toMatchObject({ Action: 'kms:GenerateDataKey', Condition: { ArnEquals: { 'aws:PrincipalArn': [{ 'Fn::GetAtt': [ids.taskRole, 'Arn'] }] } } });
    expect(bySid.get('OpeningByBuilds')).toMatchObject({ Action: 'kms:Decrypt', Condition: { ArnEquals: { 'aws:PrincipalArn': buildRoleArns() } } });
    for (const sid of ['BuildsDoNothingButDecrypt', 'BuildsDecryptOnlyTheirOwn']) {
      expect(bySid.get(sid)?.Effect).toBe('Deny');
      expect(bySid.get(sid)?.Condition?.ArnEquals).toEqual({ 'aws:PrincipalArn': buildRoleArns() });
    }
    expect(bySid.get('BuildsDecryptOnlyTheirOwn')?.Condition?.StringNotEquals).toEqual({ 'kms:EncryptionContext:cbactions:userid': USERID });
  });

  it('the bucket: SSE-KMS with the key (no bucket key), public access blocked, 1-day expiry, access logs', () => {
    full.template.hasResourceProperties('AWS::S3::Bucket', {
      BucketEncryption: {
        ServerSideEncryptionConfiguration: [
          { BucketKeyEnabled: false, ServerSideEncryptionByDefault: { SSEAlgorithm: 'aws:kms', KMSMasterKeyID: { 'Fn::GetAtt': [ids.key, 'Arn'] } } },
        ],
      },
      PublicAccessBlockConfiguration: { BlockPublicAcls: true, BlockPublicPolicy: true, IgnorePublicAcls: true, RestrictPublicBuckets: true },
      LifecycleConfiguration: { Rules: [Match.objectLike({ ExpirationInDays: 1, AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 }, Status: 'Enabled' })] },
      LoggingConfiguration: { DestinationBucketName: { Ref: logicalId(full.stack, full.stack.cbactions.accessLogBucket) }, LogFilePrefix: 'payloads/' },
      VersioningConfiguration: Match.absent(),
    });
  });

  it('the bucket refuses anything but TLS', () => {
    full.template.hasResourceProperties('AWS::S3::BucketPolicy', {
      Bucket: { Ref: ids.bucket },
      PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({ Effect: 'Deny', Action: 's3:*', Condition: { Bool: { 'aws:SecureTransport': 'false' } } })]) },
    });
  });
});

describe('listener service', () => {
  it('on-demand Fargate (no Spot), over the subnets of two zones, with a deployment that works with task protection', () => {
    const [, service] = onlyResource(full.json, 'AWS::ECS::Service');
    const properties = service.Properties as Record<string, unknown>;
    expect(properties.LaunchType).toBe('FARGATE');
    expect(properties.CapacityProviderStrategy).toBeUndefined();
    expect(JSON.stringify(full.json)).not.toContain('FARGATE_SPOT');
    expect(properties.DesiredCount).toBe(2);
    expect(properties.DeploymentConfiguration).toMatchObject({
      MinimumHealthyPercent: 100,
      MaximumPercent: 200,
      DeploymentCircuitBreaker: { Enable: true, Rollback: true },
    });
    expect(properties.AvailabilityZoneRebalancing).toBe('DISABLED');
    const network = (properties.NetworkConfiguration as { AwsvpcConfiguration: { Subnets: unknown[]; AssignPublicIp: string } }).AwsvpcConfiguration;
    expect(network.Subnets).toHaveLength(2);
    expect(network.AssignPublicIp).toBe('ENABLED');
  });

  it('the container: `mux --config`, 120 s stop timeout, init process, /healthz health check, config as JSON, non-blocking logs', () => {
    full.template.hasResourceProperties('AWS::ECS::TaskDefinition', {
      RequiresCompatibilities: ['FARGATE'],
      Cpu: '1024',
      Memory: '2048',
      RuntimePlatform: { CpuArchitecture: 'X86_64', OperatingSystemFamily: 'LINUX' },
      ContainerDefinitions: [
        Match.objectLike({
          Command: ['mux', '--config', '/etc/cbactions/config.json'],
          StopTimeout: 120,
          LinuxParameters: { InitProcessEnabled: true },
          Essential: true,
          HealthCheck: {
            Command: ['CMD', 'node', '-e', Match.stringLikeRegexp('^fetch\\("http://127\\.0\\.0\\.1:8080/healthz"')],
            StartPeriod: 120,
            Interval: 30,
            Timeout: 10,
            Retries: 3,
          },
          Environment: [
            Match.objectLike({ Name: 'CBACTIONS_CONFIG_JSON' }),
            { Name: 'CBACTIONS_CONFIG', Value: '/etc/cbactions/config.json' },
            { Name: 'CBACTIONS_EVENTS_QUEUE_URL', Value: { Ref: logicalId(full.stack, full.stack.cbactions.eventsQueue) } },
          ],
          LogConfiguration: Match.objectLike({ LogDriver: 'awslogs', Options: Match.objectLike({ mode: 'non-blocking', 'awslogs-group': { Ref: ids.muxLogs } }) }),
        }),
      ],
    });
  });

  it('the cluster has Container Insights', () => {
    full.template.hasResourceProperties('AWS::ECS::Cluster', { ClusterSettings: [{ Name: 'containerInsights', Value: 'enabled' }] });
  });
});

describe('runtime config delivered to the task', () => {
  let runtime: Record<string, unknown>;
  beforeAll(() => {
    const [, definition] = onlyResource(full.json, 'AWS::ECS::TaskDefinition');
    const container = ((definition.Properties as Record<string, unknown>).ContainerDefinitions as { Environment: { Name: string; Value: unknown }[] }[])[0];
    const value = container?.Environment.find((entry) => entry.Name === 'CBACTIONS_CONFIG_JSON')?.Value;
    runtime = JSON.parse(String(resolveIntrinsics(value, full.json))) as Record<string, unknown>;
  });

  it('loads with the one config schema', () => {
    expect(() => parseConfig(runtime, 'runtime config')).not.toThrow();
    expect(runtime.deploy).toBeUndefined();
  });

  it('points at the stack\'s key, bucket (prefix kept), project and region', () => {
    const config = parseConfig(runtime);
    expect(config.payloads).toEqual({ key: { kms: { keyId: `arn:aws:kms:eu-west-1:123456789012:key/${ids.key}` } }, store: { s3: { bucket: `ref-${ids.bucket.toLowerCase()}`, prefix: 'jobs/' } } });
    expect(config.codebuild).toEqual({ projectName: `ref-${ids.project.toLowerCase()}`, region: 'eu-west-1' });
  });

  it('names each pool\'s build role with its unique id, so payloads bind to <roleId>:AWSCodeBuild-<uuid>', () => {
    const config = parseConfig(runtime);
    const roleOf = (name: string) => config.pools.find((pool) => pool.name === name)?.build.serviceRole;
    expect(roleOf('default')).toEqual({ arn: `arn:aws:iam::123456789012:role/${ids.buildRole}`, roleId: expect.stringMatching(/^AROA/) });
    expect(roleOf('default')?.roleId).toBe(fakeRoleId(ids.buildRole));
    expect(roleOf('arm')?.roleId).toBe(fakeRoleId(ids.armRole));
    expect(roleOf('legacy')).toEqual({ arn: 'arn:aws:iam::123456789012:role/legacy-builds', roleId: 'AROAEXISTINGROLE1234' });
  });

  it('gives ARM pools the arm64 build image, pulled with the service role', () => {
    const config = parseConfig(runtime);
    const arm = config.pools.find((pool) => pool.name === 'arm');
    expect(arm?.build.image).toMatch(/container-assets/);
    expect(arm?.build.imagePullCredentials).toBe('SERVICE_ROLE');
    expect(config.pools.find((pool) => pool.name === 'default')?.build.image).toBeUndefined();
  });

  it("carries each pool's warm section, so the task keeps the standby builds the config asks for; cdk-nag has nothing to add", () => {
    const pool: ConfigInput['pools'][number] = { name: 'default', labels: ['cbactions'], warm: { standby: 2, maxWaitMinutes: 5, windows: [{ days: ['mon', 'tue', 'wed', 'thu', 'fri'], from: '08:00', to: '18:00' }] } };
    const warmStack = synth(configInput({ pools: [pool], deploy: { images: { listener: 'public.ecr.aws/example/listener:1', build: 'public.ecr.aws/example/build:1' } } }));
    const [, definition] = onlyResource(warmStack.json, 'AWS::ECS::TaskDefinition');
    const container = ((definition.Properties as Record<string, unknown>).ContainerDefinitions as { Environment: { Name: string; Value: unknown }[] }[])[0];
    const delivered = parseConfig(JSON.parse(String(resolveIntrinsics(container?.Environment.find((entry) => entry.Name === 'CBACTIONS_CONFIG_JSON')?.Value, warmStack.json))) as Record<string, unknown>);
    expect(delivered.pools[0]?.warm).toEqual(pool.warm);
    // Standbys need in-process dispatch (the schema refuses them with worker dispatch).
    expect(delivered.mux.dispatch).toBe('in-process');
    expect(nagFindings(warmStack.annotations)).toEqual([]);
  });

  it('reads the GitHub credential from the secret the stack created', () => {
    const config = parseConfig(runtime);
    expect(config.github.auth).toEqual({ app: { appId: 1234, privateKey: { secretsManager: `ref-${logicalId(full.stack, full.stack.cbactions.createdGithubSecret).toLowerCase()}` } } });
  });
});

describe('CodeBuild project', () => {
  it('runs the repository buildspec inline, without source, privileged for Docker, logging to its log group', () => {
    full.template.hasResourceProperties('AWS::CodeBuild::Project', {
      Name: 'cbactions-test',
      Source: { Type: 'NO_SOURCE', BuildSpec: BUILDSPEC },
      Artifacts: { Type: 'NO_ARTIFACTS' },
      Environment: Match.objectLike({
        PrivilegedMode: true,
        ImagePullCredentialsType: 'SERVICE_ROLE',
        EnvironmentVariables: [
          { Name: 'CBACTIONS_RUNNER_ROOT', Type: 'PLAINTEXT', Value: '/actions-runner' },
          { Name: 'CBACTIONS_KIT_S3_URI', Type: 'PLAINTEXT', Value: { 'Fn::Sub': Match.stringLikeRegexp('^s3://cdk-[a-z0-9]+-assets-\\$\\{AWS::AccountId\\}-\\$\\{AWS::Region\\}/[0-9a-f]{64}\\.zip$') } },
        ],
      }),
      LogsConfig: { CloudWatchLogs: { GroupName: { Ref: logicalId(full.stack, full.stack.cbactions.buildLogGroup) }, Status: 'ENABLED' } },
      ServiceRole: { 'Fn::GetAtt': [ids.buildRole, 'Arn'] },
      TimeoutInMinutes: 360,
    });
    const [, project] = onlyResource(full.json, 'AWS::CodeBuild::Project');
    expect(JSON.stringify((project.Properties as Record<string, unknown>).EncryptionKey)).toContain(':alias/aws/s3');
  });

  it('the project is never encrypted with the payload key (that would grant unconditional Decrypt)', () => {
    const [, project] = onlyResource(full.json, 'AWS::CodeBuild::Project');
    expect(JSON.stringify((project.Properties as Record<string, unknown>).EncryptionKey)).not.toContain(ids.key);
  });
});

describe('logs, events, alarms, dashboard', () => {
  it('every log group has the configured retention', () => {
    const groups = resourcesOfType(full.json, 'AWS::Logs::LogGroup');
    expect(groups.length).toBeGreaterThanOrEqual(3);
    for (const [, group] of groups) expect((group.Properties as Record<string, unknown>).RetentionInDays).toBe(30);
  });

  it('build state changes of the project go to an encrypted, TLS-only queue', () => {
    full.template.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: { source: ['aws.codebuild'], 'detail-type': ['CodeBuild Build State Change'], detail: { 'project-name': [{ Ref: ids.project }] } },
      Targets: [Match.objectLike({ Arn: { 'Fn::GetAtt': [logicalId(full.stack, full.stack.cbactions.eventsQueue), 'Arn'] } })],
    });
    full.template.hasResourceProperties('AWS::SQS::Queue', { SqsManagedSseEnabled: true, MessageRetentionPeriod: 3600 });
    full.template.hasResourceProperties('AWS::SQS::QueuePolicy', {
      PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } })]) },
    });
  });

  it('metric filters match the mux log events by name', () => {
    expect(LogEvents).toEqual({ ListenerExited: 'mux.listener-exited', WorkerFailed: 'worker.failed', PoolStopped: 'mux.pool-stopped' });
    const patterns = resourcesOfType(full.json, 'AWS::Logs::MetricFilter').map(([, filter]) => (filter.Properties as Record<string, unknown>).FilterPattern);
    expect(patterns.sort()).toEqual(
      [
        '{ ($.event = "mux.listener-exited") && ($.expected IS FALSE) }',
        '{ $.event = "worker.failed" }',
        '{ $.event = "mux.pool-stopped" }',
      ].sort(),
   );
    expect(FilterPatterns.failedDispatches.logPatternString).toBe('{ $.event = "worker.failed" }');
    full.template.hasResourceProperties('AWS::Logs::MetricFilter', {
      LogGroupName: { Ref: ids.muxLogs },
      MetricTransformations: [{ MetricNamespace: 'cbactions/cbactions-test', MetricName: 'ListenerRestarts', MetricValue: '1', DefaultValue: 0 }],
    });
  });

  it('alarms on listener restarts, failed dispatches and stopped pools notify the alarm topic', () => {
    const alarms = resourcesOfType(full.json, 'AWS::CloudWatch::Alarm').map(([, alarm]) => alarm.Properties as Record<string, unknown>);
    expect(alarms.map((alarm) => alarm.MetricName).sort()).toEqual(['FailedDispatches', 'ListenerRestarts', 'PoolsStopped']);
    const topic = logicalId(full.stack, full.stack.cbactions.alarmTopic);
    for (const alarm of alarms) expect(alarm.AlarmActions).toEqual([{ Ref: topic }]);
    expect(alarms.find((alarm) => alarm.MetricName === 'ListenerRestarts')).toMatchObject({ Threshold: 3, Period: 300, ComparisonOperator: 'GreaterThanOrEqualToThreshold', TreatMissingData: 'notBreaching' });
    full.template.hasResourceProperties('AWS::SNS::Subscription', { Protocol: 'email', Endpoint: 'ops@example.com' });
    full.template.hasResourceProperties('AWS::SNS::Topic', { KmsMasterKeyId: Match.anyValue() });
  });

  it('has a dashboard', () => {
    full.template.resourceCountIs('AWS::CloudWatch::Dashboard', 1);
  });

  it("graphs every pool's start latency p50 and p95, cold and warm, and its cost, from the mux's EMF metrics", () => {
    const [, dashboard] = onlyResource(full.json, 'AWS::CloudWatch::Dashboard');
    const body = JSON.parse(String(resolveIntrinsics((dashboard.Properties as { DashboardBody: unknown }).DashboardBody, full.json))) as {
      widgets: { properties: { title?: string; metrics?: unknown[][] } }[];
    };
    const widget = (title: string) => body.widgets.find((candidate) => candidate.properties.title?.startsWith(title))?.properties.metrics ?? [];
    const latency = widget('Job start latency p50/p95');
    for (const pool of ['default', 'arm', 'legacy']) {
      for (const start of ['cold', 'warm']) {
        for (const stat of ['p50', 'p95']) {
          expect(latency).toContainEqual(['cbactions', 'JobStartLatency', 'Pool', pool, 'Start', start, expect.objectContaining({ stat, label: `${pool} ${start} ${stat}` })]);
        }
      }
    }
    expect(latency).toHaveLength(12);
    const cost = widget('Build cost at list price');
    expect(cost).toContainEqual(['cbactions', 'JobCost', 'Pool', 'arm', expect.objectContaining({ stat: 'Sum' })]);
    expect(cost).toContainEqual(['cbactions', 'StandbyCost', 'Pool', 'arm', expect.objectContaining({ stat: 'Sum' })]);
  });
});

describe('cdk-nag', () => {
  it('AwsSolutions reports nothing unsuppressed', () => {
    expect(nagFindings(full.annotations)).toEqual([]);
  });

  it('every suppression says why', () => {
    const metadata = JSON.stringify(full.json);
    const reasons = [...metadata.matchAll(/"reason":"([^"]*)"/g)].map((match) => match[1] ?? '');
    expect(reasons.length).toBeGreaterThan(5);
    for (const reason of reasons) expect(reason.length).toBeGreaterThan(40);
  });
});
