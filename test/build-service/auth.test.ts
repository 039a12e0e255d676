import { ListBuildsForProjectCommand } from '@aws-sdk/client-codebuild';
import { statSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkServiceCredentials, controlTokenFor, formatCredentialsFile, generateServiceCredentials } from '../../src/build-service/credentials.js';
import { HostAllowlist } from '../../src/build-service/host-allowlist.js';
import { rejection, startInProcess, type InProcess } from './harness.js';

// Who may use the build service: only callers with its key (SigV4, as the SDK signs), and
// only through a Host header that names the service itself (no DNS rebinding).

const QUICK = 'version: 0.2\nphases:\n  build:\n    commands:\n      - echo quick\n';
const DUMP_ENV = 'version: 0.2\nphases:\n  build:\n    commands:\n      - env\n';
const JSON_11 = { 'content-type': 'application/x-amz-json-1.1', 'x-amz-target': 'CodeBuild_20161006.ListBuildsForProject' };
const LIST_BODY = JSON.stringify({ projectName: 'quick' });

describe('build service authentication (SigV4 with its own key)', () => {
  let service: InProcess;
  const foreignSecret = 'FOREIGN-SECRET-NOT-FOR-LOGS-0123456789';

  beforeAll(async () => {
    service = await startInProcess({ buildspecs: { quick: QUICK } });
  });

  afterAll(async () => {
    await service?.close();
  });

  function refusedLogs(): { reason: string; code: string; status: number }[] {
    return service.logs.map((line) => JSON.parse(line) as { event?: string; reason: string; code: string; status: number }).filter((record) => record.event === 'build-service.request-refused');
  }

  it('serves requests the SDK signs with the key from its credentials file (mode 0600)', async () => {
    expect(statSync(service.running.credentialsFile).mode & 0o777).toBe(0o600);
    const file = readFileSync(service.running.credentialsFile, 'utf8');
    expect(file).toContain('[cbactions-local]');
    expect(file).toContain(`aws_access_key_id = ${service.running.credentials.accessKeyId}`);
    expect(file).toContain(`aws_secret_access_key = ${service.running.credentials.secretAccessKey}`);
    const listed = await service.client().send(new ListBuildsForProjectCommand({ projectName: 'quick' }));
    expect(listed.ids).toEqual([]);
  });

  it('refuses an unsigned request with MissingAuthenticationTokenException, naming the credentials file', async () => {
    const before = service.running.calls.snapshot().total.calls;
    const answer = await service.raw({ headers: { ...JSON_11, 'x-amz-target': 'CodeBuild_20161006.StartBuild' }, body: JSON.stringify({ projectName: 'quick' }), sign: false });
    expect(answer.status).toBe(403);
    expect(answer.headers['x-amzn-errortype']).toBe('MissingAuthenticationTokenException');
    const body = JSON.parse(answer.text) as { __type: string; message: string };
    expect(body.__type).toBe('MissingAuthenticationTokenException');
    expect(body.message).toContain(service.running.credentialsFile);
    expect(body.message).toContain('AWS_PROFILE=cbactions-local');
    // Refused before it counts as a call, and no build was started.
    expect(service.running.calls.snapshot().total.calls).toBe(before);
    expect(service.running.service.records()).toHaveLength(0);
  });

  it('refuses another access key id with UnrecognizedClientException, and a wrong secret with InvalidSignatureException', async () => {
    const stranger = await rejection(service.client({ credentials: { accessKeyId: 'AKIAOTHERKEY0000000', secretAccessKey: foreignSecret } }).send(new ListBuildsForProjectCommand({ projectName: 'quick' })));
    expect(stranger.name).toBe('UnrecognizedClientException');
    expect(stranger.$metadata?.httpStatusCode).toBe(403);
    expect(stranger.message).toContain('AKIAOTHERKEY0000000');

    const wrongSecret = await rejection(
      service.client({ credentials: { accessKeyId: service.running.credentials.accessKeyId, secretAccessKey: foreignSecret } }).send(new ListBuildsForProjectCommand({ projectName: 'quick' })),
    );
    expect(wrongSecret.name).toBe('InvalidSignatureException');
    expect(wrongSecret.$metadata?.httpStatusCode).toBe(403);
    expect(wrongSecret.message).toContain('does not match the signature you provided');
  });

  it('refuses a request changed after signing (body or a signed header)', async () => {
    const body = await service.raw({ headers: JSON_11, body: LIST_BODY, afterSigning: { body: JSON.stringify({ projectName: 'quic' }) } });
    expect(body.status).toBe(403);
    expect(body.headers['x-amzn-errortype']).toBe('InvalidSignatureException');
    const target = await service.raw({ headers: JSON_11, body: LIST_BODY, afterSigning: { headers: { 'x-amz-target': 'CodeBuild_20161006.StartBuild' } } });
    expect(target.headers['x-amzn-errortype']).toBe('InvalidSignatureException');
    const declaredHash = await service.raw({ headers: { ...JSON_11, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' }, body: LIST_BODY });
    expect(declaredHash.headers['x-amzn-errortype']).toBe('InvalidSignatureException');
    expect(declaredHash.text).toContain('x-amz-content-sha256 does not match the request body');
    // The same request untouched is served.
    const untouched = await service.raw({ headers: JSON_11, body: LIST_BODY });
    expect(untouched.status).toBe(200);
  });

  it('checks the credential scope: region, service, and the signed headers', async () => {
    const region = await rejection(service.client({ region: 'eu-west-1' }).send(new ListBuildsForProjectCommand({ projectName: 'quick' })));
    expect(region.name).toBe('InvalidSignatureException');
    expect(region.message).toContain("serves us-east-1, not 'eu-west-1'");
    const otherService = await service.raw({ headers: JSON_11, body: LIST_BODY, sign: { service: 's3' } });
    expect(otherService.headers['x-amzn-errortype']).toBe('InvalidSignatureException');
    expect(otherService.text).toContain("scoped to correct service: 'codebuild', not 's3'");
    const garbled = await service.raw({ headers: JSON_11, body: LIST_BODY, sign: false, afterSigning: { headers: { authorization: 'AWS4-HMAC-SHA256 Credential=x, Signature=abc' } } });
    expect(garbled.status).toBe(400);
    expect(garbled.headers['x-amzn-errortype']).toBe('IncompleteSignatureException');
    expect(garbled.text).toContain('lacks SignedHeaders');
    const badEscape = await service.raw({ headers: JSON_11, body: LIST_BODY, afterSigning: { path: '/?page=%zz' } });
    expect(badEscape.status).toBe(400);
    expect(badEscape.headers['x-amzn-errortype']).toBe('InvalidInputException');
    expect(badEscape.text).toContain('query parameter page \\"%zz\\" has a malformed % escape');
    const basic = await service.raw({ headers: JSON_11, body: LIST_BODY, sign: false, afterSigning: { headers: { authorization: 'Basic dXNlcjpwYXNz' } } });
    expect(basic.headers['x-amzn-errortype']).toBe('IncompleteSignatureException');
  });

  it('refuses a signature more than 15 minutes off its clock, and takes one within', async () => {
    const minutes = (count: number) => count * 60_000;
    const late = await rejection(service.client({ systemClockOffset: -minutes(20) }).send(new ListBuildsForProjectCommand({ projectName: 'quick' })));
    expect(late.name).toBe('InvalidSignatureException');
    expect(late.message).toMatch(/^Signature expired: \d{8}T\d{6}Z is now earlier than \d{8}T\d{6}Z \(\d{8}T\d{6}Z - 15 min\.\)$/);
    const early = await rejection(service.client({ systemClockOffset: minutes(20) }).send(new ListBuildsForProjectCommand({ projectName: 'quick' })));
    expect(early.name).toBe('InvalidSignatureException');
    expect(early.message).toContain('Signature not yet current');
    const within = await service.client({ systemClockOffset: -minutes(10) }).send(new ListBuildsForProjectCommand({ projectName: 'quick' }));
    expect(within.ids).toEqual([]);
  });

  it('logs every refusal with its reason, never a secret or a signature', () => {
    const refused = refusedLogs();
    expect(refused.map((record) => record.code)).toEqual(expect.arrayContaining(['MissingAuthenticationTokenException', 'UnrecognizedClientException', 'InvalidSignatureException', 'IncompleteSignatureException']));
    const logs = service.logs.join('');
    expect(logs).not.toContain(service.running.credentials.secretAccessKey);
    expect(logs).not.toContain(service.controlToken);
    expect(logs).not.toContain(foreignSecret);
    expect(logs).not.toContain('Signature=');
  });
});

describe('build service control API authentication', () => {
  let service: InProcess;

  beforeAll(async () => {
    service = await startInProcess({ buildspecs: { quick: QUICK } });
  });

  afterAll(async () => {
    await service?.close();
  });

  it('answers 401 without credentials and with a wrong token, and serves the bearer token', async () => {
    for (const path of ['/_local/builds', '/_local/calls', '/_local/faults']) {
      const anonymous = await service.raw({ method: 'GET', path, sign: false });
      expect(anonymous.status).toBe(401);
      expect(anonymous.headers['www-authenticate']).toContain('Bearer');
      expect(JSON.parse(anonymous.text)).toMatchObject({ code: 'MissingAuthenticationTokenException', error: expect.stringContaining('cbactions_control_token') });
    }
    const wrong = await service.raw({ method: 'GET', path: '/_local/faults', sign: false, headers: { authorization: 'Bearer not-the-token' } });
    expect(wrong.status).toBe(401);
    expect(JSON.parse(wrong.text)).toMatchObject({ code: 'UnrecognizedClientException', error: expect.stringContaining('not this build service') });
    expect(service.logs.join('')).not.toContain('not-the-token');
    const ok = await service.raw({ method: 'GET', path: '/_local/faults', sign: false, headers: { authorization: `Bearer ${service.controlToken}` } });
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.text)).toEqual({ buildFailures: [] });
  });

  it('refuses unauthenticated fault injection and leaves the faults as they were', async () => {
    const armed = await service.raw({ method: 'POST', path: '/_local/faults', sign: false, body: JSON.stringify({ accountLimit: {} }) });
    expect(armed.status).toBe(401);
    expect(service.running.faults.snapshot()).toEqual({ buildFailures: [] });
    const started = await service.start({ projectName: 'quick' });
    await service.waitComplete(started.id as string);
  });

  it('also serves SigV4-signed control requests, and refuses a bad signature', async () => {
    const signed = await service.raw({ method: 'POST', path: '/_local/faults', body: JSON.stringify({ throttle: { count: 1, operations: ['StopBuild'] } }) });
    expect(signed.status).toBe(200);
    expect(JSON.parse(signed.text)).toMatchObject({ throttle: { remaining: 1 } });
    const deleted = await service.raw({ method: 'DELETE', path: '/_local/faults' });
    expect(JSON.parse(deleted.text)).toEqual({ buildFailures: [] });
    const forged = await service.raw({ method: 'GET', path: '/_local/calls?verbose=1', sign: { secretAccessKey: 'not-the-secret-at-all' } });
    expect(forged.status).toBe(403);
    expect(JSON.parse(forged.text)).toMatchObject({ code: 'InvalidSignatureException' });
    const query = await service.raw({ method: 'GET', path: '/_local/calls?verbose=1' });
    expect(query.status).toBe(200);
  });

  it('answers a malformed % escape in a path with 400 naming it, not 500', async () => {
    for (const path of ['/_local/builds/%E0%A4%A', '/_local/builds/%zz/log', '/_local/builds/100%']) {
      const answer = await service.raw({ method: 'GET', path, sign: false, headers: { authorization: `Bearer ${service.controlToken}` } });
      expect(answer.status).toBe(400);
      expect(JSON.parse(answer.text)).toMatchObject({ code: 'InvalidInputException', error: expect.stringContaining('has a malformed % escape') });
    }
    const encoded = await service.raw({ method: 'GET', path: `/_local/builds/${encodeURIComponent('quick:no such build')}`, sign: false, headers: { authorization: `Bearer ${service.controlToken}` } });
    expect(encoded.status).toBe(404);
    expect(encoded.text).toContain('no build quick:no such build');
  });
});

describe('build service Host header (DNS rebinding)', () => {
  let service: InProcess;

  beforeAll(async () => {
    service = await startInProcess({ buildspecs: { quick: QUICK }, config: { allowedHosts: ['builds.internal'] } });
  });

  afterAll(async () => {
    await service?.close();
  });

  it('refuses a Host that names another site, before authentication, even with a valid signature', async () => {
    const port = service.running.port;
    const rebound = await service.raw({ headers: { ...JSON_11, host: `evil.example:${port}` }, body: LIST_BODY });
    expect(rebound.status).toBe(403);
    expect(rebound.headers['x-amzn-errortype']).toBe('AccessDeniedException');
    expect(rebound.text).toContain(`Host header \\"evil.example:${port}\\" does not name this build service`);
    expect(rebound.text).toContain(`127.0.0.1:${port}`);
    // Unsigned: still the Host refusal, not the missing signature — nothing else is looked at.
    const unsigned = await service.raw({ headers: { ...JSON_11, host: `evil.example:${port}` }, body: '{not json', sign: false });
    expect(unsigned.headers['x-amzn-errortype']).toBe('AccessDeniedException');
    const control = await service.raw({ method: 'GET', path: '/_local/builds', sign: false, headers: { host: `evil.example:${port}`, authorization: `Bearer ${service.controlToken}` } });
    expect(control.status).toBe(403);
    expect(JSON.parse(control.text)).toMatchObject({ code: 'AccessDeniedException' });
    // The right name on another port is another origin too.
    const otherPort = await service.raw({ headers: { ...JSON_11, host: `127.0.0.1:${port + 1}` }, body: LIST_BODY });
    expect(otherPort.status).toBe(403);
    expect(service.logs.join('')).toContain('"reason":"host-not-allowed"');
  });

  it('serves its own address, the loopback names and the configured extra names', async () => {
    const port = service.running.port;
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `LOCALHOST:${port}`, `[::1]:${port}`, `builds.internal:${port}`]) {
      const answer = await service.raw({ headers: { ...JSON_11, host }, body: LIST_BODY });
      expect({ host, status: answer.status }).toEqual({ host, status: 200 });
    }
  });
});

