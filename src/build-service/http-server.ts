import { randomUUID } from 'node:crypto';
import type { z } from 'zod';
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { formatIssues } from '../config/load.js';
import type { Logger } from '../util/logger.js';
import { describeError } from '../util/errors.js';
import { AwsErrorCode, AwsServiceError } from './aws-error.js';
import type { CallCounter } from './call-counter.js';
import { FaultsSchema, isBuildAction, type FaultState } from './faults.js';
import type { HostAllowlist } from './host-allowlist.js';
import type { LocalCodeBuild } from './local-codebuild.js';
import type { RequestAuthenticator, SignatureClaim } from './request-auth.js';
import { SimulationUpdateSchema, type SimulationState } from './simulate.js';
import { decodeComponent } from './uri.js';
import { CONTROL_TOKEN_KEY } from './credentials.js';

/** AWS JSON 1.1 names the operation in this header: `CodeBuild_20161006.<Operation>`. */
const TARGET_PREFIX = 'CodeBuild_20161006.';
const JSON_11 = 'application/x-amz-json-1.1';
/** 100 overrides of 4 KiB fit many times over; anything bigger is not a CodeBuild request. */
const MAX_BODY_BYTES = 16 * 1024 * 1024;

export interface BuildServiceHttpDeps {
  service: LocalCodeBuild;
  faults: FaultState;
  simulation: SimulationState;
  calls: CallCounter;
  logger: Logger;
  authenticator: RequestAuthenticator;
  /** Filled once the server listens (its port is known only then); until then every request is refused. */
  hosts: () => HostAllowlist | undefined;
}

type Operation = (body: unknown) => unknown;

/**
 * The HTTP face of the build service: the CodeBuild API at `POST /` (AWS SigV4 with the
 * service's key) and the control API under `/_local/` (plain JSON, not CodeBuild; the
 * bearer control token or SigV4). Every request first needs a Host header naming the
 * service itself, so a browser page can't reach it through DNS rebinding.
 */
