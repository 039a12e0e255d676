import { AssumeRoleCommand, type STSClient } from '@aws-sdk/client-sts';

/** Temporary credentials a build receives as AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN. */
export interface TemporaryCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken: string;
}

/** Gives a build its service role, as CodeBuild does, under session name `AWSCodeBuild-<uuid>`. */
export interface RoleAssumer {
  assumeRole(roleArn: string, sessionName: string, durationSeconds: number): Promise<TemporaryCredentials>;
}

/** STS AssumeRole; the client's endpoint comes from the SDK's standard AWS_ENDPOINT_URL_STS. */
export function stsRoleAssumer(client: STSClient): RoleAssumer {
  return {
    async assumeRole(roleArn, sessionName, durationSeconds) {
      const output = await client.send(new AssumeRoleCommand({ RoleArn: roleArn, RoleSessionName: sessionName, DurationSeconds: durationSeconds }));
      const credentials = output.Credentials;
      if (!credentials?.AccessKeyId || !credentials.SecretAccessKey || !credentials.SessionToken) {
        throw new Error(`STS AssumeRole returned no credentials for ${roleArn}`);
      }
      return { accessKeyId: credentials.AccessKeyId, secretAccessKey: credentials.SecretAccessKey, sessionToken: credentials.SessionToken };
    },
  };
}