describe('the service key never reaches the builds', () => {
  it('keeps the key and its variables out of the build environment, even when the service was started with them', async () => {
    const credentials = { accessKeyId: 'CBLOCALTESTKEY000001', secretAccessKey: 'THE-SERVICE-SECRET-0123456789' };
    const service = await startInProcess({
      buildspecs: { dump: DUMP_ENV },
      credentials,
      baseEnv: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        CBACTIONS_BUILD_SERVICE_ACCESS_KEY_ID: credentials.accessKeyId,
        CBACTIONS_BUILD_SERVICE_SECRET_ACCESS_KEY: credentials.secretAccessKey,
        AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey,
        AWS_ACCESS_KEY_ID: 'moto-testing-key',
      },
    });
    try {
      const build = await service.waitComplete((await service.start({ projectName: 'dump' })).id as string);
      expect(build.buildStatus).toBe('SUCCEEDED');
      const log = await service.log(build.id as string);
      // The builds' own AWS variables pass (they are for S3/KMS/STS); the service's do not.
      expect(log).toContain('AWS_ACCESS_KEY_ID=moto-testing-key');
      expect(log).not.toContain(credentials.secretAccessKey);
      expect(log).not.toContain('CBACTIONS_BUILD_SERVICE_');
    } finally {
      await service.close();
    }
  });
});

