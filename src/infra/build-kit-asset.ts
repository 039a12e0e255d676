import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as iam from 'aws-cdk-lib/aws-iam';
import { Asset } from 'aws-cdk-lib/aws-s3-assets';
import { DISABLE_ASSET_STAGING_CONTEXT } from 'aws-cdk-lib/cx-api';
import { Construct } from 'constructs';
import { stageBuildKit } from './build-kit.js';

export interface BuildKitAssetProps {
  /**
   * The repository root after `npm run build`: the kit is staged from its built files
   * (`bin/cbactions`, the bundle, the scripts and checksums under docker/) at synth.
   */
  readonly repositoryRoot: string;
}

/**
 * The build kit (src/infra/build-kit.ts) as a zipped S3 asset in the CDK bootstrap bucket,
 * for builds on images without cbactions. Build roles may read exactly this one object.
 */
export class BuildKitAsset extends Construct {
  readonly asset: Asset;
  /** `s3://<bucket>/<key>` of the zip: the project's CBACTIONS_KIT_S3_URI. */
  readonly s3Uri: string;
  /** ARN of that one object, the only resource of the read grant. */
  readonly objectArn: string;

  constructor(scope: Construct, id: string, props: BuildKitAssetProps) {
    super(scope, id);
    // Staged in a fresh directory: the asset is a copy of exactly the kit's files, and two
    // apps synthesizing at once (tests) never share a directory.
    const staging = mkdtempSync(join(tmpdir(), 'cbactions-build-kit-'));
    try {
      stageBuildKit(props.repositoryRoot, staging);
      this.asset = new Asset(this, 'Asset', { path: staging, displayName: 'cbactions build kit' });
    } catch (error) {
      rmSync(staging, { recursive: true, force: true });
      throw error;
    }
    // The asset copied the directory into the cloud assembly, unless staging is disabled
    // (then the assembly points at this directory, which must stay).
    if (!this.node.tryGetContext(DISABLE_ASSET_STAGING_CONTEXT)) rmSync(staging, { recursive: true, force: true });
    this.s3Uri = this.asset.s3ObjectUrl;
    this.objectArn = this.asset.bucket.arnForObjects(this.asset.s3ObjectKey);
  }

  /**
   * `s3:GetObject` on the kit's object only. Not `Asset.grantRead`: that grants reading and
   * listing the whole bootstrap bucket (every stack's assets). No KMS statement: the
   * bootstrap bucket's key (AWS managed, or the key bootstrap creates) lets principals of
   * the account decrypt through S3.
   */
  grantRead(role: iam.IRole): void {
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'ReadBuildKit',
        actions: ['s3:GetObject'],
        resources: [this.objectArn],
      }),
    );
  }
}
