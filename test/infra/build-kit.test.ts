import { App, Stack } from 'aws-cdk-lib';
import { Match } from 'aws-cdk-lib/assertions';
import { mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { BuildKitAsset } from '../../src/infra/build-kit-asset.js';
import { BUILD_KIT_FILES, stageBuildKit } from '../../src/infra/build-kit.js';
import { RepoFiles } from '../../src/infra/paths.js';
import { actionsOf, configInput, logicalId, nagFindings, onlyResource, resolveIntrinsics, resourcesOfType, roleStatements, ROOT, synth, type Statement, type Synthesized } from './helpers.js';

/**
 * The build kit: cbactions for builds on stock CodeBuild images. A pool on such an image with
 * a role of its own, a pool on an existing role, and the project's role.
 */
const INPUT = configInput({
  pools: [
    { name: 'default', labels: ['cbactions'] },
    { name: 'stock', labels: ['stock'], build: { image: 'aws/codebuild/amazonlinux-x86_64-standard:5.0' } },
    { name: 'legacy', labels: ['legacy'], build: { serviceRole: { arn: 'arn:aws:iam::123456789012:role/legacy-builds', roleId: 'AROAEXISTINGROLE1234' } } },
  ],
  deploy: { pools: { stock: { serviceRole: {} } } },
});

const BOOTSTRAP_BUCKET = 'cdk-hnb659fds-assets-${AWS::AccountId}-${AWS::Region}';

let result: Synthesized;
let kit: BuildKitAsset;

beforeAll(() => {
  result = synth(INPUT);
  const found = result.stack.cbactions.buildKit;
  if (found === undefined) throw new Error('no build kit');
  kit = found;
});

function kitObjectArn(): unknown {
  return { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':s3:::', { 'Fn::Sub': BOOTSTRAP_BUCKET }, `/${kit.asset.assetHash}.zip`]] };
}

/** Statements of every policy attached to the existing role (by name). */
function existingRoleStatements(): Statement[] {
  return resourcesOfType(result.json, 'AWS::IAM::Policy')
    .filter(([, policy]) => JSON.stringify((policy.Properties as Record<string, unknown>).Roles).includes('legacy-builds'))
    .flatMap(([, policy]) => ((policy.Properties as Record<string, unknown>).PolicyDocument as { Statement: Statement[] }).Statement);
}

function projectVariables(): { Name: string; Value: unknown }[] {
  const [, project] = onlyResource(result.json, 'AWS::CodeBuild::Project');
  return ((project.Properties as { Environment: { EnvironmentVariables: { Name: string; Value: unknown }[] } }).Environment).EnvironmentVariables;
}

