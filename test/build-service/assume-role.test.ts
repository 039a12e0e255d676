import { StartBuildCommand } from '@aws-sdk/client-codebuild';
import { GetCallerIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBuildService, type BuildServiceProcess } from '../support/build-service.js';
import { startMoto, type Moto } from '../support/moto.js';
import { phaseSummary, startInProcess } from './harness.js';

// assumeServiceRole: each build gets its service role's temporary credentials, under
// session name AWSCodeBuild-<uuid>, from STS (moto here, via AWS_ENDPOINT_URL_STS); the
// credentials stay out of records and logs.

const BUILDSPEC = `version: 0.2
phases:
  build:
    commands:
      - printf '%s' "$AWS_ACCESS_KEY_ID" > "$CODEBUILD_SRC_DIR/akid"
      - printf '%s' "$AWS_SECRET_ACCESS_KEY" > "$CODEBUILD_SRC_DIR/secret"
      - printf '%s' "$AWS_SESSION_TOKEN" > "$CODEBUILD_SRC_DIR/token"
`;

describe('assumeServiceRole against moto STS', () => {
  let moto: Moto;
  let service: BuildServiceProcess;

  beforeAll(async () => {
    moto = await startMoto();
    const dir = mkdtempSync(join(tmpdir(), 'cbactions-bs-role-'));
    writeFileSync(join(dir, 'buildspec.yml'), BUILDSPEC);
    service = await startBuildService({
      configDir: dir,
      config: { assumeServiceRole: true, projects: [{ name: 'sealed', buildspec: 'buildspec.yml', serviceRole: 'arn:aws:iam::123456789012:role/project-role' }] },
      env: { AWS_ENDPOINT_URL_STS: moto.endpoint, AWS_ACCESS_KEY_ID: moto.credentials.accessKeyId, AWS_SECRET_ACCESS_KEY: moto.credentials.secretAccessKey, AWS_SESSION_TOKEN: undefined, AWS_PROFILE: undefined },
    });
  }, 90_000);

  afterAll(async () => {
    await service?.stop();
    await moto?.stop();
  });

  it('gives the build the (overridden) service role under session AWSCodeBuild-<uuid>, and nowhere else', async () => {
    const { build } = await service
      .client()
      .send(new StartBuildCommand({ projectName: 'sealed', serviceRoleOverride: 'arn:aws:iam::123456789012:role/override-role' }));
    const id = build?.id as string;
    const uuid = id.split(':')[1] as string;
    const record = await service.waitForBuild(id);
    expect(record.buildStatus).toBe('SUCCEEDED');
    expect(record.roleSessionName).toBe(`AWSCodeBuild-${uuid}`);
    expect(record.build.serviceRole).toBe('arn:aws:iam::123456789012:role/override-role');

    const src = join(service.stateDir, 'builds', uuid, 'src');
    const credentials = {
      accessKeyId: readFileSync(join(src, 'akid'), 'utf8'),
      secretAccessKey: readFileSync(join(src, 'secret'), 'utf8'),
      sessionToken: readFileSync(join(src, 'token'), 'utf8'),
    };
    expect(credentials.accessKeyId).not.toBe(moto.credentials.accessKeyId);
    expect(credentials.sessionToken).not.toBe('');

    const sts = new STSClient({ endpoint: moto.endpoint, region: 'us-east-1', credentials });
    const identity = await sts.send(new GetCallerIdentityCommand({}));
    sts.destroy();
    expect(identity.Arn).toBe(`arn:aws:sts::123456789012:assumed-role/override-role/AWSCodeBuild-${uuid}`);

    const recordFile = readFileSync(join(service.stateDir, 'builds', uuid, 'record.json'), 'utf8');
    const everywhere = [recordFile, JSON.stringify(await service.builds()), await service.log(id), service.stderr()].join('\n');
    expect(everywhere).not.toContain(credentials.secretAccessKey);
    expect(everywhere).not.toContain(credentials.sessionToken);
  });
});

describe('assumeServiceRole when STS refuses', () => {
  it('fails PROVISIONING with CLIENT_ERROR and runs no command', async () => {
    const asked: string[] = [];
    const service = await startInProcess({
      buildspecs: { sealed: BUILDSPEC },
      projects: { sealed: { serviceRole: 'arn:aws:iam::123456789012:role/project-role' } },
      config: { assumeServiceRole: true },
      roleAssumer: {
        assumeRole: async (roleArn, sessionName) => {
          asked.push(`${roleArn} ${sessionName}`);
          throw Object.assign(new Error('User is not authorized to perform: sts:AssumeRole'), { name: 'AccessDenied' });
        },
      },
    });
    try {
      const started = await service.start({ projectName: 'sealed' });
      const build = await service.waitComplete(started.id as string);
      expect(asked).toEqual([`arn:aws:iam::123456789012:role/project-role AWSCodeBuild-${(started.id as string).split(':')[1]}`]);
      expect(build.buildStatus).toBe('FAILED');
      expect(phaseSummary(build)).toEqual(['SUBMITTED:SUCCEEDED', 'QUEUED:SUCCEEDED', 'PROVISIONING:FAILED', 'FINALIZING:SUCCEEDED', 'COMPLETED']);
      const context = build.phases?.[2]?.contexts?.[0];
      expect(context?.statusCode).toBe('CLIENT_ERROR');
      expect(context?.message).toContain('sts:AssumeRole on arn:aws:iam::123456789012:role/project-role');
      expect(existsSync(join(service.stateDir, 'builds', (started.id as string).split(':')[1] as string, 'src', 'akid'))).toBe(false);
    } finally {
      await service.close();
    }
  });
});