describe('service credentials', () => {
  it('generates distinct keys shaped like AWS ones, and derives a control token that does not contain the secret', () => {
    const one = generateServiceCredentials();
    const two = generateServiceCredentials();
    expect(one.accessKeyId).toMatch(/^CBLOCAL[A-Z2-7]{13}$/);
    expect(one.secretAccessKey).toHaveLength(40);
    expect(two.accessKeyId).not.toBe(one.accessKeyId);
    expect(two.secretAccessKey).not.toBe(one.secretAccessKey);
    expect(controlTokenFor(one)).toBe(controlTokenFor({ ...one }));
    expect(controlTokenFor(one)).not.toBe(controlTokenFor(two));
    expect(controlTokenFor(one)).not.toContain(one.secretAccessKey);
    expect(formatCredentialsFile('p', one)).toContain(`[p]\naws_access_key_id = ${one.accessKeyId}\naws_secret_access_key = ${one.secretAccessKey}\ncbactions_control_token = ${controlTokenFor(one)}\n`);
  });

  it('accepts a given key pair only whole and well-formed', () => {
    expect(checkServiceCredentials(undefined, undefined)).toBeUndefined();
    expect(checkServiceCredentials('CBLOCALTESTKEY000001', 'a-secret-of-enough-length')).toEqual({ accessKeyId: 'CBLOCALTESTKEY000001', secretAccessKey: 'a-secret-of-enough-length' });
    expect(() => checkServiceCredentials('CBLOCALTESTKEY000001', undefined)).toThrow(/set both or neither/);
    expect(() => checkServiceCredentials('lower-case', 'a-secret-of-enough-length')).toThrow(/CBACTIONS_BUILD_SERVICE_ACCESS_KEY_ID must be/);
    expect(() => checkServiceCredentials('CBLOCALTESTKEY000001', 'short')).toThrow(/CBACTIONS_BUILD_SERVICE_SECRET_ACCESS_KEY must be/);
  });
});

