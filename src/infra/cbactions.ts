import { Annotations, CfnOutput, Duration, RemovalPolicy, Size, Stack, Tags } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cloudwatchActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as codebuild from 'aws-cdk-lib/aws-codebuild';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import type * as ecr from 'aws-cdk-lib/aws-ecr';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as events from 'aws-cdk-lib/aws-events';
import * as eventsTargets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as snsSubscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { DeploySchema, fixedTaskCount, type DeployConfig } from '../config/deploy-schema.js';
import type { Config, Pool } from '../config/schema.js';
import { DemandDimension, DemandMetric } from '../mux/demand-metrics.js';
import { METRICS_NAMESPACE } from '../util/emf.js';
import { CbactionsError } from '../util/errors.js';
import { BuildKitAsset } from './build-kit-asset.js';
import { BUILD_KIT_ENV } from './build-kit.js';
import { healthCheckCommand, healthzUrl, HEALTH_CHECK_INTERVAL_SECONDS, HEALTH_CHECK_RETRIES, HEALTH_CHECK_START_PERIOD_SECONDS, HEALTH_CHECK_TIMEOUT_SECONDS } from './health-check.js';
import { applyRolePermissions, bucketGuardStatements, buildPayloadStatements, keyPolicyStatements, taskPayloadStatements, vpcBuildStatements, type PayloadLocation } from './iam.js';
import { ecrRepositoryFor, parseEcrImageUri, repositoryImage } from './images.js';
import { Monitoring } from './monitoring.js';
import { InfraErrorCode, RepoFiles } from './paths.js';
import { githubCredentialSource, payloadPrefix, runtimeConfig, type RuntimeConfig } from './runtime-config.js';

/** Where things are inside the images (docker/*.Dockerfile). */
export const ImagePaths = {
  runnerRoot: '/actions-runner',
  /** The listener entrypoint writes CBACTIONS_CONFIG_JSON here; workers read it via CBACTIONS_CONFIG. */
  configFile: '/etc/cbactions/config.json',
} as const;

/** Environment of the listener task's container. */
export const TaskEnv = {
  /** The runtime config as JSON (no secrets: only references). */
  ConfigJson: 'CBACTIONS_CONFIG_JSON',
  /** Path of the config file, for the mux and for every worker the listeners start. */
  Config: 'CBACTIONS_CONFIG',
  /** SQS queue of "CodeBuild Build State Change" events (only with deploy.events). */
  EventsQueueUrl: 'CBACTIONS_EVENTS_QUEUE_URL',
} as const;

/** Environment of the CodeBuild project (the worker adds the payload references per build). */
export const ProjectEnv = {
  RunnerRoot: 'CBACTIONS_RUNNER_ROOT',
  /** `s3://<bucket>/<key>` of the build kit; the buildspec fetches it when the image has no cbactions. */
  KitS3Uri: BUILD_KIT_ENV,
} as const;

/** Fargate's ceiling for `stopTimeout` (SIGTERM → SIGKILL). */
export const FARGATE_MAX_STOP_TIMEOUT_SECONDS = 120;

export interface CbactionsProps {
  /**
   * The parsed configuration file (`loadConfigFile`/`parseConfig` from src/config/load.ts):
   * the same schema the runtime reads. Its optional `deploy` section holds the settings
   * only this construct uses.
   */
  readonly config: Config;
  /** Text of the repository's buildspec.yml; the project gets it inline (NO_SOURCE builds). */
  readonly buildspec: string;
  /**
   * The repository root after `npm run build`: the Docker build context for the images
   * built at deploy time, and where the build kit (cbactions for stock CodeBuild images) is
   * staged from. Required unless `deploy.images` names both images; without it there is no
   * build kit, so every build image must carry cbactions itself.
   */
  readonly assetDirectory?: string;
  /**
   * actions/runner version the images install (docker/runner-version). Required when an
   * image is built from the repository.
   */
  readonly runnerVersion?: string;
}

interface BuildRoleEntry {
  role: iam.IRole;
  /** `role.roleId` (AROA…), the first half of a build's `aws:userid`. */
  roleId: string;
}

function pascal(name: string): string {
  return name
    .split(/[^A-Za-z0-9]+/)
    .filter((part) => part !== '')
    .map((part) => part[0]?.toUpperCase() + part.slice(1))
    .join('');
}

function invalid(field: string, message: string): CbactionsError {
  return new CbactionsError(InfraErrorCode.Invalid, `${field}: ${message}`);
}

/**
 * How many roles builds may run as. The payload bucket's policy names each in its five Deny
 * guards (about 490 bytes per role at IAM's longest role names), and S3 refuses a bucket
 * policy over 20 KB; 35 leaves room for the rest of the policy and a long bucket name.
 */
export const MAX_BUILD_ROLES = 35;

/** ARM environments that run container images (Lambda compute has images of its own). */
const ARM_ENVIRONMENTS = new Set(['ARM_CONTAINER', 'ARM_EC2']);

/**
 * Everything cbactions runs on in AWS: the listener service (ECS Fargate), the CodeBuild
 * project that runs jobs, the sealed-payload key and bucket, the GitHub credential secret,
 * logs, build events, alarms and a dashboard — with least-privilege roles.
 */
