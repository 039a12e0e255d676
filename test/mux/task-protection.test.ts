/** ECS task scale-in protection against the fake ECS agent. */
import { afterEach, describe, expect, it } from 'vitest';
import { TaskProtection } from '../../src/mux/task-protection.js';
import { startFakeEcsAgent, type FakeEcsAgent } from '../support/fake-ecs-agent.js';
import { waitFor } from './helpers.js';
import { captureLogger } from './capture-logger.js';

describe('TaskProtection', () => {
  let agent: FakeEcsAgent | undefined;
  afterEach(async () => {
    await agent?.stop();
    agent = undefined;
  });

  it('is a logged no-op without ECS_AGENT_URI', async () => {
    const logs = captureLogger();
    const protection = new TaskProtection({ agentUri: undefined, expiresInMinutes: 10, logger: logs.logger });
    protection.setDesired(true);
    protection.setDesired(false);
    await protection.close();
    expect(protection.available).toBe(false);
    expect(protection.enabled).toBe(false);
    expect(logs.events()).toEqual(['mux.task-protection-unavailable', 'mux.task-protection-skipped', 'mux.task-protection-skipped']);
  });

  it('sets protection while busy and clears it when idle, with the agent request body', async () => {
    agent = await startFakeEcsAgent();
    const logs = captureLogger();
    const protection = new TaskProtection({ agentUri: agent.uri, expiresInMinutes: 15, logger: logs.logger });
    protection.setDesired(true);
    // The agent records the request before our client has read the answer: wait for both sides.
    await waitFor('protection', () => agent?.enabled === true && protection.enabled);
    expect(agent.requests[0]).toMatchObject({ method: 'PUT', path: '/task-protection/v1/state', body: { ProtectionEnabled: true, ExpiresInMinutes: 15 }, status: 200 });
    protection.setDesired(false);
    await waitFor('cleared', () => agent?.enabled === false && agent.requests.length === 2 && !protection.enabled);
    expect(agent.requests[1]?.body).toEqual({ ProtectionEnabled: false });
    await protection.close();
    expect(agent.protectionHistory).toEqual([true, false]);
  });

  it('renews before expiry while busy', async () => {
    agent = await startFakeEcsAgent();
    const protection = new TaskProtection({ agentUri: agent.uri, expiresInMinutes: 1, renewAfterMs: 50, logger: captureLogger().logger });
    protection.setDesired(true);
    await waitFor('three protection requests', () => (agent?.protectionHistory.length ?? 0) >= 3);
    expect(agent.protectionHistory.slice(0, 3)).toEqual([true, true, true]);
    await protection.close();
    expect(agent.protectionHistory.at(-1)).toBe(false);
    expect(agent.enabled).toBe(false);
  });

  it('logs and retries failures, never throws', async () => {
    agent = await startFakeEcsAgent();
    agent.failNext(2);
    const logs = captureLogger();
    const protection = new TaskProtection({ agentUri: agent.uri, expiresInMinutes: 5, logger: logs.logger, retry: { initialMs: 10, maxMs: 20 } });
    protection.setDesired(true);
    await waitFor('protection after two failures', () => agent?.enabled);
    expect(agent.requests.map((request) => request.status)).toEqual([500, 500, 200]);
    expect(logs.events().filter((event) => event === 'mux.task-protection-failed')).toHaveLength(2);
    await protection.close();
  });

  it('keeps running when the agent is unreachable', async () => {
    const logs = captureLogger();
    const protection = new TaskProtection({ agentUri: 'http://127.0.0.1:9', expiresInMinutes: 5, logger: logs.logger, retry: { initialMs: 10, maxMs: 20 } });
    protection.setDesired(true);
    await waitFor('failures logged', () => logs.events().filter((event) => event === 'mux.task-protection-failed').length >= 2);
    expect(protection.enabled).toBe(false);
    await protection.close();
  });
});
