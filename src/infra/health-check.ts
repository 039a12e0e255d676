/**
 * The listener container's health check: `GET /healthz` on the mux's status endpoint
 * (src/mux/status-server.ts), run with the image's Node.js (the image has no curl).
 *
 * /healthz answers 200 whenever the mux's event loop answers, whatever its pools say (pool
 * alerts are in /status and /metrics): an unhealthy task is one whose mux is gone or hung,
 * never one that runs jobs while a pool is stopped. ECS replaces unhealthy tasks even when
 * they hold scale-in protection, so nothing else may make this check fail.
 */

/** Seconds ECS ignores failures after start: the runner group lookup, the stale-registration sweep and the preload probe come before the endpoint listens. */
export const HEALTH_CHECK_START_PERIOD_SECONDS = 120;
export const HEALTH_CHECK_INTERVAL_SECONDS = 30;
export const HEALTH_CHECK_TIMEOUT_SECONDS = 10;
export const HEALTH_CHECK_RETRIES = 3;

/** Where a probe inside the container reaches a server bound to `host`. */
function probeHost(host: string): string {
  const bare = host.replace(/^\[(.*)\]$/, '$1');
  // A wildcard bind answers on loopback.
  if (bare === '' || bare === '0.0.0.0') return '127.0.0.1';
  if (bare === '::') return '[::1]';
  return bare.includes(':') ? `[${bare}]` : bare;
}

/** The /healthz URL for the mux's `statusHost`/`statusPort`; undefined for port 0 (chosen at start, unknown here). */
export function healthzUrl(statusHost: string, statusPort: number): string | undefined {
  if (statusPort === 0) return undefined;
  return `http://${probeHost(statusHost)}:${statusPort}/healthz`;
}

/**
 * The container health check command (exec form): exit 0 on a 2xx from /healthz, 1 on any
 * other answer, no answer, or no answer within 5 s. The URL goes in as a JSON string literal.
 */
export function healthCheckCommand(url: string): string[] {
  const script = `fetch(${JSON.stringify(url)},{signal:AbortSignal.timeout(5000)}).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))`;
  return ['CMD', 'node', '-e', script];
}
