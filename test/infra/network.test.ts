import { Match } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { actionsOf, configInput, logicalId, nagFindings, onlyResource, resolveIntrinsics, roleStatements, synth, type Synthesized } from './helpers.js';

/** An existing VPC (builds in it too), prebuilt images from ECR, no events, arm64 tasks. */
const INPUT = configInput({
  github: { scope: { repository: 'octo/app' }, auth: { token: { secretsManager: 'ci/github-token' } } },
  deploy: {
    architecture: 'arm64',
    cpu: 512,
    memoryMiB: 2048,
    events: false,
    logRetentionDays: 7,
    network: {
      vpcId: 'vpc-0123456789abcdef0',
      subnets: [
        { subnetId: 'subnet-0aaaaaaaaaaaaaaa1', availabilityZone: 'eu-west-1a' },
        { subnetId: 'subnet-0bbbbbbbbbbbbbbb2', availabilityZone: 'eu-west-1b' },
      ],
      codebuild: true,
    },
    images: {
      listener: '123456789012.dkr.ecr.eu-west-1.amazonaws.com/cbactions/listener:2.337.0',
      build: '123456789012.dkr.ecr.eu-west-1.amazonaws.com/cbactions/build@sha256:' + 'a'.repeat(64),
    },
    buildRole: { statements: [{ actions: ['s3:GetObject'], resources: ['arn:aws:s3:::artifacts/*'] }] },
  },
});

let result: Synthesized;
beforeAll(() => {
  result = synth(INPUT, { assets: false });
});

describe('deployment into an existing VPC with prebuilt images', () => {
  it('creates no VPC and runs the tasks in the given subnets without public IPs', () => {
    result.template.resourceCountIs('AWS::EC2::VPC', 0);
    const [, service] = onlyResource(result.json, 'AWS::ECS::Service');
    expect((service.Properties as { NetworkConfiguration: unknown }).NetworkConfiguration).toEqual({
      AwsvpcConfiguration: {
        AssignPublicIp: 'DISABLED',
        SecurityGroups: [expect.objectContaining({ 'Fn::GetAtt': expect.any(Array) })],
        Subnets: ['subnet-0aaaaaaaaaaaaaaa1', 'subnet-0bbbbbbbbbbbbbbb2'],
      },
    });
  });

  it('runs builds in the VPC, with ENI permissions limited to those subnets', () => {
    result.template.hasResourceProperties('AWS::CodeBuild::Project', {
      VpcConfig: { VpcId: 'vpc-0123456789abcdef0', Subnets: ['subnet-0aaaaaaaaaaaaaaa1', 'subnet-0bbbbbbbbbbbbbbb2'], SecurityGroupIds: Match.anyValue() },
    });
    const statements = roleStatements(result.json, logicalId(result.stack, result.stack.cbactions.buildRole));
    const eniPermission = statements.find((statement) => actionsOf(statement).includes('ec2:CreateNetworkInterfacePermission'));
    expect(resolveIntrinsics(eniPermission?.Condition, result.json)).toEqual({
      StringEquals: {
        'ec2:AuthorizedService': 'codebuild.amazonaws.com',
        'ec2:Subnet': ['arn:aws:ec2:eu-west-1:123456789012:subnet/subnet-0aaaaaaaaaaaaaaa1', 'arn:aws:ec2:eu-west-1:123456789012:subnet/subnet-0bbbbbbbbbbbbbbb2'],
      },
    });
  });

  it('pulls the prebuilt images from their ECR repositories (and only those)', () => {
    const [, project] = onlyResource(result.json, 'AWS::CodeBuild::Project');
    const environment = (project.Properties as { Environment: { Image: unknown; ImagePullCredentialsType: string } }).Environment;
    expect(resolveIntrinsics(environment.Image, result.json)).toBe(`123456789012.dkr.ecr.eu-west-1.amazonaws.com/cbactions/build@sha256:${'a'.repeat(64)}`);
    expect(environment.ImagePullCredentialsType).toBe('SERVICE_ROLE');
    const statements = roleStatements(result.json, logicalId(result.stack, result.stack.cbactions.buildRole));
    const pulls = statements.filter((statement) => actionsOf(statement).includes('ecr:BatchGetImage'));
    expect(pulls.map((statement) => resolveIntrinsics(statement.Resource, result.json))).toEqual(['arn:aws:ecr:eu-west-1:123456789012:repository/cbactions/build']);
    result.template.hasResourceProperties('AWS::ECS::TaskDefinition', {
      Cpu: '512',
      RuntimePlatform: { CpuArchitecture: 'ARM64', OperatingSystemFamily: 'LINUX' },
      ContainerDefinitions: [Match.objectLike({ Image: Match.objectLike({ 'Fn::Join': Match.anyValue() }) })],
    });
    expect(JSON.stringify(result.json)).not.toContain('container-assets');
  });

  it('references the configured GitHub secret instead of creating one', () => {
    result.template.resourceCountIs('AWS::SecretsManager::Secret', 0);
    const statements = roleStatements(result.json, logicalId(result.stack, result.stack.cbactions.taskRole));
    expect(JSON.stringify(statements)).toContain(':secret:ci/github-token-??????');
  });

  it('adds the operator\'s statements to the build role', () => {
    const statements = roleStatements(result.json, logicalId(result.stack, result.stack.cbactions.buildRole));
    expect(statements).toContainEqual(expect.objectContaining({ Action: 's3:GetObject', Resource: 'arn:aws:s3:::artifacts/*' }));
  });

  it('without events: no rule, no queue, no queue permission', () => {
    result.template.resourceCountIs('AWS::Events::Rule', 0);
    result.template.resourceCountIs('AWS::SQS::Queue', 0);
    expect(JSON.stringify(result.json)).not.toContain('CBACTIONS_EVENTS_QUEUE_URL');
  });

  it('alarms have no actions without an alarm e-mail', () => {
    result.template.resourceCountIs('AWS::SNS::Topic', 0);
    result.template.allResourcesProperties('AWS::CloudWatch::Alarm', { AlarmActions: Match.absent() });
  });

  it('log retention follows the config', () => {
    result.template.allResourcesProperties('AWS::Logs::LogGroup', { RetentionInDays: 7 });
  });

  it('cdk-nag: nothing unsuppressed', () => {
    expect(nagFindings(result.annotations)).toEqual([]);
  });
});
