import { App, Aspects, CfnElement, type Stack } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import type { IConstruct } from 'constructs';
import { parseConfig } from '../../src/config/load.js';
import type { Config, ConfigInput } from '../../src/config/schema.js';
import { readBuildspec, repositoryRoot } from '../../src/infra/paths.js';
import { CbactionsStack } from '../../src/infra/stack.js';

export const ROOT = repositoryRoot();
export const BUILDSPEC = readBuildspec(ROOT);
export const RUNNER_VERSION = '2.337.0';

/** A minimal valid config; `deploy` and pools vary per test. */
export function configInput(overrides: Partial<ConfigInput> = {}): ConfigInput {
  return {
    github: { scope: { organization: 'octo' }, auth: { app: { appId: 1234, privateKey: { env: 'CBACTIONS_GITHUB_APP_PRIVATE_KEY' } } } },
    codebuild: { projectName: 'cbactions-test' },
    payloads: { key: { kms: { keyId: 'alias/placeholder' } }, store: { s3: { bucket: 'placeholder', prefix: 'jobs/' } } },
    pools: [{ name: 'default', labels: ['cbactions'] }],
    ...overrides,
  };
}

export interface Synthesized {
  config: Config;
  stack: CbactionsStack;
  template: Template;
  json: Record<string, unknown>;
  annotations: Annotations;
}

/** Synthesizes once (cdk-nag included) and hands out the template and annotations. */
export function synth(input: ConfigInput, options: { assets?: boolean } = {}): Synthesized {
  const config = parseConfig(input);
  const app = new App({ analyticsReporting: false });
  const stack = new CbactionsStack(app, 'cbactions-test', {
    config,
    buildspec: BUILDSPEC,
    ...(options.assets === false ? {} : { assetDirectory: ROOT, runnerVersion: RUNNER_VERSION }),
  });
  Aspects.of(app).add(new AwsSolutionsChecks({ verbose: true }));
  const template = Template.fromStack(stack);
  return { config, stack, template, json: template.toJSON(), annotations: Annotations.fromStack(stack) };
}

/** cdk-nag findings (and its validation failures) left unsuppressed, as "path rule: text". */
export function nagFindings(annotations: Annotations): string[] {
  const pattern = Match.stringLikeRegexp('AwsSolutions-|CdkNagValidationFailure');
  return [...annotations.findError('*', pattern), ...annotations.findWarning('*', pattern)].map((message) => `${message.id}: ${String(message.entry.data).slice(0, 200)}`);
}

type Json = Record<string, unknown>;

export function resourcesOfType(json: Json, type: string): [string, Json][] {
  const resources = (json.Resources ?? {}) as Record<string, Json>;
  return Object.entries(resources).filter(([, resource]) => resource.Type === type);
}

export function onlyResource(json: Json, type: string): [string, Json] {
  const found = resourcesOfType(json, type);
  if (found.length !== 1) throw new Error(`expected one ${type}, found ${found.length}`);
  return found[0] as [string, Json];
}

export interface Statement {
  Sid?: string;
  Effect: string;
  Action: string | string[];
  Resource: unknown;
  Condition?: Record<string, Record<string, unknown>>;
}

/** Every statement of the inline policies attached to a role (by logical id). */
export function roleStatements(json: Json, roleLogicalId: string): Statement[] {
  return resourcesOfType(json, 'AWS::IAM::Policy')
    .filter(([, policy]) => JSON.stringify((policy.Properties as Json).Roles).includes(`"${roleLogicalId}"`))
    .flatMap(([, policy]) => ((policy.Properties as Json).PolicyDocument as { Statement: Statement[] }).Statement);
}

export function actionsOf(statement: Statement): string[] {
  return Array.isArray(statement.Action) ? statement.Action : [statement.Action];
}

/** Logical id of an L2 construct's resource, or of an L1 resource itself. */
export function logicalId(stack: Stack, construct: IConstruct | undefined): string {
  if (construct === undefined) throw new Error('no such construct');
  const element = CfnElement.isCfnElement(construct) ? construct : construct.node.defaultChild;
  if (element === undefined || !CfnElement.isCfnElement(element)) throw new Error(`${construct.node.path} has no CloudFormation resource`);
  return stack.getLogicalId(element);
}

/** A plausible ARN for a resource of the template (by its type), for resolving `GetAtt X.Arn`. */
function fakeArn(id: string, type: string | undefined): string {
  switch (type) {
    case 'AWS::IAM::Role':
      return `arn:aws:iam::123456789012:role/${id}`;
    case 'AWS::KMS::Key':
      return `arn:aws:kms:eu-west-1:123456789012:key/${id}`;
    case 'AWS::S3::Bucket':
      // Same name as `Ref X` resolves to.
      return `arn:aws:s3:::ref-${id.toLowerCase()}`;
    default:
      return `arn:aws:fake:eu-west-1:123456789012:${id}`;
  }
}

/**
 * The unique id (AROA…) `GetAtt X.RoleId` resolves to: the whole logical id, so roles whose
 * ids share a long prefix (PolicyRole-a, PolicyRole-b) still differ, as real role ids do.
 */
export function fakeRoleId(logicalId: string): string {
  return `AROA${logicalId.toUpperCase().replace(/[^A-Z0-9]/g, '')}`;
}

/**
 * Resolves the CloudFormation intrinsics a value is built from, with fake values for the
 * template's resources: `Ref X` → `ref-x`, `GetAtt X.RoleId` → `AROA` + X, `GetAtt X.Arn` →
 * an ARN of X's type, pseudo parameters → eu-west-1 / 123456789012.
 */
export function resolveIntrinsics(value: unknown, json: Json): unknown {
  const resources = (json.Resources ?? {}) as Record<string, Json>;
  const resolve = (inner: unknown): unknown => {
    if (Array.isArray(inner)) return inner.map(resolve);
    if (inner === null || typeof inner !== 'object') return inner;
    const object = inner as Record<string, unknown>;
    if ('Fn::Join' in object) {
      const [separator, parts] = object['Fn::Join'] as [string, unknown[]];
      return parts.map((part) => String(resolve(part))).join(separator);
    }
    if ('Ref' in object) {
      const ref = String(object.Ref);
      const pseudo: Record<string, string> = { 'AWS::Region': 'eu-west-1', 'AWS::Partition': 'aws', 'AWS::AccountId': '123456789012', 'AWS::URLSuffix': 'amazonaws.com' };
      return pseudo[ref] ?? `ref-${ref.toLowerCase()}`;
    }
    if ('Fn::GetAtt' in object) {
      const [resource, attribute] = object['Fn::GetAtt'] as [string, string];
      if (attribute === 'RoleId') return fakeRoleId(resource);
      if (attribute === 'Arn') return fakeArn(resource, resources[resource]?.Type as string | undefined);
      return `att-${resource}-${attribute}`;
    }
    if ('Fn::Sub' in object) {
      return String(object['Fn::Sub'])
        .replace(/\$\{AWS::AccountId\}/g, '123456789012')
        .replace(/\$\{AWS::Region\}/g, 'eu-west-1')
        .replace(/\$\{AWS::URLSuffix\}/g, 'amazonaws.com');
    }
    return Object.fromEntries(Object.entries(object).map(([key, nested]) => [key, resolve(nested)]));
  };
  return resolve(value);
}