describe('HostAllowlist', () => {
  it('allows its bind address and the loopback names with its port', () => {
    const hosts = new HostAllowlist({ host: '127.0.0.1', port: 4000, extra: [] });
    for (const host of ['127.0.0.1:4000', 'localhost:4000', '[::1]:4000', ' Localhost:4000 ']) expect(hosts.allows(host)).toBe(true);
    for (const host of [undefined, '', '127.0.0.1', 'localhost', 'localhost:4001', 'evil.example:4000', 'localhost.:4000', '127.0.0.1:4000.evil.example']) expect(hosts.allows(host)).toBe(false);
  });

  it('allows every interface address when bound to all of them, names without a port on port 80, and extra names', () => {
    const wildcard = new HostAllowlist({ host: '0.0.0.0', port: 4000, extra: ['builder', 'other:9000', '[fd00::2]'], interfaceAddresses: () => ['10.1.2.3', 'fe80::1'] });
    for (const host of ['0.0.0.0:4000', '10.1.2.3:4000', '[fe80::1]:4000', 'builder:4000', 'other:9000', '[fd00::2]:4000']) expect(wildcard.allows(host)).toBe(true);
    for (const host of ['other:4000', '10.1.2.4:4000', 'builder']) expect(wildcard.allows(host)).toBe(false);
    const http = new HostAllowlist({ host: '::1', port: 80, extra: [] });
    expect(http.allows('[::1]')).toBe(true);
    expect(http.allows('localhost')).toBe(true);
    expect(http.allows('[::1]:80')).toBe(true);
  });
});
