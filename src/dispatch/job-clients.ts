import { CodeBuildClient } from '@aws-sdk/client-codebuild';
import { KMSClient } from '@aws-sdk/client-kms';
import { S3Client } from '@aws-sdk/client-s3';
import { dirname } from 'node:path';
import type { Config } from '../config/schema.js';
import { createPayloadServices, payloadRefsFromConfig } from '../seal/index.js';
import type { KeyService, PayloadStore } from '../seal/types.js';
import { AwsCodeBuildApi } from './codebuild-api.js';

/** The AWS side of the job path: one set per `cbactions worker`, one for a whole mux. */
export interface PayloadServices {
  keys: KeyService;
  store: PayloadStore;
}

export interface JobClients {
  builds: AwsCodeBuildApi;
  /**
   * The key service and payload store, made on first use (a local key file is read then):
   * a mux whose key is unusable still starts, and each job reports the problem as a worker
   * would. A failed attempt is not kept, so the next job tries again.
   */
  payloads(): Promise<PayloadServices>;
  /** Closes the SDK clients' sockets. */
  destroy(): void;
}

/**
 * Builds the CodeBuild client and the payload services (KMS/S3 or the local key and
 * store) the config names. Called only from a binary's main.
 */
export function createJobClients(config: Config, configPath: string, env: NodeJS.ProcessEnv): JobClients {
  const refs = payloadRefsFromConfig(config.payloads, { baseDir: dirname(configPath) });
  const region = config.codebuild.region ?? env.AWS_REGION;
  const clientConfig = region ? { region } : {};
  // Retries are ours (jittered, with the idempotency token): one SDK attempt per call.
  const codebuild = new CodeBuildClient({ ...clientConfig, maxAttempts: 1 });
  const kms = refs.key.kind === 'kms' ? new KMSClient(clientConfig) : undefined;
  const s3 = refs.store.kind === 's3' ? new S3Client(clientConfig) : undefined;
  const destroy = () => {
    codebuild.destroy();
    kms?.destroy();
    s3?.destroy();
  };
  let services: Promise<PayloadServices> | undefined;
  const payloads = (): Promise<PayloadServices> => {
    services ??= createPayloadServices(refs, { ...(kms ? { kms } : {}), ...(s3 ? { s3 } : {}) }).catch((error: unknown) => {
      services = undefined;
      throw error;
    });
    return services;
  };
  return { builds: new AwsCodeBuildApi(codebuild), payloads, destroy };
}
