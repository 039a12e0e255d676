import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { Hash } from '@smithy/hash-node';
import { SignatureV4 } from '@smithy/signature-v4';
import { AwsErrorCode, AwsServiceError } from './aws-error.js';
import { controlTokenFor, type ServiceCredentials } from './credentials.js';
import { decodeComponent } from './uri.js';

/** The service name CodeBuild clients sign for (the SDK's `signingName`). */
export const SIGNING_SERVICE = 'codebuild';
const ALGORITHM = 'AWS4-HMAC-SHA256';
/** AWS refuses a signature whose X-Amz-Date is more than 15 minutes off its own clock. */
export const MAX_CLOCK_SKEW_MS = 15 * 60 * 1000;
const AMZ_DATE_PATTERN = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/;

/** What a caller sent, as it came off the wire. */
export interface IncomingSignedRequest {
  method: string;
  /** The path as sent (still percent-encoded), without the query. */
  rawPath: string;
  /** What follows `?` in the request target, or ''. */
  rawQuery: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** The parts of a SigV4 Authorization header, checked as far as they can be before the body is read. */
export interface SignatureClaim {
  accessKeyId: string;
  shortDate: string;
  region: string;
  signedHeaders: string[];
  signature: string;
  signingDate: Date;
}

export interface RequestAuthenticatorOptions {
  credentials: ServiceCredentials;
  /** The one region the service serves; the credential scope must name it. */
  region: string;
  now: () => number;
  /** Tells a refused caller where the right credentials are (no secret in it). */
  credentialsHint: string;
}

/**
 * Decides whether a request comes from someone holding the service's key: AWS SigV4 as
 * the AWS SDK sends it (recomputed with @smithy/signature-v4 over the headers the caller
 * signed, compared in constant time), or for the control API a bearer token derived from
 * the key. Every refusal is an AwsServiceError naming the cause and never the secret.
 */
export class RequestAuthenticator {
  private readonly signer: SignatureV4;
  private readonly controlTokenDigest: Buffer;

  constructor(private readonly options: RequestAuthenticatorOptions) {
    // applyChecksum off: a verifier must sign exactly the headers the caller signed, not add x-amz-content-sha256.
    this.signer = new SignatureV4({ credentials: options.credentials, region: options.region, service: SIGNING_SERVICE, sha256: Hash.bind(null, 'sha256'), uriEscapePath: true, applyChecksum: false });
    this.controlTokenDigest = sha256(Buffer.from(controlTokenFor(options.credentials)));
  }

  /** Everything about the signature that needs no body: key id, scope, date and clock skew. Run before reading the body. */
  claim(headers: IncomingHttpHeaders): SignatureClaim {
    const authorization = singleHeader(headers, 'authorization');
    if (authorization === undefined || authorization.trim() === '') {
      throw new AwsServiceError(AwsErrorCode.MissingAuthenticationToken, `Missing Authentication Token: the local build service accepts only requests signed (AWS SigV4) with its own key; use ${this.options.credentialsHint}`, 403);
    }
    const [algorithm, ...rest] = authorization.trim().split(/\s+/);
    if (algorithm !== ALGORITHM) {
      throw incomplete(`Authorization header algorithm "${truncate(algorithm ?? '')}" is not supported; expected ${ALGORITHM} (SigV4)`);
    }
    const fields = new Map<string, string>();
    for (const part of rest.join(' ').split(',')) {
      const match = /^\s*([A-Za-z]+)=(.*?)\s*$/.exec(part);
      if (match?.[1] !== undefined && match[2] !== undefined) fields.set(match[1], match[2]);
    }
    const missing = ['Credential', 'SignedHeaders', 'Signature'].filter((name) => !fields.get(name));
    if (missing.length > 0) throw incomplete(`Authorization header lacks ${missing.join(', ')}`);
    const scope = (fields.get('Credential') ?? '').split('/');
    const [accessKeyId, shortDate, region, service, terminator] = scope;
    if (scope.length !== 5 || !accessKeyId || !shortDate || !region || !service || terminator !== 'aws4_request') {
      throw incomplete(`Credential must have the form <access key id>/<YYYYMMDD>/<region>/${SIGNING_SERVICE}/aws4_request`);
    }
    if (accessKeyId !== this.options.credentials.accessKeyId) {
      throw new AwsServiceError(
        AwsErrorCode.UnrecognizedClient,
        `The security token included in the request is invalid: access key id ${truncate(accessKeyId)} is not this build service's key; use ${this.options.credentialsHint}`,
        403,
      );
    }
    if (service !== SIGNING_SERVICE) throw new AwsServiceError(AwsErrorCode.InvalidSignature, `Credential should be scoped to correct service: '${SIGNING_SERVICE}', not '${truncate(service)}'`, 403);
    if (region !== this.options.region) {
      throw new AwsServiceError(AwsErrorCode.InvalidSignature, `Credential should be scoped to a valid region: this build service serves ${this.options.region}, not '${truncate(region)}'`, 403);
    }
    const signature = fields.get('Signature') ?? '';
    if (!/^[0-9a-f]{64}$/.test(signature)) throw incomplete('Signature must be 64 lower-case hexadecimal digits');
    const signedHeaders = (fields.get('SignedHeaders') ?? '').split(';');
    for (const required of ['host', 'x-amz-date']) {
      if (!signedHeaders.includes(required)) throw incomplete(`SignedHeaders must include ${required}`);
    }
    for (const name of signedHeaders) {
      if (name !== name.toLowerCase() || name === '' || name === 'authorization') throw incomplete(`SignedHeaders holds an invalid name "${truncate(name)}"`);
      if (singleHeader(headers, name) === undefined) throw incomplete(`signed header ${truncate(name)} is not in the request`);
    }
    const amzDate = singleHeader(headers, 'x-amz-date') ?? '';
    const signingDate = parseAmzDate(amzDate);
    if (!signingDate) throw incomplete(`X-Amz-Date must have the form YYYYMMDDTHHMMSSZ, got "${truncate(amzDate)}"`);
    if (amzDate.slice(0, 8) !== shortDate) {
      throw new AwsServiceError(AwsErrorCode.InvalidSignature, `Credential date ${truncate(shortDate)} does not match X-Amz-Date ${amzDate}`, 403);
    }
    const now = this.options.now();
    if (signingDate.getTime() < now - MAX_CLOCK_SKEW_MS) {
      throw new AwsServiceError(AwsErrorCode.InvalidSignature, `Signature expired: ${amzDate} is now earlier than ${formatAmzDate(now - MAX_CLOCK_SKEW_MS)} (${formatAmzDate(now)} - 15 min.)`, 400);
    }
    if (signingDate.getTime() > now + MAX_CLOCK_SKEW_MS) {
      throw new AwsServiceError(AwsErrorCode.InvalidSignature, `Signature not yet current: ${amzDate} is still later than ${formatAmzDate(now + MAX_CLOCK_SKEW_MS)} (${formatAmzDate(now)} + 15 min.)`, 400);
    }
    return { accessKeyId, shortDate, region, signedHeaders, signature, signingDate };
  }