describe('build kit asset', () => {
  it('the project names the kit object in CBACTIONS_KIT_S3_URI', () => {
    const variable = projectVariables().find((entry) => entry.Name === 'CBACTIONS_KIT_S3_URI');
    expect(variable?.Value).toEqual({ 'Fn::Sub': `s3://${BOOTSTRAP_BUCKET}/${kit.asset.assetHash}.zip` });
    result.template.hasResourceProperties('AWS::CodeBuild::Project', {
      Environment: Match.objectLike({ EnvironmentVariables: Match.arrayWith([{ Name: 'CBACTIONS_KIT_S3_URI', Type: 'PLAINTEXT', Value: Match.anyValue() }]) }),
    });
  });

  it('every build role (the project\'s, a pool\'s own, an existing one) may s3:GetObject exactly that object', () => {
    const { stack } = result;
    const perRole: [string, Statement[]][] = [
      ['project role', roleStatements(result.json, logicalId(stack, stack.cbactions.buildRole))],
      ['pool role', roleStatements(result.json, logicalId(stack, stack.cbactions.poolBuildRoles.get('stock')))],
      ['existing role', existingRoleStatements()],
    ];
    for (const [name, statements] of perRole) {
      const reads = statements.filter((statement) => statement.Sid === 'ReadBuildKit');
      expect(reads, name).toEqual([{ Sid: 'ReadBuildKit', Effect: 'Allow', Action: 's3:GetObject', Resource: kitObjectArn() }]);
    }
  });

  it('the grant and the variable name the same object', () => {
    const uri = String(resolveIntrinsics(projectVariables().find((entry) => entry.Name === 'CBACTIONS_KIT_S3_URI')?.Value, result.json));
    const arn = String(resolveIntrinsics(kitObjectArn(), result.json));
    expect(uri).toBe(`s3://cdk-hnb659fds-assets-123456789012-eu-west-1/${kit.asset.assetHash}.zip`);
    expect(arn).toBe(`arn:aws:s3:::${uri.slice('s3://'.length)}`);
  });

  it('nothing else reaches the bootstrap bucket: no list, no other object, not the task role', () => {
    const { stack } = result;
    let seen = 0;
    for (const [, policy] of resourcesOfType(result.json, 'AWS::IAM::Policy')) {
      for (const statement of ((policy.Properties as Record<string, unknown>).PolicyDocument as { Statement: Statement[] }).Statement) {
        if (!JSON.stringify(statement).includes('cdk-hnb659fds-assets-')) continue;
        expect(statement).toEqual({ Sid: 'ReadBuildKit', Effect: 'Allow', Action: 's3:GetObject', Resource: kitObjectArn() });
        seen++;
      }
    }
    // The project's role, the pool's own role, the existing role.
    expect(seen).toBe(3);
    const task = roleStatements(result.json, logicalId(stack, stack.cbactions.taskRole));
    expect(task.some((statement) => statement.Sid === 'ReadBuildKit')).toBe(false);
    expect(task.flatMap(actionsOf)).not.toContain('s3:GetObject');
  });

  it('cdk-nag reports nothing unsuppressed', () => {
    expect(nagFindings(result.annotations)).toEqual([]);
  });

  it('holds exactly what the entrypoint needs, laid out like /opt/cbactions in the build image, scripts executable', () => {
    const dir = join((result.stack.node.root as App).outdir, kit.asset.assetPath);
    const files = (function walk(at: string): string[] {
      return readdirSync(at, { withFileTypes: true }).flatMap((entry) => (entry.isDirectory() ? walk(join(at, entry.name)) : [relative(dir, join(at, entry.name))]));
    })(dir);
    expect(files.sort()).toEqual(['bin/cbactions', 'dist/src/cli/main.js', 'docker/install-runner.sh', 'docker/runner-checksums.txt', 'docker/start-dockerd.sh', 'package.json']);
    expect(readFileSync(join(dir, 'dist/src/cli/main.js')).equals(readFileSync(join(ROOT, RepoFiles.bundle)))).toBe(true);
    expect(readFileSync(join(dir, 'package.json'), 'utf8')).toBe(readFileSync(join(ROOT, 'docker/image-package.json'), 'utf8'));
    for (const file of ['bin/cbactions', 'docker/install-runner.sh', 'docker/start-dockerd.sh']) expect(statSync(join(dir, file)).mode & 0o777, file).toBe(0o755);
    // The same layout docker/build.Dockerfile copies to /opt/cbactions.
    const dockerfile = readFileSync(join(ROOT, RepoFiles.buildDockerfile), 'utf8');
    expect(dockerfile).toContain('COPY dist/bundle/cbactions.mjs /opt/cbactions/dist/src/cli/main.js');
    expect(dockerfile).toContain('COPY docker/image-package.json /opt/cbactions/package.json');
    expect(BUILD_KIT_FILES.map((file) => file.path).sort()).toEqual(files.sort());
  });

  it('has the same hash from one synthesis to the next (no redeploy without a change)', () => {
    const hash = () => new BuildKitAsset(new Stack(new App(), 'KitOnly'), 'Kit', { repositoryRoot: ROOT }).asset.assetHash;
    expect(hash()).toBe(hash());
    expect(hash()).toBe(kit.asset.assetHash);
  });

  it('staging names "npm run build" when a built file is missing', () => {
    const empty = mkdtempSync(join(tmpdir(), 'kit-root-'));
    expect(() => stageBuildKit(empty, mkdtempSync(join(tmpdir(), 'kit-out-')))).toThrow(/dist\/bundle\/cbactions\.mjs.*run "npm run build" first/);
  });

  it('without the repository there is no kit, and a pool image gets a warning naming the field', () => {
    const bare = synth(
      configInput({
        pools: [
          { name: 'default', labels: ['cbactions'] },
          { name: 'stock', labels: ['stock'], build: { image: 'aws/codebuild/amazonlinux-x86_64-standard:5.0' } },
        ],
        deploy: { images: { listener: 'public.ecr.aws/example/listener:1', build: 'public.ecr.aws/example/build:1' } },
      }),
      { assets: false },
    );
    expect(bare.stack.cbactions.buildKit).toBeUndefined();
    const [, project] = onlyResource(bare.json, 'AWS::CodeBuild::Project');
    const names = (project.Properties as { Environment: { EnvironmentVariables: { Name: string }[] } }).Environment.EnvironmentVariables.map((entry) => entry.Name);
    expect(names).toEqual(['CBACTIONS_RUNNER_ROOT']);
    expect(JSON.stringify(bare.json).includes('ReadBuildKit')).toBe(false);
    bare.annotations.hasWarning('*', Match.stringLikeRegexp('^pools\\[1\\]\\.build\\.image: pool "stock" runs on aws/codebuild/amazonlinux-x86_64-standard:5\\.0, and without the repository'));
  });
});
