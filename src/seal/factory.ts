import type { KMSClient } from '@aws-sdk/client-kms';
import type { S3Client } from '@aws-sdk/client-s3';
import { CbactionsError } from '../util/errors.js';
import { SealErrorCode } from './errors.js';
import { KmsKeyService } from './kms-key-service.js';
import { LocalKeyService } from './local-key-service.js';
import { LocalPayloadStore } from './local-payload-store.js';
import type { PayloadKeyRef, PayloadRefs, PayloadStoreRef } from './references.js';
import { formatPayloadKeyRef, formatPayloadStoreRef } from './references.js';
import { S3PayloadStore } from './s3-payload-store.js';
import type { KeyService, PayloadStore } from './types.js';

/** SDK clients built by `main`; only those the references need must be present. */
export interface SealClients {
  kms?: KMSClient;
  s3?: S3Client;
}

export interface PayloadServices {
  keys: KeyService;
  store: PayloadStore;
}

export interface PayloadStoreFactoryOptions {
  /** SSE-KMS key for S3 objects (set automatically when the payload key is KMS). */
  kmsKeyId?: string;
  /** Poll interval of `take` while waiting. */
  pollMs?: number;
}

function missing(client: string, reference: string): CbactionsError {
  return new CbactionsError(SealErrorCode.MissingClient, `payload reference ${reference} needs a ${client} client, and none was passed in`);
}

/** A key service for a reference; reads (and checks) a local key file. */
export async function createKeyService(ref: PayloadKeyRef, clients: SealClients): Promise<KeyService> {
  if (ref.kind === 'local') return LocalKeyService.fromFile(ref.file);
  if (clients.kms === undefined) throw missing('KMS', formatPayloadKeyRef(ref));
  return new KmsKeyService({ client: clients.kms, keyId: ref.keyId });
}

export function createPayloadStore(ref: PayloadStoreRef, clients: SealClients, options: PayloadStoreFactoryOptions = {}): PayloadStore {
  if (ref.kind === 'local') return new LocalPayloadStore({ dir: ref.dir, ...(options.pollMs === undefined ? {} : { pollMs: options.pollMs }) });
  if (clients.s3 === undefined) throw missing('S3', formatPayloadStoreRef(ref));
  return new S3PayloadStore({
    client: clients.s3,
    bucket: ref.bucket,
    prefix: ref.prefix,
    ...(options.kmsKeyId === undefined ? {} : { kmsKeyId: options.kmsKeyId }),
    ...(options.pollMs === undefined ? {} : { pollMs: options.pollMs }),
  });
}

/** Both halves; an S3 store with a KMS key also encrypts objects at rest with that key. */
export async function createPayloadServices(refs: PayloadRefs, clients: SealClients, options: { pollMs?: number } = {}): Promise<PayloadServices> {
  const kmsKeyId = refs.key.kind === 'kms' ? refs.key.keyId : undefined;
  const store = createPayloadStore(refs.store, clients, { ...options, ...(kmsKeyId === undefined ? {} : { kmsKeyId }) });
  const keys = await createKeyService(refs.key, clients);
  return { keys, store };
}
