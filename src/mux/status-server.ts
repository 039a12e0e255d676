/** The mux's local HTTP endpoint: `/healthz`, `/status` (JSON), `/metrics` (Prometheus). */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { describeError } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import type { MuxStatus } from './status-model.js';

export interface StatusServerOptions {
  host: string;
  port: number;
  status: () => MuxStatus;
  metrics: Registry;
  logger: Logger;
}

export interface StatusServer {
  /** `http://host:port` as bound (port 0 resolved). */
  url: string;
  close(): Promise<void>;
}

export async function startStatusServer(options: StatusServerOptions): Promise<StatusServer> {
  const server: Server = createServer((request, response) => {
    const path = (request.url ?? '/').split('?')[0];
    const send = (status: number, type: string, body: string) => {
      response.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
      response.end(body);
    };
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      send(405, 'text/plain; charset=utf-8', 'method not allowed\n');
      return;
    }
    try {
      if (path === '/healthz') {
        // Liveness: the mux answers. Pool alerts are in /status and /metrics, not here, so a
        // health check never kills a task that still runs jobs.
        send(200, 'text/plain; charset=utf-8', 'ok\n');
      } else if (path === '/status') {
        send(200, 'application/json; charset=utf-8', `${JSON.stringify(options.status(), null, 2)}\n`);
      } else if (path === '/metrics') {
        options.metrics.metrics().then(
          (text) => send(200, options.metrics.contentType, text),
          (error: unknown) => send(500, 'text/plain; charset=utf-8', `metrics failed: ${describeError(error)}\n`),
        );
      } else {
        send(404, 'text/plain; charset=utf-8', 'not found: try /healthz, /status or /metrics\n');
      }
    } catch (error) {
      options.logger.error({ event: 'mux.status-request-failed', path, error: describeError(error) });
      send(500, 'text/plain; charset=utf-8', 'internal error\n');
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    url: `http://${host}:${address.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