export function createBuildServiceServer(deps: BuildServiceHttpDeps): Server {
  const operations: Record<string, Operation> = {
    StartBuild: (body) => deps.service.startBuild(body),
    BatchGetBuilds: (body) => deps.service.batchGetBuilds(body),
    StopBuild: (body) => deps.service.stopBuild(body),
    ListBuildsForProject: (body) => deps.service.listBuildsForProject(body),
  };

  return createServer((request, response) => {
    void handle(request, response).catch((error: unknown) => {
      deps.logger.error({ event: 'build-service.request-failed', error: describeError(error) }, 'request failed');
      if (!response.headersSent) sendJson(response, 500, { error: 'internal error' });
      else response.destroy();
    });
  });

  async function handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const target = request.url ?? '/';
    const queryStart = target.indexOf('?');
    const rawPath = queryStart < 0 ? target : target.slice(0, queryStart);
    const rawQuery = queryStart < 0 ? '' : target.slice(queryStart + 1);
    const control = rawPath === '/_local' || rawPath.startsWith('/_local/');
    const hosts = deps.hosts();
    if (!hosts?.allows(request.headers.host)) {
      // Before authentication and before the body: a rebinding page learns nothing.
      const message = `Host header "${truncate(request.headers.host ?? '(none)')}" does not name this build service; it answers only ${hosts?.examples().join(', ') ?? '(not listening yet)'} (protection against DNS rebinding)`;
      refuse(request, control, response, new AwsServiceError(AwsErrorCode.AccessDenied, message, 403), 'host-not-allowed');
      return;
    }
    if (control) {
      await handleControl(request, response, rawPath, rawQuery);
      return;
    }
    await handleApi(request, response, rawPath, rawQuery);
  }

  /** Logs a refused request (never its Authorization header or body) and answers it in the surface's error shape. */
  function refuse(request: IncomingMessage, control: boolean, response: ServerResponse, error: AwsServiceError, reason: string): void {
    deps.logger.warn(
      { event: 'build-service.request-refused', reason, code: error.code, status: error.httpStatus, method: request.method, path: truncate((request.url ?? '').split('?')[0] ?? ''), remoteAddress: request.socket.remoteAddress },
      'request refused',
    );
    // The body may be unread: don't keep the connection for whatever else it sends.
    response.setHeader('connection', 'close');
    if (control) sendJson(response, error.httpStatus, { error: error.message, code: error.code });
    else sendAwsError(response, randomUUID(), error);
  }

  async function handleApi(request: IncomingMessage, response: ServerResponse, rawPath: string, rawQuery: string): Promise<void> {
    const requestId = randomUUID();
    const target = String(request.headers['x-amz-target'] ?? '');
    const operationName = target.startsWith(TARGET_PREFIX) ? target.slice(TARGET_PREFIX.length) : target;
    let claim: SignatureClaim;
    try {
      claim = deps.authenticator.claim(request.headers);
    } catch (error) {
      if (!(error instanceof AwsServiceError)) throw error;
      refuse(request, false, response, error, 'unauthenticated');
      return;
    }
    let bytes: Buffer;
    try {
      bytes = await readBody(request);
    } catch (error) {
      sendAwsError(response, requestId, new AwsServiceError(AwsErrorCode.Serialization, describeError(error), 413));
      return;
    }
    try {
      await deps.authenticator.verify(claim, { method: request.method ?? 'GET', rawPath, rawQuery, headers: request.headers, body: bytes });
    } catch (error) {
      if (!(error instanceof AwsServiceError)) throw error;
      refuse(request, false, response, error, 'bad-signature');
      return;
    }
    const text = bytes.toString('utf8');
    const operation = request.method === 'POST' && target.startsWith(TARGET_PREFIX) ? operations[operationName] : undefined;
    if (!operation) {
      deps.calls.record(operationName || '(none)', false);
      sendAwsError(response, requestId, new AwsServiceError(AwsErrorCode.UnknownOperation, `Operation ${target || '(no X-Amz-Target header)'} is not supported by the local build service`));
      return;
    }
    const throttled = deps.faults.takeThrottle(operationName);
    deps.calls.record(operationName, throttled);
    if (throttled) {
      deps.logger.debug({ event: 'api.throttled', operation: operationName }, 'call throttled');
      sendAwsError(response, requestId, new AwsServiceError(AwsErrorCode.Throttling, 'Rate exceeded'));
      return;
    }
    let body: unknown;
    try {
      body = text.trim() === '' ? {} : (JSON.parse(text) as unknown);
    } catch {
      sendAwsError(response, requestId, new AwsServiceError(AwsErrorCode.Serialization, 'the request body is not valid JSON'));
      return;
    }
    try {
      const result = operation(body);
      deps.logger.debug({ event: 'api.call', operation: operationName, status: 200 }, 'api call');
      response.writeHead(200, { 'content-type': JSON_11, 'x-amzn-requestid': requestId });
      response.end(JSON.stringify(result));
    } catch (error) {
      if (error instanceof AwsServiceError) {
        deps.logger.info({ event: 'api.error', operation: operationName, code: error.code }, 'api call refused');
        sendAwsError(response, requestId, error);
        return;
      }
      deps.logger.error({ event: 'api.fault', operation: operationName, error: describeError(error) }, 'api call faulted');
      sendAwsError(response, requestId, new AwsServiceError(AwsErrorCode.InternalFailure, `local build service error: ${describeError(error)}`, 500));
    }
  }

  async function handleControl(request: IncomingMessage, response: ServerResponse, path: string, rawQuery: string): Promise<void> {
    const method = request.method ?? 'GET';
    let body: Buffer = Buffer.alloc(0);
    const bearer = deps.authenticator.controlBearer(request.headers);
    if (bearer === 'invalid') {
      const message = `The bearer token is not this build service's control token (${CONTROL_TOKEN_KEY} in its credentials file)`;
      refuse(request, true, response, new AwsServiceError(AwsErrorCode.UnrecognizedClient, message, 401), 'bad-token');
      return;
    }
    let claim: SignatureClaim | undefined;
    if (bearer === 'none') {
      // No control token: then it must be signed like an API call.
      try {
        claim = deps.authenticator.claim(request.headers);
      } catch (error) {
        if (!(error instanceof AwsServiceError)) throw error;
        if (error.code !== AwsErrorCode.MissingAuthenticationToken) {
          refuse(request, true, response, error, 'unauthenticated');
          return;
        }
        response.setHeader('www-authenticate', 'Bearer realm="cbactions build service"');
        const message = `${error.message}, or send "Authorization: Bearer <the ${CONTROL_TOKEN_KEY} of the same profile>"`;
        refuse(request, true, response, new AwsServiceError(error.code, message, 401), 'unauthenticated');
        return;
      }
    }
    if (claim !== undefined || method === 'POST' || method === 'PUT') {
      try {
        body = await readBody(request);
      } catch (error) {
        sendJson(response, 413, { error: describeError(error), code: AwsErrorCode.Serialization });
        return;
      }
    }
    if (claim !== undefined) {
      try {
        await deps.authenticator.verify(claim, { method, rawPath: path, rawQuery, headers: request.headers, body });
      } catch (error) {
        if (!(error instanceof AwsServiceError)) throw error;
        refuse(request, true, response, error, 'bad-signature');
        return;
      }
    }
    let parts: string[];
    try {
      parts = path.split('/').filter((part) => part !== '').map((part) => decodeComponent(part, 'path segment'));
    } catch (error) {
      if (!(error instanceof AwsServiceError)) throw error;
      sendJson(response, 400, { error: error.message, code: error.code });
      return;
    }
    const [, resource, id, sub] = parts;
    if (resource === 'builds' && id !== undefined && method === 'POST' && parts.length === 4) {
      if (!isBuildAction(sub)) {
        sendJson(response, 404, { error: `no such build action: ${truncate(sub ?? '')} (freeze, thaw, kill)` });
        return;
      }
      try {
        sendJson(response, 200, await deps.service.signalBuild(id, sub));
      } catch (error) {
        if (!(error instanceof AwsServiceError)) throw error;
        sendJson(response, error.code === AwsErrorCode.ResourceNotFound ? 404 : 409, { error: error.message, code: error.code });
      }
      return;
    }
    if (resource === 'builds' && method === 'GET') {
      if (id === undefined) {
        sendJson(response, 200, { builds: deps.service.records() });
        return;
      }
      const record = deps.service.record(id);
      if (!record) {
        sendJson(response, 404, { error: `no build ${id}` });
        return;
      }
      if (sub === undefined) {
        sendJson(response, 200, record);
        return;
      }
      if (sub === 'log' && method === 'GET') {
        const log = await readFile(record.logFile, 'utf8').catch(() => '');
        response.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
        response.end(log);
        return;
      }
    }
    if (resource === 'calls' && id === undefined) {
      if (method === 'GET') {
        sendJson(response, 200, deps.calls.snapshot());
        return;
      }
      if (method === 'DELETE') {
        deps.calls.reset();
        sendJson(response, 200, deps.calls.snapshot());
        return;
      }
    }
    if (resource === 'faults' && id === undefined) {
      if (method === 'GET') {
        sendJson(response, 200, deps.faults.snapshot());
        return;
      }
      if (method === 'DELETE') {
        deps.faults.clear();
        deps.logger.info({ event: 'build-service.faults-cleared' }, 'faults cleared');
        sendJson(response, 200, deps.faults.snapshot());
        return;
      }
      if (method === 'POST' || method === 'PUT') {
        const parsed = parseControlBody(response, body, FaultsSchema, 'faults');
        if (!parsed) return;
        deps.faults.set(parsed.data);
        deps.logger.info({ event: 'build-service.faults-set', kinds: Object.keys(parsed.data) }, 'faults set');
        sendJson(response, 200, deps.faults.snapshot());
        return;
      }
    }
    if (resource === 'simulate' && id === undefined) {
      if (method === 'GET') {
        sendJson(response, 200, deps.simulation.snapshot());
        return;
      }
      if (method === 'DELETE') {
        deps.simulation.clear();
        deps.logger.info({ event: 'build-service.simulation-cleared' }, 'simulated delays cleared');
        sendJson(response, 200, deps.simulation.snapshot());
        return;
      }
      if (method === 'POST' || method === 'PUT') {
        const parsed = parseControlBody(response, body, SimulationUpdateSchema, 'simulation');
        if (!parsed) return;
        const { project, ...simulation } = parsed.data;
        if (project !== undefined && !deps.service.hasProject(project)) {
          sendJson(response, 400, { error: 'invalid simulation', issues: [`project: no project "${project}" in this build service`] });
          return;
        }
        deps.simulation.set(simulation, project);
        deps.logger.info({ event: 'build-service.simulation-set', project, ...simulation }, 'simulated delays set');
        sendJson(response, 200, deps.simulation.snapshot());
        return;
      }
    }
    sendJson(response, 404, { error: `no such control endpoint: ${method} ${path}` });
  }
}

