/**
 * ECS service auto scaling of the listener tasks (deploy.scaling): the scalable target's
 * bounds, the target tracking policy on the mux's demand metric, cooldowns, all from the
 * config; a fixed `deploy.tasks` stays as it was; cdk-nag finds nothing.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { DemandDimension, DemandMetric } from '../../src/mux/demand-metrics.js';
import { METRICS_NAMESPACE } from '../../src/util/emf.js';
import { actionsOf, configInput, logicalId, nagFindings, onlyResource, resourcesOfType, roleStatements, synth, type Synthesized } from './helpers.js';

const SCALED = configInput({
  pools: [
    { name: 'default', labels: ['cbactions'], slots: 4 },
    { name: 'big', labels: ['cbactions-big'], slots: 2, build: { computeType: 'BUILD_GENERAL1_LARGE' } },
  ],
  deploy: { stackName: 'cbactions-scaled', scaling: { minTasks: 2, maxTasks: 7, targetUtilizationPercent: 60, scaleOutCooldownSeconds: 90, scaleInCooldownSeconds: 900 } },
});

type Json = Record<string, unknown>;

let scaled: Synthesized;
let serviceId: string;
let clusterId: string;
let projectId: string;

beforeAll(() => {
  scaled = synth(SCALED);
  const c = scaled.stack.cbactions;
  serviceId = logicalId(scaled.stack, c.service);
  clusterId = logicalId(scaled.stack, c.cluster);
  projectId = logicalId(scaled.stack, c.project);
});

describe('deploy.scaling', () => {
  it('registers the service as a scalable target between minTasks and maxTasks', () => {
    const [, target] = onlyResource(scaled.json, 'AWS::ApplicationAutoScaling::ScalableTarget');
    expect(target.Properties).toMatchObject({
      ServiceNamespace: 'ecs',
      ScalableDimension: 'ecs:service:DesiredCount',
      MinCapacity: 2,
      MaxCapacity: 7,
      ResourceId: { 'Fn::Join': ['', ['service/', { Ref: clusterId }, '/', { 'Fn::GetAtt': [serviceId, 'Name'] }]] },
    });
  });

  it('leaves the desired count to the scalable target (a DesiredCount would reset it at every deployment)', () => {
    const [, service] = onlyResource(scaled.json, 'AWS::ECS::Service');
    expect((service.Properties as Json).DesiredCount).toBeUndefined();
  });

  it('tracks the service-wide ListenerUtilization of this deployment, with the configured target and cooldowns', () => {
    const [, policy] = onlyResource(scaled.json, 'AWS::ApplicationAutoScaling::ScalingPolicy');
    const properties = policy.Properties as Json;
    expect(properties.PolicyType).toBe('TargetTrackingScaling');
    const [targetId] = onlyResource(scaled.json, 'AWS::ApplicationAutoScaling::ScalableTarget');
    expect(properties.ScalingTargetId).toEqual({ Ref: targetId });
    expect(properties.TargetTrackingScalingPolicyConfiguration).toEqual({
      TargetValue: 60,
      ScaleOutCooldown: 90,
      ScaleInCooldown: 900,
      CustomizedMetricSpecification: {
        Namespace: METRICS_NAMESPACE,
        MetricName: DemandMetric.ListenerUtilization,
        // Only the deployment: every task publishes its value without a Task dimension, so they all land in this one metric.
        Dimensions: [{ Name: DemandDimension.Project, Value: { Ref: projectId } }],
        Statistic: 'Average',
      },
    });
    // The names the mux publishes under (src/mux/demand-metrics.ts), spelled out once.
    expect([METRICS_NAMESPACE, DemandMetric.ListenerUtilization, DemandDimension.Project]).toEqual(['cbactions', 'ListenerUtilization', 'Project']);
  });

  it('defaults: minTasks 1, target 70 %, scale-out cooldown 120 s, scale-in 600 s', () => {
    const { json } = synth(configInput({ deploy: { scaling: { maxTasks: 3 } } }));
    const [, target] = onlyResource(json, 'AWS::ApplicationAutoScaling::ScalableTarget');
    expect(target.Properties).toMatchObject({ MinCapacity: 1, MaxCapacity: 3 });
    const [, policy] = onlyResource(json, 'AWS::ApplicationAutoScaling::ScalingPolicy');
    expect((policy.Properties as Json).TargetTrackingScalingPolicyConfiguration).toMatchObject({ TargetValue: 70, ScaleOutCooldown: 120, ScaleInCooldown: 600 });
  });

  it('the mux gets what scale-in protection needs, and no PutMetricData (EMF goes through its log group)', () => {
    const statements = roleStatements(scaled.json, logicalId(scaled.stack, scaled.stack.cbactions.taskRole));
    expect(statements.find((statement) => statement.Sid === 'ProtectOwnTasks')).toMatchObject({ Action: ['ecs:UpdateTaskProtection', 'ecs:GetTaskProtection'] });
    const everyAction = resourcesOfType(scaled.json, 'AWS::IAM::Policy').flatMap(([, policy]) => ((policy.Properties as Json).PolicyDocument as { Statement: Parameters<typeof actionsOf>[0][] }).Statement.flatMap(actionsOf));
    expect(everyAction.filter((action) => action.startsWith('cloudwatch:'))).toEqual([]);
    // The log driver writes the EMF lines with the execution role, to the mux's log group.
    const muxLogs = logicalId(scaled.stack, scaled.stack.cbactions.muxLogGroup);
    const executionRole = logicalId(scaled.stack, scaled.stack.cbactions.taskDefinition.executionRole);
    expect(roleStatements(scaled.json, executionRole)).toContainEqual(expect.objectContaining({ Action: ['logs:CreateLogStream', 'logs:PutLogEvents'], Resource: { 'Fn::GetAtt': [muxLogs, 'Arn'] } }));
  });

  it('the dashboard graphs the demand metrics of this deployment', () => {
    const [, dashboard] = onlyResource(scaled.json, 'AWS::CloudWatch::Dashboard');
    const parts = ((dashboard.Properties as Json).DashboardBody as { 'Fn::Join': [string, unknown[]] })['Fn::Join'][1];
    const body = parts.map((part) => (typeof part === 'string' ? part : JSON.stringify(part))).join('');
    // Totals: each task's own series summed (right at any publishing interval).
    for (const name of [DemandMetric.BusyListeners, DemandMetric.IdleListeners, DemandMetric.IdleShortfall]) {
      expect(body).toContain(`SUM(SEARCH('{cbactions,Project,Task} MetricName=\\"${name}\\" Project=\\"{"Ref":"${projectId}"}\\"', 'Average', 60))`);
    }
    expect(body).toContain(`["cbactions","ListenerUtilization","Project","{"Ref":"${projectId}"}",{"period":60}]`);
  });

  it('cdk-nag reports nothing unsuppressed', () => {
    expect(nagFindings(scaled.annotations)).toEqual([]);
  });
});

describe('without deploy.scaling', () => {
  it('a fixed deploy.tasks is the desired count, and there is no scaling', () => {
    const { json } = synth(configInput({ deploy: { tasks: 3 } }));
    const [, service] = onlyResource(json, 'AWS::ECS::Service');
    expect((service.Properties as Json).DesiredCount).toBe(3);
    expect(resourcesOfType(json, 'AWS::ApplicationAutoScaling::ScalableTarget')).toEqual([]);
    expect(resourcesOfType(json, 'AWS::ApplicationAutoScaling::ScalingPolicy')).toEqual([]);
  });

  it('no deploy section: one task', () => {
    const { json } = synth(configInput());
    const [, service] = onlyResource(json, 'AWS::ECS::Service');
    expect((service.Properties as Json).DesiredCount).toBe(1);
  });
});
