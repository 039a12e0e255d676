import { Match } from 'aws-cdk-lib/assertions';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { healthCheckCommand, healthzUrl } from '../../src/infra/health-check.js';
import { startStatusServer } from '../../src/mux/status-server.js';
import type { MuxStatus } from '../../src/mux/status-model.js';
import { configInput, onlyResource, synth } from './helpers.js';

const run = promisify(execFile);
const IMAGES = { listener: 'public.ecr.aws/example/listener:1', build: 'public.ecr.aws/example/build:1' };

/** Runs the health check's command as ECS would (exec form, without the leading "CMD"). */
async function probe(command: string[]): Promise<number> {
  const [, executable, ...args] = command;
  const resolved = executable === 'node' ? process.execPath : String(executable);
  try {
    await run(resolved, args, { timeout: 15_000 });
    return 0;
  } catch (error) {
    return (error as { code?: number }).code ?? -1;
  }
}

function healthCheckOf(json: Record<string, unknown>): Record<string, unknown> | undefined {
  const [, definition] = onlyResource(json, 'AWS::ECS::TaskDefinition');
  const containers = (definition.Properties as { ContainerDefinitions: { HealthCheck?: Record<string, unknown> }[] }).ContainerDefinitions;
  return containers[0]?.HealthCheck;
}

describe('listener health check', () => {
  it('probes the configured status endpoint, on loopback for wildcard binds', () => {
    expect(healthzUrl('127.0.0.1', 8080)).toBe('http://127.0.0.1:8080/healthz');
    expect(healthzUrl('0.0.0.0', 9090)).toBe('http://127.0.0.1:9090/healthz');
    expect(healthzUrl('::', 9090)).toBe('http://[::1]:9090/healthz');
    expect(healthzUrl('::1', 9090)).toBe('http://[::1]:9090/healthz');
    expect(healthzUrl('10.0.0.5', 80)).toBe('http://10.0.0.5:80/healthz');
    expect(healthzUrl('127.0.0.1', 0)).toBeUndefined();
  });

  it('exits 0 while the mux status server answers, 1 once it is gone (node only, no curl)', async () => {
    const server = await startStatusServer({
      host: '127.0.0.1',
      port: 0,
      // /healthz must not depend on the pools: a status with a stopped pool changes nothing.
      status: () => ({ pools: [{ name: 'default', labels: ['x'], slots: 1, stopped: { reason: 'deprecated', exitCode: 7 } }] }) as unknown as MuxStatus,
      metrics: new Registry(),
      logger: pino({ level: 'silent' }),
    });
    const url = healthzUrl('127.0.0.1', Number(new URL(server.url).port));
    if (url === undefined) throw new Error('no url');
    const command = healthCheckCommand(url);
    expect(command.slice(0, 3)).toEqual(['CMD', 'node', '-e']);
    expect(await probe(command)).toBe(0);
    await server.close();
    expect(await probe(command)).toBe(1);
  });

  it('the task definition follows mux.statusHost / statusPort', () => {
    const { json } = synth(configInput({ mux: { statusHost: '0.0.0.0', statusPort: 9090 }, deploy: { images: IMAGES } }), { assets: false });
    expect(healthCheckOf(json)).toEqual({
      Command: ['CMD', 'node', '-e', expect.stringContaining('fetch("http://127.0.0.1:9090/healthz"')],
      StartPeriod: 120,
      Interval: 30,
      Timeout: 10,
      Retries: 3,
    });
  });

  it('port 0 (chosen at start) gets no health check, and a warning that says why', () => {
    const { json, annotations } = synth(configInput({ mux: { statusPort: 0 }, deploy: { images: IMAGES } }), { assets: false });
    expect(healthCheckOf(json)).toBeUndefined();
    annotations.hasWarning('*', Match.stringLikeRegexp('^mux\\.statusPort: 0 lets the mux pick a port at start'));
  });
});