/** A control request's JSON body checked by `schema`; undefined (a 400 sent, naming `what`) when it is not. */
function parseControlBody<T>(response: ServerResponse, body: Buffer, schema: z.ZodType<T>, what: string): { data: T } | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(body.toString('utf8')) as unknown;
  } catch (error) {
    sendJson(response, 400, { error: `the ${what} must be a JSON object: ${describeError(error)}` });
    return undefined;
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    sendJson(response, 400, { error: `invalid ${what}`, issues: formatIssues(parsed.error.issues) });
    return undefined;
  }
  return { data: parsed.data };
}

function sendJson(response: ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { 'content-type': 'application/json' });
  response.end(`${JSON.stringify(body)}\n`);
}

function sendAwsError(response: ServerResponse, requestId: string, error: AwsServiceError): void {
  response.writeHead(error.httpStatus, {
    'content-type': JSON_11,
    'x-amzn-errortype': error.code,
    'x-amzn-requestid': requestId,
  });
  response.end(JSON.stringify({ __type: error.code, message: error.message }));
}

function truncate(text: string): string {
  return text.length > 100 ? `${text.slice(0, 100)}…` : text;
}

function readBody(request: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    request.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        reject(new Error(`request body over ${MAX_BODY_BYTES} bytes`));
        request.destroy();
        return;
      }
      chunks.push(chunk);
    });
    request.on('end', () => resolve(Buffer.concat(chunks)));
    request.on('error', reject);
  });
}