export class Cbactions extends Construct {
  readonly deploy: DeployConfig;
  readonly payloadKey: kms.Key;
  readonly payloadBucket: s3.Bucket;
  readonly accessLogBucket: s3.Bucket;
  readonly project: codebuild.Project;
  readonly buildRole: iam.Role;
  /** Build role per pool name (the project's role for pools without their own). */
  readonly poolBuildRoles: ReadonlyMap<string, iam.IRole>;
  /**
   * Roles policy rules run builds as, by name: those the stack creates (`deploy.roles`) and
   * the existing ones it imports by ARN (`policy.roles`).
   */
  readonly policyRoles: ReadonlyMap<string, iam.IRole>;
  readonly taskRole: iam.Role;
  readonly cluster: ecs.Cluster;
  readonly service: ecs.FargateService;
  /** The service's scalable task count (only with `deploy.scaling`). */
  readonly taskScaling?: ecs.ScalableTaskCount;
  /** The service-wide demand metric the scaling policy tracks (published by every mux, src/mux/demand-metrics.ts). */
  readonly listenerUtilization: cloudwatch.Metric;
  readonly taskDefinition: ecs.FargateTaskDefinition;
  readonly container: ecs.ContainerDefinition;
  readonly muxLogGroup: logs.LogGroup;
  readonly buildLogGroup: logs.LogGroup;
  readonly githubSecret: secretsmanager.ISecret;
  /** The L1 secret when the stack created it (empty, for the operator to fill). */
  readonly createdGithubSecret?: secretsmanager.CfnSecret;
  readonly eventsQueue?: sqs.Queue;
  readonly alarmTopic?: sns.Topic;
  /** cbactions for builds on images without it (absent without `assetDirectory`). */
  readonly buildKit?: BuildKitAsset;
  readonly monitoring: Monitoring;
  readonly vpc: ec2.IVpc;
  /** The config the task runs with (CloudFormation tokens where the stack fills values in). */
  readonly runtimeConfig: RuntimeConfig;

