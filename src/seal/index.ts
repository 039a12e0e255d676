/** The seal library's public surface: envelope, adapters, identity, references. */
export * from './types.js';
export * from './errors.js';
export { ContextKey, encryptionContextFor, canonicalContext, contextsEqual } from './context.js';
export { sealPayload, openPayload, parseEnvelope, type EnvelopeHeader, type ParsedEnvelope, ENVELOPE_MAGIC, ENVELOPE_VERSION, MAX_PLAINTEXT_BYTES } from './envelope.js';
export { LocalKeyService, createLocalKeyFile, readLocalKeyFile, localKeyFingerprint, LOCAL_KEY_BYTES } from './local-key-service.js';
export { LocalPayloadStore, localObjectName, type LocalPayloadStoreOptions } from './local-payload-store.js';
export { KmsKeyService, sameKmsKey, type KmsKeyServiceOptions } from './kms-key-service.js';
export { S3PayloadStore, type S3PayloadStoreOptions } from './s3-payload-store.js';
export { buildUuid, expectedSessionName, expectedUserId, resolveBuildBinding, CODEBUILD_SESSION_PREFIX } from './identity.js';
export * from './references.js';
export * from './factory.js';
