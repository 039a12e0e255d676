/**
 * A fake of the ECS agent's task-protection endpoint (`PUT ${ECS_AGENT_URI}/task-protection/v1/state`),
 * a real HTTP server on 127.0.0.1. It records every request and answers like the agent:
 * `{"protection": {...}}` on success; `failNext(n)` makes the next n requests fail with 500.
 * After `holdAnswers()` every answer waits until the test releases it (`nextHeld()`), so a
 * test decides what happens while a request is in flight; the agent's state changes when
 * the answer goes out, as the real agent's does when its call to ECS returns.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ProtectionRequest {
  method: string;
  path: string;
  body: { ProtectionEnabled?: unknown; ExpiresInMinutes?: unknown } | undefined;
  /** 0 while the answer is held. */
  status: number;
  at: number;
}

/** A request whose answer the test holds. */
export interface HeldRequest {
  request: ProtectionRequest;
  /** Sends the answer the agent would have sent. */
  release(): void;
  /** Resets the connection instead: the client never learns whether the agent acted. */
  drop(): void;
}

export class FakeEcsAgent {
  readonly requests: ProtectionRequest[] = [];
  /** The protection state after the last successful PUT. */
  enabled = false;
  #failures = 0;
  #holding = false;
  /** Held requests not yet handed to the test, oldest first. */
  readonly #held: HeldRequest[] = [];
  readonly #heldListeners = new Set<() => void>();
  #server: Server | undefined;
  #url = '';

  /** The value for ECS_AGENT_URI. */
  get uri(): string {
    return this.#url;
  }

  failNext(count: number): void {
    this.#failures = count;
  }

  /** From now on every answer waits for the test: take requests with `nextHeld()`. */
  holdAnswers(): void {
    this.#holding = true;
  }

  /** The oldest held request not handed out yet, as soon as one arrives. */
  nextHeld(timeoutMs = 20_000): Promise<HeldRequest> {
    return new Promise<HeldRequest>((resolve, reject) => {
      const check = () => {
        const held = this.#held.shift();
        if (!held) return;
        this.#heldListeners.delete(check);
        clearTimeout(timer);
        resolve(held);
      };
      const timer = setTimeout(() => {
        this.#heldListeners.delete(check);
        reject(new Error(`the fake ECS agent got no request within ${timeoutMs} ms (requests so far: ${JSON.stringify(this.requests.map((request) => request.body))})`));
      }, timeoutMs);
      this.#heldListeners.add(check);
      check();
    });
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
        const answer = this.#decide(body, reply);
        if (!this.#holding) {
          answer();
          return;
        }
        let released = false;
        this.#held.push({
          request: record,
          release: () => {
            if (released) return;
            released = true;
            answer();
          },
          drop: () => {
            if (released) return;
            released = true;
            request.socket.destroy();
          },
        });
        for (const listener of [...this.#heldListeners]) listener();
      });
    });
    await new Promise<void>((resolve) => this.#server?.listen(0, '127.0.0.1', resolve));
    const { port } = this.#server.address() as AddressInfo;
    this.#url = `http://127.0.0.1:${port}`;
    return this;
  }

  /** What the agent will answer to this request; run it to answer. */
  #decide(body: ProtectionRequest['body'], reply: (status: number, value: unknown) => void): () => void {
    if (this.#failures > 0) {
      this.#failures -= 1;
      return () => reply(500, { error: { Code: 'ServerException', Message: 'injected failure' } });
    }
    if (typeof body?.ProtectionEnabled !== 'boolean' || (body.ProtectionEnabled && typeof body.ExpiresInMinutes !== 'number')) {
      return () => reply(400, { error: { Code: 'InvalidParameterException', Message: 'ProtectionEnabled (and ExpiresInMinutes when true) required' } });
    }
    const protect = body.ProtectionEnabled;
    const minutes = Number(body.ExpiresInMinutes);
    return () => {
      this.enabled = protect;
      const expiration = protect ? new Date(Date.now() + minutes * 60_000).toISOString() : null;
      reply(200, { protection: { ExpirationDate: expiration, ProtectionEnabled: protect, TaskArn: 'arn:aws:ecs:us-east-1:123456789012:task/cbactions/0123456789abcdef' } });
    };
  }

  async stop(): Promise<void> {
    const server = this.#server;
    if (!server) return;
    for (const held of this.#held.splice(0)) held.release();
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }
}

export async function startFakeEcsAgent(): Promise<FakeEcsAgent> {
  return new FakeEcsAgent().start();
}