  constructor(scope: Construct, id: string, props: CbactionsProps) {
    super(scope, id);
    // Server access logs are delivered under a bucket policy, not ACLs (the log bucket
    // enforces bucket-owner object ownership). Set here, before any child, for any app.
    this.node.setContext('@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy', true);
    const { config } = props;
    const deploy = config.deploy ?? DeploySchema.parse({});
    this.deploy = deploy;
    const stack = Stack.of(this);
    const retention = deploy.logRetentionDays as logs.RetentionDays;
    const prefix = payloadPrefix(config);
    for (const [key, value] of Object.entries(deploy.tags)) Tags.of(this).add(key, value);

    // ---- Payloads: a KMS key and a bucket that hold each job only until its build reads it.
    this.payloadKey = new kms.Key(this, 'PayloadKey', {
      description: `cbactions ${deploy.stackName}: seals GitHub job payloads for exactly one CodeBuild build`,
      enableKeyRotation: true,
      // Payloads live minutes; nothing sealed under the key outlives the stack.
      removalPolicy: RemovalPolicy.DESTROY,
      pendingWindow: Duration.days(7),
      // Not the default "account: kms:*" policy, which would let any IAM principal of the
      // account decrypt payloads: the statements are added once the roles exist (iam.ts).
      policy: new iam.PolicyDocument(),
    });
    this.accessLogBucket = new s3.Bucket(this, 'AccessLogs', {
      // S3 server access logging delivers only to SSE-S3 buckets.
      encryption: s3.BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      lifecycleRules: [{ id: 'expire-access-logs', expiration: Duration.days(90) }],
      removalPolicy: RemovalPolicy.RETAIN,
    });
    this.payloadBucket = new s3.Bucket(this, 'PayloadBucket', {
      encryption: s3.BucketEncryption.KMS,
      encryptionKey: this.payloadKey,
      // Without a bucket key S3 asks KMS per object, with the object's ARN as encryption
      // context: the build's SSE decrypt permission stays bound to its own object.
      bucketKeyEnabled: false,
      enforceSSL: true,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      // A deleted payload must be gone, not kept as an old version.
      versioned: false,
      serverAccessLogsBucket: this.accessLogBucket,
      serverAccessLogsPrefix: 'payloads/',
      lifecycleRules: [
        // Payloads are deleted when read; one never read (the build never started) expires.
        { id: 'expire-unread-payloads', expiration: Duration.days(1), abortIncompleteMultipartUploadAfter: Duration.days(1) },
      ],
      removalPolicy: RemovalPolicy.DESTROY,
    });
    const where: PayloadLocation = { bucketArn: this.payloadBucket.bucketArn, prefix, keyArn: this.payloadKey.keyArn };

    // ---- Logs.
    this.muxLogGroup = new logs.LogGroup(this, 'MuxLogs', { retention, removalPolicy: RemovalPolicy.DESTROY });
    this.buildLogGroup = new logs.LogGroup(this, 'BuildLogs', { retention, removalPolicy: RemovalPolicy.DESTROY });

    // ---- Network.
    const network = deploy.network;
    let subnets: ec2.SubnetSelection;
    if (network === undefined) {
      // Public subnets only and no NAT gateway: tasks reach GitHub with a public IP, while
      // their security group admits nothing inbound.
      const flowLogs = new logs.LogGroup(this, 'FlowLogs', { retention, removalPolicy: RemovalPolicy.DESTROY });
      this.vpc = new ec2.Vpc(this, 'Vpc', {
        maxAzs: 2,
        natGateways: 0,
        subnetConfiguration: [{ name: 'public', subnetType: ec2.SubnetType.PUBLIC, cidrMask: 24 }],
        flowLogs: { all: { destination: ec2.FlowLogDestination.toCloudWatchLogs(flowLogs), trafficType: ec2.FlowLogTrafficType.ALL } },
        // Restricting the default security group needs a custom-resource Lambda; nothing here uses that group.
        restrictDefaultSecurityGroup: false,
      });
      subnets = { subnetType: ec2.SubnetType.PUBLIC };
    } else {
      const zones = [...new Set(network.subnets.map((subnet) => subnet.availabilityZone))];
      this.vpc = ec2.Vpc.fromVpcAttributes(this, 'Vpc', { vpcId: network.vpcId, availabilityZones: zones });
      subnets = { subnets: network.subnets.map((subnet, index) => ec2.Subnet.fromSubnetAttributes(this, `Subnet${index}`, subnet)) };
      const mostTasks = deploy.scaling?.maxTasks ?? fixedTaskCount(deploy) ?? 1;
      if (zones.length < 2 && mostTasks > 1) {
        Annotations.of(this).addWarningV2(
          'cbactions:single-az',
          `deploy.network.subnets: all subnets are in ${zones[0]}; ${mostTasks} tasks can't spread over availability zones`,
        );
      }
    }
    const buildsInVpc = network?.codebuild === true;
    const buildSecurityGroup = buildsInVpc
      ? new ec2.SecurityGroup(this, 'BuildSecurityGroup', { vpc: this.vpc, description: 'cbactions builds: outbound only', allowAllOutbound: true })
      : undefined;

    // ---- Images.
    // ARM pools (on-demand or on an ARM fleet) can't run the project's x86_64 image.
    const armPools = config.pools.filter((pool) => ARM_ENVIRONMENTS.has(pool.build.environmentType) && pool.build.image === undefined);
    const requireAssets = () => {
      if (props.assetDirectory === undefined) throw invalid('deploy.images', 'no image given and no repository to build one from (assetDirectory)');
      if (props.runnerVersion === undefined) throw invalid('deploy.images', `building images needs the runner version (${RepoFiles.runnerVersion})`);
      return { directory: props.assetDirectory, runnerVersion: props.runnerVersion };
    };
    let buildImage: codebuild.IBuildImage;
    let buildImageRepository: ecr.IRepository | undefined;
    const poolImages = new Map<string, string>();
    if (deploy.images.build === undefined) {
      const assets = requireAssets();
      const asset = repositoryImage(this, 'BuildImage', { ...assets, file: RepoFiles.buildDockerfile, architecture: 'x86_64' });
      buildImage = codebuild.LinuxBuildImage.fromEcrRepository(asset.repository, asset.imageTag);
      buildImageRepository = asset.repository;
      if (armPools.length > 0) {
        // The project's image is x86_64; ARM pools get an arm64 build of the same Dockerfile.
        const armAsset = repositoryImage(this, 'BuildImageArm64', { ...assets, file: RepoFiles.buildDockerfile, architecture: 'arm64' });
        for (const pool of armPools) poolImages.set(pool.name, armAsset.imageUri);
      }
    } else {
      const uri = deploy.images.build;
      const ecrImage = parseEcrImageUri(uri);
      if (ecrImage) {
        buildImageRepository = ecrRepositoryFor(this, 'BuildImageRepository', ecrImage);
        buildImage = codebuild.LinuxBuildImage.fromEcrRepository(buildImageRepository, ecrImage.tagOrDigest);
      } else {
        buildImage = codebuild.LinuxBuildImage.fromDockerRegistry(uri);
      }
      for (const pool of armPools) {
        const index = config.pools.indexOf(pool);
        Annotations.of(this).addWarningV2(
          'cbactions:arm-pool-image',
          `pools[${index}].build.image: pool "${pool.name}" runs on ${pool.build.environmentType} with the project's image ${uri}; that works only if it is a multi-architecture image`,
        );
      }
    }
    // cbactions itself for builds on images without it (a stock CodeBuild image as a pool's
    // build.image): the buildspec fetches this kit when `cbactions` is not on the PATH.
    if (props.assetDirectory !== undefined) {
      this.buildKit = new BuildKitAsset(this, 'BuildKit', { repositoryRoot: props.assetDirectory });
    }
    config.pools.forEach((pool, index) => {
      if (this.buildKit === undefined && pool.build.image !== undefined) {
        Annotations.of(this).addWarningV2(
          'cbactions:pool-image-without-kit',
          `pools[${index}].build.image: pool "${pool.name}" runs on ${pool.build.image}, and without the repository (assetDirectory) there is no build kit: the image must have cbactions on the PATH`,
        );
      }
      if (pool.build.environmentType.endsWith('_LAMBDA_CONTAINER') && pool.build.image === undefined) {
        Annotations.of(this).addWarningV2(
          'cbactions:lambda-pool-image',
          `pools[${index}].build.image: pool "${pool.name}" uses Lambda compute with the project's image; Lambda builds can't run Docker and write only under /tmp, so set an image made for them`,
        );
      }
    });

    // ---- Build roles: the project's, and one per pool that asks for its own.
    const projectArn = stack.formatArn({ service: 'codebuild', resource: 'project', resourceName: config.codebuild.projectName });
    const codebuildPrincipal = () =>
      new iam.ServicePrincipal('codebuild.amazonaws.com', {
        // Only CodeBuild acting for this account's project may assume a build role (confused deputy).
        conditions: { StringEquals: { 'aws:SourceAccount': stack.account }, ArnLike: { 'aws:SourceArn': projectArn } },
      });
    const subnetArns = (): string[] =>
      (network?.subnets ?? []).map((subnet) => stack.formatArn({ service: 'ec2', resource: 'subnet', resourceName: subnet.subnetId }));
    const prepareBuildRole = (role: iam.IRole, options: { projectRole: boolean }) => {
      for (const statement of buildPayloadStatements(this, where)) role.addToPrincipalPolicy(statement);
      this.buildLogGroup.grantWrite(role);
      buildImageRepository?.grantPull(role);
      this.buildKit?.grantRead(role);
      // The project grants its own role the VPC permissions; a role override needs them too.
      if (buildsInVpc && !options.projectRole) for (const statement of vpcBuildStatements(this, subnetArns())) role.addToPrincipalPolicy(statement);
    };
    this.buildRole = new iam.Role(this, 'BuildRole', {
      assumedBy: codebuildPrincipal(),
      description: `cbactions ${deploy.stackName}: CodeBuild builds that run GitHub Actions jobs`,
    });
    prepareBuildRole(this.buildRole, { projectRole: true });
    applyRolePermissions(this.buildRole, deploy.buildRole, this, 'BuildRole');

    const roles = new Map<string, BuildRoleEntry>();
    const poolRoles = new Map<string, iam.IRole>();
    // An existing role may serve a pool and a policy rule: imported (and given the payload
    // statements) once.
    const existingRoles = new Map<string, iam.IRole>();
    const importExisting = (id: string, arn: string): iam.IRole => {
      const known = existingRoles.get(arn);
      if (known !== undefined) return known;
      // Same account only: the payload statements are attached to that role.
      const role = iam.Role.fromRoleArn(this, id, arn, { mutable: true });
      prepareBuildRole(role, { projectRole: false });
      existingRoles.set(arn, role);
      return role;
    };
    config.pools.forEach((pool: Pool, index: number) => {
      const own = deploy.pools[pool.name];
      const existing = pool.build.serviceRole;
      if (own !== undefined) {
        const role = new iam.Role(this, `PoolRole${pascal(pool.name)}`, {
          assumedBy: codebuildPrincipal(),
          description: `cbactions ${deploy.stackName}: builds of pool ${pool.name}`,
        });
        prepareBuildRole(role, { projectRole: false });
        applyRolePermissions(role, own.serviceRole, this, `PoolRole${pascal(pool.name)}`);
        roles.set(pool.name, { role, roleId: role.roleId });
        poolRoles.set(pool.name, role);
      } else if (existing !== undefined) {
        if (existing.roleId === undefined) {
          throw invalid(
            `pools[${index}].build.serviceRole.roleId`,
            `pool "${pool.name}" runs as the existing role ${existing.arn}; give its unique id (aws iam get-role --role-name NAME --query Role.RoleId), ` +
              `which payloads are bound to, or drop serviceRole and set deploy.pools.${pool.name}.serviceRole to have the stack create one`,
          );
        }
        const role = importExisting(`PoolRole${pascal(pool.name)}`, existing.arn);
        roles.set(pool.name, { role, roleId: existing.roleId });
        poolRoles.set(pool.name, role);
      } else {
        roles.set(pool.name, { role: this.buildRole, roleId: this.buildRole.roleId });
        poolRoles.set(pool.name, this.buildRole);
      }
    });
    this.poolBuildRoles = poolRoles;

    // ---- Roles for policy rules: the rule's role is the build's serviceRoleOverride, and
    // payloads are sealed for its sessions, so each gets what every build role gets.
    const policyRoles = new Map<string, BuildRoleEntry>();
    for (const [name, permissions] of Object.entries(deploy.roles)) {
      // The name goes into the construct id as is: ids keep "-", so no two names collide.
      const role = new iam.Role(this, `PolicyRole-${name}`, {
        assumedBy: codebuildPrincipal(),
        description: `cbactions ${deploy.stackName}: builds policy rules run as role ${name}`,
      });
      prepareBuildRole(role, { projectRole: false });
      applyRolePermissions(role, permissions, this, `PolicyRole-${name}`);
      policyRoles.set(name, { role, roleId: role.roleId });
    }
    for (const [name, existing] of Object.entries(config.policy.roles)) {
      if (existing.roleId === undefined) {
        throw invalid(
          `policy.roles.${name}.roleId`,
          `role "${name}" is the existing role ${existing.arn}; give its unique id (aws iam get-role --role-name NAME --query Role.RoleId), ` +
            `which payloads are bound to, or move it to deploy.roles.${name} to have the stack create one`,
        );
      }
      policyRoles.set(name, { role: importExisting(`PolicyRole-${name}`, existing.arn), roleId: existing.roleId });
    }
    this.policyRoles = new Map([...policyRoles].map(([name, entry]) => [name, entry.role]));
    const buildRoleCount = new Set([this.buildRole, ...poolRoles.values(), ...this.policyRoles.values()]).size;
    if (buildRoleCount > MAX_BUILD_ROLES) {
      throw invalid(
        'deploy.roles',
        `builds would run as ${buildRoleCount} roles (the project's, the pools' own, the policy roles), more than the ${MAX_BUILD_ROLES} the payload bucket's policy can name ` +
          'in its Deny guards (S3 limits a bucket policy to 20 KB): let rules share roles',
      );
    }

    // ---- The CodeBuild project: one project, pools differ by StartBuild overrides.
    const privileged = config.pools.some((pool) => pool.build.privileged);
    this.project = new codebuild.Project(this, 'Project', {
      projectName: config.codebuild.projectName,
      description: `cbactions ${deploy.stackName}: each build runs one GitHub Actions job`,
      role: this.buildRole,
      buildSpec: new InlineBuildSpec(props.buildspec),
      environment: {
        buildImage,
        computeType: codebuild.ComputeType.SMALL,
        // The Docker daemon for `container:` jobs and service containers; the worker sends
        // privilegedModeOverride per pool, the project mirrors whether any pool wants it.
        privileged,
        environmentVariables: {
          [ProjectEnv.RunnerRoot]: { value: ImagePaths.runnerRoot },
          ...(this.buildKit === undefined ? {} : { [ProjectEnv.KitS3Uri]: { value: this.buildKit.s3Uri } }),
        },
      },
      // GitHub's default job timeout; a pool's timeoutMinutes overrides it per build.
      timeout: Duration.minutes(deploy.buildTimeoutMinutes),
      logging: { cloudWatch: { logGroup: this.buildLogGroup } },
      // Build artifacts are not used; the AWS managed S3 key is what CodeBuild would pick
      // anyway. Never the payload key: the project would grant the role unconditional Decrypt.
      encryptionKey: kms.Alias.fromAliasName(this, 'ArtifactsKey', 'alias/aws/s3'),
      ...(buildsInVpc && buildSecurityGroup ? { vpc: this.vpc, subnetSelection: subnets, securityGroups: [buildSecurityGroup] } : {}),
    });

    // ---- GitHub credential: referenced from config, or created empty for the operator.
    const source = githubCredentialSource(config.github.auth);
    if ('secretsManager' in source) {
      const id = source.secretsManager;
      if (id.startsWith('arn:')) {
        this.githubSecret = /-[A-Za-z0-9]{6}$/.test(id)
          ? secretsmanager.Secret.fromSecretCompleteArn(this, 'GitHubSecret', id)
          : secretsmanager.Secret.fromSecretPartialArn(this, 'GitHubSecret', id);
      } else {
        this.githubSecret = secretsmanager.Secret.fromSecretNameV2(this, 'GitHubSecret', id);
      }
    } else {
      // No SecretString: CloudFormation creates the secret without a value. The operator puts
      // the PAT or App private key in with `aws secretsmanager put-secret-value`.
      this.createdGithubSecret = new secretsmanager.CfnSecret(this, 'GitHubCredential', {
        name: `${deploy.stackName}/github-${'token' in config.github.auth ? 'token' : 'app-private-key'}`,
        description: `cbactions ${deploy.stackName}: GitHub ${'token' in config.github.auth ? 'personal access token' : 'App private key (PEM)'} used by the listener`,
      });
      this.githubSecret = secretsmanager.Secret.fromSecretCompleteArn(this, 'GitHubSecret', this.createdGithubSecret.ref);
    }

    // ---- Build state events (optional): a hint that makes the wait faster; polling stays.
    if (deploy.events) {
      this.eventsQueue = new sqs.Queue(this, 'BuildEvents', {
        encryption: sqs.QueueEncryption.SQS_MANAGED,
        enforceSSL: true,
        // A stale state change is worthless: the mux's reconciliation poll has moved on.
        retentionPeriod: Duration.hours(1),
        visibilityTimeout: Duration.seconds(30),
      });
      new events.Rule(this, 'BuildStateChanges', {
        description: `cbactions ${deploy.stackName}: CodeBuild build state changes of ${config.codebuild.projectName}`,
        eventPattern: {
          source: ['aws.codebuild'],
          detailType: ['CodeBuild Build State Change'],
          detail: { 'project-name': [this.project.projectName] },
        },
        targets: [new eventsTargets.SqsQueue(this.eventsQueue)],
      });
    }

    // ---- The runtime config the task runs with.
    const buildRoleValues = new Map<string, { arn: string; roleId: string }>();
    for (const [name, entry] of roles) buildRoleValues.set(name, { arn: entry.role.roleArn, roleId: entry.roleId });
    const createdPolicyRoles = new Map<string, { arn: string; roleId: string }>();
    for (const name of Object.keys(deploy.roles)) {
      const entry = policyRoles.get(name);
      if (entry !== undefined) createdPolicyRoles.set(name, { arn: entry.role.roleArn, roleId: entry.roleId });
    }
    this.runtimeConfig = runtimeConfig(config, {
      region: stack.region,
      policyRoles: createdPolicyRoles,
      payloadKeyArn: this.payloadKey.keyArn,
      payloadBucketName: this.payloadBucket.bucketName,
      projectName: this.project.projectName,
      buildRoles: buildRoleValues,
      poolImages,
      ...(this.createdGithubSecret === undefined ? {} : { githubSecretArn: this.createdGithubSecret.ref }),
    });

    // ---- The listener task's role: start/watch/stop its project's builds, seal payloads,
    // read the GitHub credential, protect its own task while jobs run.
    this.taskRole = new iam.Role(this, 'TaskRole', {
      assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com', { conditions: { StringEquals: { 'aws:SourceAccount': stack.account } } }),
      description: `cbactions ${deploy.stackName}: the mux, its Runner.Listener processes and workers`,
    });
    this.taskRole.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'RunBuildsOfOwnProject',
        actions: ['codebuild:StartBuild', 'codebuild:BatchGetBuilds', 'codebuild:StopBuild'],
        resources: [this.project.projectArn],
      }),
    );
    // Exactly the roles a build may run as: StartBuild's serviceRoleOverride needs PassRole.
    const everyBuildRole = [...poolRoles.values(), ...this.policyRoles.values()];
    const passable = [...new Set(everyBuildRole.map((role) => role.roleArn))];
    this.taskRole.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'PassBuildRolesToCodeBuild',
        actions: ['iam:PassRole'],
        resources: passable,
        conditions: { StringEquals: { 'iam:PassedToService': 'codebuild.amazonaws.com' } },
      }),
    );
    for (const statement of taskPayloadStatements(this, where)) this.taskRole.addToPrincipalPolicy(statement);
    // Per-build isolation that holds whatever else a build role is granted: Deny guards in
    // the bucket's and the key's own policies (iam.ts), naming every role a build runs as.
    const buildRoleArns = [...new Set([this.buildRole, ...everyBuildRole].map((role) => role.roleArn))];
    for (const statement of bucketGuardStatements(where, buildRoleArns)) this.payloadBucket.addToResourcePolicy(statement);
    for (const statement of keyPolicyStatements(this, where, { taskRoleArn: this.taskRole.roleArn, buildRoleArns })) this.payloadKey.addToResourcePolicy(statement);
    this.githubSecret.grantRead(this.taskRole);
    this.eventsQueue?.grant(this.taskRole, 'sqs:ReceiveMessage', 'sqs:DeleteMessage');

    // ---- The listener service.
    this.cluster = new ecs.Cluster(this, 'Cluster', { vpc: this.vpc, containerInsightsV2: ecs.ContainerInsights.ENABLED });
    // The ECS agent endpoint ($ECS_AGENT_URI/task-protection/v1/state) acts with the task
    // role's credentials: the mux protects its own task while any job runs.
    this.taskRole.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'ProtectOwnTasks',
        actions: ['ecs:UpdateTaskProtection', 'ecs:GetTaskProtection'],
        resources: [stack.formatArn({ service: 'ecs', resource: 'task', resourceName: `${this.cluster.clusterName}/*` })],
      }),
    );
    this.taskDefinition = new ecs.FargateTaskDefinition(this, 'TaskDefinition', {
      cpu: deploy.cpu,
      memoryLimitMiB: deploy.memoryMiB,
      taskRole: this.taskRole,
      runtimePlatform: {
        operatingSystemFamily: ecs.OperatingSystemFamily.LINUX,
        cpuArchitecture: deploy.architecture === 'arm64' ? ecs.CpuArchitecture.ARM64 : ecs.CpuArchitecture.X86_64,
      },
    });
    let listenerImage: ecs.ContainerImage;
    if (deploy.images.listener === undefined) {
      const assets = requireAssets();
      listenerImage = ecs.ContainerImage.fromDockerImageAsset(
        repositoryImage(this, 'ListenerImage', { ...assets, file: RepoFiles.listenerDockerfile, architecture: deploy.architecture }),
      );
    } else {
      const uri = deploy.images.listener;
      const ecrImage = parseEcrImageUri(uri);
      listenerImage = ecrImage ? ecs.ContainerImage.fromEcrRepository(ecrRepositoryFor(this, 'ListenerImageRepository', ecrImage), ecrImage.tagOrDigest) : ecs.ContainerImage.fromRegistry(uri);
    }
    // Liveness only (src/infra/health-check.ts): /healthz answers while the mux runs, pool
    // alerts or not, so ECS replaces a task whose mux died or hung and never one running jobs.
    const url = healthzUrl(config.mux.statusHost, config.mux.statusPort);
    const health: ecs.HealthCheck | undefined =
      url === undefined
        ? undefined
        : {
            command: healthCheckCommand(url),
            startPeriod: Duration.seconds(HEALTH_CHECK_START_PERIOD_SECONDS),
            interval: Duration.seconds(HEALTH_CHECK_INTERVAL_SECONDS),
            timeout: Duration.seconds(HEALTH_CHECK_TIMEOUT_SECONDS),
            retries: HEALTH_CHECK_RETRIES,
          };
    if (url === undefined) {
      Annotations.of(this).addWarningV2(
        'cbactions:no-health-check',
        'mux.statusPort: 0 lets the mux pick a port at start, which ECS can not know: the listener container gets no health check (set a fixed port)',
      );
    }
    this.container = this.taskDefinition.addContainer('mux', {
      image: listenerImage,
      // The image's entrypoint writes CBACTIONS_CONFIG_JSON to CBACTIONS_CONFIG, then runs this.
      command: ['mux', '--config', ImagePaths.configFile],
      environment: {
        [TaskEnv.ConfigJson]: stack.toJsonString(this.runtimeConfig),
        [TaskEnv.Config]: ImagePaths.configFile,
        ...(this.eventsQueue === undefined ? {} : { [TaskEnv.EventsQueueUrl]: this.eventsQueue.queueUrl }),
      },
      logging: ecs.LogDrivers.awsLogs({
        logGroup: this.muxLogGroup,
        streamPrefix: 'mux',
        // A stalled CloudWatch Logs must never block the mux's event loop (and with it every
        // listener's supervision); dropping log lines is the lesser harm.
        mode: ecs.AwsLogDriverMode.NON_BLOCKING,
        maxBufferSize: Size.mebibytes(25),
      }),
      // SIGTERM starts the mux's drain: idle listeners stop at once, busy ones finish their
      // job. 120 s is Fargate's maximum before SIGKILL; longer jobs are covered by task
      // scale-in protection, which keeps ECS from stopping the task at all while it is set.
      stopTimeout: Duration.seconds(FARGATE_MAX_STOP_TIMEOUT_SECONDS),
      // An init process as PID 1 reaps the listeners' orphaned grandchildren and forwards SIGTERM.
      linuxParameters: new ecs.LinuxParameters(this, 'MuxLinuxParameters', { initProcessEnabled: true }),
      essential: true,
      ...(health === undefined ? {} : { healthCheck: health }),
    });
    const serviceSecurityGroup = new ec2.SecurityGroup(this, 'ServiceSecurityGroup', {
      vpc: this.vpc,
      description: 'cbactions listener tasks: outbound only (GitHub, AWS APIs)',
      allowAllOutbound: true,
    });
    this.service = new ecs.FargateService(this, 'Service', {
      cluster: this.cluster,
      taskDefinition: this.taskDefinition,
      // With deploy.scaling the template leaves the count to Application Auto Scaling: a
      // DesiredCount here would reset it at every deployment.
      desiredCount: fixedTaskCount(deploy),
      // On-demand Fargate only (no capacity provider strategy, so no FARGATE_SPOT): a Spot
      // interruption would kill listeners mid-job and lose their jobs' leases.
      // Deployments start the new tasks first (max 200 %) and stop an old task only when
      // the new ones run (min 100 %): there is never less listener capacity than desired.
      // An old task that still runs jobs holds scale-in protection, which deployments
      // respect, so it is stopped (SIGTERM → drain) only after its jobs end.
      minHealthyPercent: 100,
      maxHealthyPercent: 200,
      circuitBreaker: { enable: true, rollback: true },
      // Rebalancing would stop running tasks to move them between zones.
      availabilityZoneRebalancing: ecs.AvailabilityZoneRebalancing.DISABLED,
      // Several subnets in different zones: ECS spreads a Fargate service's tasks over them.
      vpcSubnets: subnets,
      securityGroups: [serviceSecurityGroup],
      assignPublicIp: network === undefined ? true : network.assignPublicIp,
      platformVersion: ecs.FargatePlatformVersion.LATEST,
      enableExecuteCommand: false,
      propagateTags: ecs.PropagatedTagSource.SERVICE,
    });

    // ---- Scaling across tasks (deploy.scaling): target tracking on the service-wide
    // ListenerUtilization, the Average over one minute of every task's busiest pool's busy
    // share of its maximum. Each mux publishes it without a Task dimension, so all tasks'
    // data points land in this one metric (src/mux/demand-metrics.ts says why). Proportional:
    // a burst adds as many tasks as the ratio asks for at once; AWS's scale-in alarm waits for
    // 15 low minutes, so a lull does not flap. Scale-in stops only idle tasks: a task with a
    // job holds ECS task scale-in protection (src/mux/task-protection.ts, ProtectOwnTasks).
    this.listenerUtilization = new cloudwatch.Metric({
      namespace: METRICS_NAMESPACE,
      metricName: DemandMetric.ListenerUtilization,
      dimensionsMap: { [DemandDimension.Project]: this.project.projectName },
      statistic: cloudwatch.Stats.AVERAGE,
      period: Duration.minutes(1),
    });
    // Totals over the tasks for the dashboard: each task's own series (Project, Task) summed,
    // right whatever mux.demandMetrics.intervalSeconds (a Sum of the service-wide series would
    // count a task twice a minute at a 30 s interval).
    const acrossTasks = (metricName: string) =>
      new cloudwatch.MathExpression({
        expression: `SUM(SEARCH('{${METRICS_NAMESPACE},${DemandDimension.Project},${DemandDimension.Task}} MetricName="${metricName}" ${DemandDimension.Project}="${this.project.projectName}"', 'Average', 60))`,
        usingMetrics: {},
        label: metricName,
        period: Duration.minutes(1),
      });
    if (deploy.scaling !== undefined) {
      const scaling = deploy.scaling;
      this.taskScaling = this.service.autoScaleTaskCount({ minCapacity: scaling.minTasks, maxCapacity: scaling.maxTasks });
      this.taskScaling.scaleToTrackCustomMetric('ListenerUtilizationTracking', {
        metric: this.listenerUtilization,
        targetValue: scaling.targetUtilizationPercent,
        scaleOutCooldown: Duration.seconds(scaling.scaleOutCooldownSeconds),
        scaleInCooldown: Duration.seconds(scaling.scaleInCooldownSeconds),
      });
    }

    // ---- Alarms and dashboard.
    if (deploy.alarmEmail !== undefined) {
      // CloudWatch can't publish to topics under the AWS managed SNS key, so the topic gets
      // a key of its own (the payload key stays for payloads only).
      const topicKey = new kms.Key(this, 'AlarmTopicKey', {
        description: `cbactions ${deploy.stackName}: alarm notifications`,
        enableKeyRotation: true,
        removalPolicy: RemovalPolicy.DESTROY,
        pendingWindow: Duration.days(7),
      });
      topicKey.addToResourcePolicy(
        new iam.PolicyStatement({
          actions: ['kms:Decrypt', 'kms:GenerateDataKey*'],
          principals: [new iam.ServicePrincipal('cloudwatch.amazonaws.com')],
          resources: ['*'],
          conditions: { StringEquals: { 'aws:SourceAccount': stack.account } },
        }),
      );
      this.alarmTopic = new sns.Topic(this, 'AlarmTopic', { masterKey: topicKey, enforceSSL: true, displayName: `cbactions ${deploy.stackName} alarms` });
      this.alarmTopic.addSubscription(new snsSubscriptions.EmailSubscription(deploy.alarmEmail));
    }
    const period = Duration.minutes(deploy.alarms.periodMinutes);
    const widgets: cloudwatch.IWidget[][] = [
      [
        new cloudwatch.GraphWidget({ title: 'Listener tasks: CPU and memory (%)', left: [this.service.metricCpuUtilization(), this.service.metricMemoryUtilization()], width: 8 }),
        new cloudwatch.GraphWidget({ title: 'Builds', left: [this.project.metricBuilds(), this.project.metricSucceededBuilds(), this.project.metricFailedBuilds()], width: 8 }),
        new cloudwatch.GraphWidget({ title: 'Build duration', left: [this.project.metricDuration()], width: 8 }),
      ],
    ];
    widgets.push([
      new cloudwatch.GraphWidget({
        title: 'Listeners across tasks (busy, idle, shortfall)',
        left: [DemandMetric.BusyListeners, DemandMetric.IdleListeners, DemandMetric.IdleShortfall].map((metricName) => acrossTasks(metricName)),
        width: 12,
      }),
      new cloudwatch.GraphWidget({
        title: 'Listener utilization (%) and running tasks',
        left: [this.listenerUtilization],
        right: [
          new cloudwatch.Metric({
            namespace: 'ECS/ContainerInsights',
            metricName: 'RunningTaskCount',
            dimensionsMap: { ClusterName: this.cluster.clusterName, ServiceName: this.service.serviceName },
            statistic: cloudwatch.Stats.AVERAGE,
            period: Duration.minutes(1),
          }),
        ],
        leftYAxis: { min: 0, max: 100 },
        width: 12,
      }),
    ]);
    if (this.eventsQueue !== undefined) {
      widgets.push([
        new cloudwatch.GraphWidget({
          title: 'Build events waiting',
          left: [this.eventsQueue.metricApproximateNumberOfMessagesVisible(), this.eventsQueue.metricApproximateAgeOfOldestMessage()],
          width: 12,
        }),
      ]);
    }
    this.monitoring = new Monitoring(this, 'Monitoring', {
      muxLogGroup: this.muxLogGroup,
      namespace: `cbactions/${deploy.stackName}`,
      listenerRestartThreshold: deploy.alarms.listenerRestarts,
      failedDispatchThreshold: deploy.alarms.failedDispatches,
      period,
      pools: config.pools.map((pool) => pool.name),
      extraWidgets: widgets,
      dashboardName: `${deploy.stackName}-cbactions`,
    });
    if (this.alarmTopic !== undefined) {
      const action = new cloudwatchActions.SnsAction(this.alarmTopic);
      for (const alarm of this.monitoring.alarms) alarm.addAlarmAction(action);
    }

    // ---- Outputs an operator needs.
    const output = (id: string, value: string, description: string) => new CfnOutput(this, id, { value, description });
    output('ClusterName', this.cluster.clusterName, 'ECS cluster of the listener service');
    output('ServiceName', this.service.serviceName, 'ECS service running `cbactions mux`');
    output('ProjectName', this.project.projectName, 'CodeBuild project that runs the jobs');
    output('BuildRoleArn', this.buildRole.roleArn, "The project's build role (attach your jobs' permissions with deploy.buildRole)");
    for (const name of Object.keys(deploy.roles)) {
      const role = this.policyRoles.get(name);
      if (role !== undefined) output(`PolicyRoleArn-${name}`, role.roleArn, `Role "${name}" that policy rules run builds as (deploy.roles.${name})`);
    }
    output('PayloadBucketName', this.payloadBucket.bucketName, 'Sealed job payloads (single use, 1-day expiry)');
    output('PayloadKeyArn', this.payloadKey.keyArn, 'KMS key that seals job payloads');
    output('MuxLogGroup', this.muxLogGroup.logGroupName, 'Logs of the mux, its listeners and workers');
    output('BuildLogGroup', this.buildLogGroup.logGroupName, 'Logs of the CodeBuild builds');
    output('GitHubSecretArn', this.githubSecret.secretArn, 'GitHub credential the listener reads');
    if (this.createdGithubSecret !== undefined) {
      output(
        'GitHubSecretSetup',
        `aws secretsmanager put-secret-value --secret-id ${this.createdGithubSecret.ref} --secret-string file://CREDENTIAL_FILE`,
        'The stack created the GitHub credential secret empty: put the token or App private key in, then restart the service',
      );
    }
    if (this.eventsQueue !== undefined) output('EventsQueueUrl', this.eventsQueue.queueUrl, 'Build state change events');
    output('DashboardName', this.monitoring.dashboard.dashboardName, 'CloudWatch dashboard');
  }
}

/**
 * The repository's buildspec.yml, inline and byte for byte (comments included): builds have
 * no source (NO_SOURCE), so the file can't be read from one.
 */
export class InlineBuildSpec extends codebuild.BuildSpec {
  readonly isImmediate = true;

  constructor(private readonly text: string) {
    super();
  }

  toBuildSpec(): string {
    return this.text;
  }
}