  /** Recomputes the signature over the request as received; throws unless it is the one the caller sent. */
  async verify(claim: SignatureClaim, request: IncomingSignedRequest): Promise<void> {
    const declaredHash = singleHeader(request.headers, 'x-amz-content-sha256');
    // The signer trusts a declared payload hash; the body must really have it.
    if (declaredHash !== undefined && declaredHash !== sha256(request.body).toString('hex')) {
      throw new AwsServiceError(AwsErrorCode.InvalidSignature, 'x-amz-content-sha256 does not match the request body (unsigned payloads are not accepted)', 403);
    }
    const headers: Record<string, string> = {};
    for (const name of claim.signedHeaders) headers[name] = singleHeader(request.headers, name) ?? '';
    const signed = await this.signer.sign(
      { method: request.method, protocol: 'http:', hostname: headers.host ?? '', path: request.rawPath, query: parseQuery(request.rawQuery), headers, body: request.body },
      { signingDate: claim.signingDate, signingRegion: claim.region, signingService: SIGNING_SERVICE, signableHeaders: new Set(claim.signedHeaders) },
    );
    const expected = /Signature=([0-9a-f]{64})$/.exec(String(signed.headers.authorization ?? ''))?.[1];
    if (expected === undefined || !timingSafeEqual(Buffer.from(expected), Buffer.from(claim.signature))) {
      throw new AwsServiceError(
        AwsErrorCode.InvalidSignature,
        'The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.',
        403,
      );
    }
  }

  /** SigV4 (claim, then verify) in one step, for callers that already hold the body. */
  async authenticate(request: IncomingSignedRequest): Promise<void> {
    await this.verify(this.claim(request.headers), request);
  }

  /** Whether the request carries `Authorization: Bearer <token>` and whether that is the control token (compared in constant time). */
  controlBearer(headers: IncomingHttpHeaders): 'none' | 'valid' | 'invalid' {
    const authorization = singleHeader(headers, 'authorization') ?? '';
    if (!/^Bearer(\s|$)/i.test(authorization)) return 'none';
    const token = /^Bearer\s+(\S+)\s*$/i.exec(authorization)?.[1];
    if (token === undefined) return 'invalid';
    return timingSafeEqual(sha256(Buffer.from(token)), this.controlTokenDigest) ? 'valid' : 'invalid';
  }
}

function incomplete(message: string): AwsServiceError {
  return new AwsServiceError(AwsErrorCode.IncompleteSignature, message, 400);
}

function sha256(bytes: Buffer): Buffer {
  return createHash('sha256').update(bytes).digest();
}

/** Caller-controlled text quoted in an error: short, so an error never echoes a whole header. */
function truncate(text: string): string {
  return text.length > 64 ? `${text.slice(0, 64)}…` : text;
}

function singleHeader(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value.join(',') : value;
}

function parseAmzDate(text: string): Date | undefined {
  const match = AMZ_DATE_PATTERN.exec(text);
  if (!match) return undefined;
  const [, year, month, day, hour, minute, second] = match.map(Number) as [number, number, number, number, number, number, number];
  const date = new Date(Date.UTC(year, month - 1, day, hour, minute, second));
  // Rejects 20261399T..., which Date.UTC would roll over into another day.
  return formatAmzDate(date.getTime()) === text ? date : undefined;
}

function formatAmzDate(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z').replace(/[-:]/g, '');
}

/** The query as the signer wants it: decoded names and values, repeated names as arrays. */
function parseQuery(rawQuery: string): Record<string, string | string[]> {
  // No prototype: a caller's `__proto__=` is just a name.
  const query = Object.create(null) as Record<string, string | string[]>;
  for (const pair of rawQuery.split('&')) {
    if (pair === '') continue;
    const equals = pair.indexOf('=');
    const name = decodeComponent(equals < 0 ? pair : pair.slice(0, equals), 'query parameter name');
    const value = equals < 0 ? '' : decodeComponent(pair.slice(equals + 1), `query parameter ${name}`);
    const previous = query[name];
    query[name] = previous === undefined ? value : Array.isArray(previous) ? [...previous, value] : [previous, value];
  }
  return query;
}
