import { Stack, type StackProps } from 'aws-cdk-lib';
import type { Construct } from 'constructs';
import { DeploySchema } from '../config/deploy-schema.js';
import type { Config } from '../config/schema.js';
import { Cbactions, type CbactionsProps } from './cbactions.js';
import { suppressJustifiedFindings } from './nag.js';

export interface CbactionsStackProps extends StackProps, CbactionsProps {}

/** One cbactions deployment: the `Cbactions` construct and cdk-nag's justified exceptions. */
export class CbactionsStack extends Stack {
  readonly cbactions: Cbactions;

  constructor(scope: Construct, id: string, props: CbactionsStackProps) {
    super(scope, id, props);
    this.cbactions = new Cbactions(this, 'Cbactions', props);
    suppressJustifiedFindings(this, this.cbactions);
  }
}

/** Stack name and environment from the config (`deploy.stackName`, `deploy.account`, `deploy.region` or `codebuild.region`). */
export function stackIdentity(config: Config): { stackName: string; env: { account?: string; region?: string } } {
  const deploy = config.deploy ?? DeploySchema.parse({});
  const region = deploy.region ?? config.codebuild.region;
  return {
    stackName: deploy.stackName,
    env: { ...(deploy.account === undefined ? {} : { account: deploy.account }), ...(region === undefined ? {} : { region }) },
  };
}
