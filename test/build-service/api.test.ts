import {
  BatchGetBuildsCommand,
  CodeBuildServiceException,
  InvalidInputException,
  ListBuildsForProjectCommand,
  ResourceNotFoundException,
  StartBuildCommand,
  StopBuildCommand,
} from '@aws-sdk/client-codebuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rejection, startInProcess, type InProcess } from './harness.js';

// CodeBuild's request validation and idempotency, as the real SDK sees them.

const QUICK = 'version: 0.2\nphases:\n  build:\n    commands:\n      - echo quick\n';

describe('CodeBuild API', () => {
  let service: InProcess;

  beforeAll(async () => {
    service = await startInProcess({ buildspecs: { quick: QUICK, other: QUICK } });
  });

  afterAll(async () => {
    await service?.close();
  });

  it('refuses an environment variable value over 4,096 characters, naming the variable', async () => {
    const client = service.client();
    const ok = await client.send(new StartBuildCommand({ projectName: 'quick', environmentVariablesOverride: [{ name: 'BIG', value: 'x'.repeat(4096) }] }));
    expect(ok.build?.id).toBeDefined();
    const error = await rejection(
      client.send(new StartBuildCommand({ projectName: 'quick', environmentVariablesOverride: [{ name: 'TOO_BIG', value: 'y'.repeat(4097), type: 'PLAINTEXT' }] })),
    );
    expect(error).toBeInstanceOf(InvalidInputException);
    expect(error.name).toBe('InvalidInputException');
    expect(error.$metadata?.httpStatusCode).toBe(400);
    expect(error.message).toContain('at most 4096 characters');
    expect(error.message).toContain('TOO_BIG');
    expect(error.message).not.toContain('yyyy');
    await service.waitComplete(ok.build?.id as string);
  });

  it('refuses override names starting with CODEBUILD_ and secret variable types', async () => {
    const client = service.client();
    const reserved = await rejection(client.send(new StartBuildCommand({ projectName: 'quick', environmentVariablesOverride: [{ name: 'CODEBUILD_BUILD_ID', value: 'x' }] })));
    expect(reserved).toBeInstanceOf(InvalidInputException);
    expect(reserved.message).toContain('CODEBUILD_BUILD_ID');
    const secret = await rejection(
      client.send(new StartBuildCommand({ projectName: 'quick', environmentVariablesOverride: [{ name: 'S', value: '/ssm/name', type: 'PARAMETER_STORE' }] })),
    );
    expect(secret).toBeInstanceOf(InvalidInputException);
    expect(secret.message).toContain('PARAMETER_STORE is not supported by the local build service');
  });

  it('refuses timeouts outside CodeBuild ranges', async () => {
    const client = service.client();
    for (const input of [{ timeoutInMinutesOverride: 4 }, { timeoutInMinutesOverride: 2161 }, { queuedTimeoutInMinutesOverride: 4 }, { queuedTimeoutInMinutesOverride: 481 }]) {
      const error = await rejection(client.send(new StartBuildCommand({ projectName: 'quick', ...input })));
      expect(error).toBeInstanceOf(InvalidInputException);
      expect(error.message).toContain(Object.keys(input)[0] as string);
    }
    const lambda = await rejection(
      client.send(new StartBuildCommand({ projectName: 'quick', computeTypeOverride: 'BUILD_LAMBDA_1GB', environmentTypeOverride: 'LINUX_LAMBDA_CONTAINER', privilegedModeOverride: true })),
    );
    expect(lambda.message).toContain('privileged mode is not supported on Lambda compute');
  });

  it('answers ResourceNotFoundException for an unknown project', async () => {
    const error = await rejection(service.client().send(new StartBuildCommand({ projectName: 'nope' })));
    expect(error).toBeInstanceOf(ResourceNotFoundException);
    expect(error.message).toContain('project/nope');
  });

  it('takes 1 to 100 ids in BatchGetBuilds and lists unknown ids in buildsNotFound', async () => {
    const client = service.client();
    const empty = await rejection(client.send(new BatchGetBuildsCommand({ ids: [] })));
    expect(empty).toBeInstanceOf(InvalidInputException);
    const tooMany = await rejection(client.send(new BatchGetBuildsCommand({ ids: Array.from({ length: 101 }, (_, i) => `quick:${i}`) })));
    expect(tooMany).toBeInstanceOf(InvalidInputException);
    expect(tooMany.message).toContain('100');

    const started = await service.start({ projectName: 'quick' });
    const hundred = [started.id as string, ...Array.from({ length: 99 }, (_, i) => `quick:missing-${i}`)];
    const answer = await client.send(new BatchGetBuildsCommand({ ids: hundred }));
    expect(answer.builds?.map((build) => build.id)).toEqual([started.id]);
    expect(answer.buildsNotFound).toHaveLength(99);
    expect(answer.buildsNotFound?.[0]).toBe('quick:missing-0');
    // A build is also found by its ARN.
    const byArn = await client.send(new BatchGetBuildsCommand({ ids: [started.arn as string] }));
    expect(byArn.builds?.[0]?.id).toBe(started.id);
    await service.waitComplete(started.id as string);
  });

  it('returns the same build for a repeated idempotency token, and refuses it with other parameters', async () => {
    const client = service.client();
    const input = { projectName: 'quick', idempotencyToken: 'token-1', environmentVariablesOverride: [{ name: 'A', value: '1', type: 'PLAINTEXT' as const }] };
    const first = await client.send(new StartBuildCommand(input));
    const again = await client.send(new StartBuildCommand(input));
    expect(again.build?.id).toBe(first.build?.id);
    expect(again.build?.buildNumber).toBe(first.build?.buildNumber);
    const mismatch = await rejection(client.send(new StartBuildCommand({ ...input, environmentVariablesOverride: [{ name: 'A', value: '2', type: 'PLAINTEXT' }] })));
    expect(mismatch).toBeInstanceOf(CodeBuildServiceException);
    expect(mismatch.name).toBe('IdempotentParameterMismatchException');
    const other = await client.send(new StartBuildCommand({ ...input, idempotencyToken: 'token-2' }));
    expect(other.build?.id).not.toBe(first.build?.id);
    const records = service.running.service.records().filter((record) => record.request.idempotencyToken === 'token-1');
    expect(records).toHaveLength(1);
    await service.waitComplete(first.build?.id as string);
    await service.waitComplete(other.build?.id as string);
  });

  it('refuses StopBuild of an unknown build and returns the final status of a finished one', async () => {
    const client = service.client();
    const unknown = await rejection(client.send(new StopBuildCommand({ id: 'quick:00000000-0000-4000-8000-000000000000' })));
    expect(unknown).toBeInstanceOf(ResourceNotFoundException);
    const started = await service.start({ projectName: 'quick' });
    await service.waitComplete(started.id as string);
    const stopped = await client.send(new StopBuildCommand({ id: started.id as string }));
    expect(stopped.build?.buildStatus).toBe('SUCCEEDED');
  });

  it('lists a project’s builds, newest first', async () => {
    const client = service.client();
    const one = await service.start({ projectName: 'other' });
    const two = await service.start({ projectName: 'other' });
    const listed = await client.send(new ListBuildsForProjectCommand({ projectName: 'other' }));
    expect(listed.ids).toEqual([two.id, one.id]);
    const ascending = await client.send(new ListBuildsForProjectCommand({ projectName: 'other', sortOrder: 'ASCENDING' }));
    expect(ascending.ids).toEqual([one.id, two.id]);
    await expect(client.send(new ListBuildsForProjectCommand({ projectName: 'nope' }))).rejects.toBeInstanceOf(ResourceNotFoundException);
    await service.waitComplete(one.id as string);
    await service.waitComplete(two.id as string);
  });

  it('answers unknown operations and malformed bodies with AWS JSON errors', async () => {
    const unknown = await service.raw({ headers: { 'content-type': 'application/x-amz-json-1.1', 'x-amz-target': 'CodeBuild_20161006.DeleteProject' }, body: '{}' });
    expect(unknown.status).toBe(400);
    expect(unknown.headers['x-amzn-errortype']).toBe('UnknownOperationException');
    expect((JSON.parse(unknown.text) as { __type: string }).__type).toBe('UnknownOperationException');

    const malformed = await service.raw({ headers: { 'content-type': 'application/x-amz-json-1.1', 'x-amz-target': 'CodeBuild_20161006.StartBuild' }, body: '{not json' });
    expect(malformed.status).toBe(400);
    expect(malformed.headers['x-amzn-errortype']).toBe('SerializationException');
  });

  it('never logs environment variable values', async () => {
    const marker = 'VALUE-THAT-MUST-NOT-BE-LOGGED';
    const started = await service.start({ projectName: 'quick', environmentVariablesOverride: [{ name: 'LOGGED_NAME', value: marker }] });
    await service.waitComplete(started.id as string);
    const logs = service.logs.join('');
    expect(logs).toContain('LOGGED_NAME');
    expect(logs).not.toContain(marker);
  });
});
