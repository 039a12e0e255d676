import { z } from 'zod';

/** An IAM role builds run as (StartBuild `serviceRoleOverride`). */
export const ServiceRoleSchema = z.strictObject({
  arn: z.string().regex(/^arn:aws[a-zA-Z-]*:iam::\d{12}:role\/.+$/, 'expected an IAM role ARN'),
  /**
   * The role's unique id (AROA…), which IAM puts in `aws:userid`. Payload object keys and
   * KMS encryption contexts are bound to it; the CDK app fills it in.
   */
  roleId: z.string().regex(/^AROA[A-Z0-9]{8,}$/, 'expected a role unique id (AROA…)').optional(),
});

