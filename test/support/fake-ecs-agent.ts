/**
 * A fake of the ECS agent's task-protection endpoint (`PUT ${ECS_AGENT_URI}/task-protection/v1/state`),
 * a real HTTP server on 127.0.0.1. It records every request and answers like the agent:
 * `{"protection": {...}}` on success; `failNext(n)` makes the next n requests fail with 500.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ProtectionRequest {
  method: string;
  path: string;
  body: { ProtectionEnabled?: unknown; ExpiresInMinutes?: unknown } | undefined;
  status: number;
  at: number;
}

export class FakeEcsAgent {
  readonly requests: ProtectionRequest[] = [];
  /** The protection state after the last successful PUT. */
  enabled = false;
  #failures = 0;
  #server: Server | undefined;
  #url = '';

  /** The value for ECS_AGENT_URI. */
  get uri(): string {
    return this.#url;
  }

  failNext(count: number): void {
    this.#failures = count;
  }

  /** Successful PUTs, in order: true = protection requested, false = cleared. */
  get protectionHistory(): boolean[] {
    return this.requests.filter((request) => request.status === 200).map((request) => request.body?.ProtectionEnabled === true);
  }

  async start(): Promise<this> {
    this.#server = createServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () => {
        let body: ProtectionRequest['body'];
        try {
          body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as ProtectionRequest['body'];
        } catch {
          body = undefined;
        }
        const record: ProtectionRequest = { method: request.method ?? '', path: request.url ?? '', body, status: 0, at: Date.now() };
        this.requests.push(record);
        const reply = (status: number, value: unknown) => {
          record.status = status;
          response.writeHead(status, { 'content-type': 'application/json' });
          response.end(JSON.stringify(value));
        };
        if (request.method !== 'PUT' || request.url !== '/task-protection/v1/state') {
          reply(404, { error: { Code: 'NotFound', Message: 'unknown path' } });
          return;
        }
        if (this.#failures > 0) {
          this.#failures -= 1;
          reply(500, { error: { Code: 'ServerException', Message: 'injected failure' } });
          return;
        }
        if (typeof body?.ProtectionEnabled !== 'boolean' || (body.ProtectionEnabled && typeof body.ExpiresInMinutes !== 'number')) {
          reply(400, { error: { Code: 'InvalidParameterException', Message: 'ProtectionEnabled (and ExpiresInMinutes when true) required' } });
          return;
        }
        this.enabled = body.ProtectionEnabled;
        const expiration = body.ProtectionEnabled ? new Date(Date.now() + Number(body.ExpiresInMinutes) * 60_000).toISOString() : null;
        reply(200, { protection: { ExpirationDate: expiration, ProtectionEnabled: body.ProtectionEnabled, TaskArn: 'arn:aws:ecs:us-east-1:123456789012:task/cbactions/0123456789abcdef' } });
      });
    });
    await new Promise<void>((resolve) => this.#server?.listen(0, '127.0.0.1', resolve));
    const { port } = this.#server.address() as AddressInfo;
    this.#url = `http://127.0.0.1:${port}`;
    return this;
  }

  async stop(): Promise<void> {
    const server = this.#server;
    if (!server) return;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }
}

export async function startFakeEcsAgent(): Promise<FakeEcsAgent> {
  return new FakeEcsAgent().start();
}
