/**
 * ECS task scale-in protection against the fake ECS agent. The race tests hold each of the
 * agent's answers until the test releases it, so a change can land while a request is in
 * flight; renewals run on a manual clock.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { TaskProtection } from '../../src/mux/task-protection.js';
import { startFakeEcsAgent, type FakeEcsAgent } from '../support/fake-ecs-agent.js';
import { ManualClock } from '../support/manual-clock.js';
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

  it('renews when the renewal time comes on its clock, and not before', async () => {
    agent = await startFakeEcsAgent();
    agent.holdAnswers();
    const clock = new ManualClock();
    const protection = new TaskProtection({ agentUri: agent.uri, expiresInMinutes: 1, logger: captureLogger().logger, clock });
    protection.setDesired(true);
    (await agent.nextHeld()).release();
    // Half of the 1-minute expiry: the loop sleeps on that timer and nothing else.
    await waitFor('the renewal timer', () => protection.enabled && clock.pending.includes(30_000));
    expect(agent.requests).toHaveLength(1);
    clock.advance(29_999);
    expect(clock.pending).toEqual([1]);
    clock.advance(1);
    const renewal = await agent.nextHeld();
    expect(renewal.request.body).toEqual({ ProtectionEnabled: true, ExpiresInMinutes: 1 });
    renewal.release();
    await waitFor('the next renewal timer', () => clock.pending.includes(30_000));
    const closing = protection.close();
    (await agent.nextHeld()).release();
    await closing;
    expect(agent.protectionHistory).toEqual([true, true, false]);
    expect(agent.enabled).toBe(false);
  });

  it('a job that starts while protection is being cleared ends protected', async () => {
    agent = await startFakeEcsAgent();
    agent.holdAnswers();
    const clock = new ManualClock();
    const protection = new TaskProtection({ agentUri: agent.uri, expiresInMinutes: 15, logger: captureLogger().logger, clock });
    protection.setDesired(true);
    (await agent.nextHeld()).release();
    await waitFor('protection', () => protection.enabled);
    protection.setDesired(false);
    const clearing = await agent.nextHeld();
    expect(clearing.request.body).toEqual({ ProtectionEnabled: false });
    // A new job, while the clear is in flight: once the clear is answered, protect again.
    protection.setDesired(true);
    clearing.release();
    const again = await agent.nextHeld();
    expect(again.request.body).toEqual({ ProtectionEnabled: true, ExpiresInMinutes: 15 });
    again.release();
    await waitFor('protection again', () => agent?.enabled === true && protection.enabled);
    expect(agent.protectionHistory).toEqual([true, false, true]);
    expect(clock.now()).toBe(new ManualClock().now());
    const closing = protection.close();
    (await agent.nextHeld()).release();
    await closing;
  });

  it('the last job ending while protection is being enabled clears it at once, not at renewal time', async () => {
    agent = await startFakeEcsAgent();
    agent.holdAnswers();
    // The clock never moves: only the change itself can trigger the clear.
    const clock = new ManualClock();
    const protection = new TaskProtection({ agentUri: agent.uri, expiresInMinutes: 60, logger: captureLogger().logger, clock });
    protection.setDesired(true);
    const enabling = await agent.nextHeld();
    protection.setDesired(false);
    enabling.release();
    const clearing = await agent.nextHeld();
    expect(clearing.request.body).toEqual({ ProtectionEnabled: false });
    clearing.release();
    await waitFor('cleared', () => agent?.enabled === false && agent.protectionHistory.length === 2 && !protection.enabled);
    expect(agent.protectionHistory).toEqual([true, false]);
    // Idle and unprotected: no timer left, nothing more to send.
    expect(clock.pending).toEqual([]);
    await protection.close();
    expect(agent.requests).toHaveLength(2);
  });

  it('close() while a request is in flight waits for it, then clears, and settles', async () => {
    agent = await startFakeEcsAgent();
    agent.holdAnswers();
    const clock = new ManualClock();
    const protection = new TaskProtection({ agentUri: agent.uri, expiresInMinutes: 60, logger: captureLogger().logger, clock });
    protection.setDesired(true);
    const enabling = await agent.nextHeld();
    let settled = false;
    const closing = protection.close().then(() => {
      settled = true;
    });
    // Nothing else is sent while the enable is in flight: the clear must come after it.
    expect(agent.requests).toHaveLength(1);
    enabling.release();
    const clearing = await agent.nextHeld();
    expect(clearing.request.body).toEqual({ ProtectionEnabled: false });
    expect(settled).toBe(false);
    clearing.release();
    await closing;
    expect(agent.protectionHistory).toEqual([true, false]);
    expect(agent.enabled).toBe(false);
    expect(protection.enabled).toBe(false);
    // Closed: later wishes are ignored.
    protection.setDesired(true);
    expect(agent.requests).toHaveLength(2);
  });

  it('an enable that got no answer may have reached ECS: it is cleared when idle', async () => {
    agent = await startFakeEcsAgent();
    agent.holdAnswers();
    const logs = captureLogger();
    // Retries wait on this clock, which never moves: the only request after the reset is the clear.
    const clock = new ManualClock();
    const protection = new TaskProtection({ agentUri: agent.uri, expiresInMinutes: 60, logger: logs.logger, clock });
    protection.setDesired(true);
    (await agent.nextHeld()).drop();
    await waitFor('the enable to fail', () => logs.records.find((record) => record.event === 'mux.task-protection-failed' && record.protect === true));
    expect(protection.enabled).toBe(false);
    protection.setDesired(false);
    const clearing = await agent.nextHeld();
    expect(clearing.request.body).toEqual({ ProtectionEnabled: false });
    clearing.release();
    await waitFor('cleared', () => agent?.protectionHistory.length === 1);
    await protection.close();
    expect(agent.protectionHistory).toEqual([false]);
    expect(agent.requests).toHaveLength(2);
  });

  it('close() during an enable that never gets an answer settles once the request times out, and clears', async () => {
    agent = await startFakeEcsAgent();
    agent.holdAnswers();
    const protection = new TaskProtection({ agentUri: agent.uri, expiresInMinutes: 60, logger: captureLogger().logger, requestTimeoutMs: 1_000, retry: { initialMs: 10, maxMs: 20 } });
    protection.setDesired(true);
    await agent.nextHeld(); // never answered
    const closing = protection.close();
    // Enables may have been retried meanwhile (none is answered); the clear comes after them.
    let clearing = await agent.nextHeld();
    while (clearing.request.body?.ProtectionEnabled !== false) clearing = await agent.nextHeld();
    clearing.release();
    await closing;
    expect(agent.enabled).toBe(false);
    expect(agent.protectionHistory).toEqual([false]);
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

  it('keeps running when the agent is unreachable, and close() does not retry a refused connection', async () => {
    // A port nothing listens on (fetch refuses some well-known ports, such as 9, before connecting).
    const closed = await startFakeEcsAgent();
    const unreachable = closed.uri;
    await closed.stop();
    const logs = captureLogger();
    const protection = new TaskProtection({ agentUri: unreachable, expiresInMinutes: 5, logger: logs.logger, retry: { initialMs: 10, maxMs: 20 } });
    protection.setDesired(true);
    await waitFor('failures logged', () => logs.events().filter((event) => event === 'mux.task-protection-failed').length >= 2);
    expect(protection.enabled).toBe(false);
    await protection.close();
    // A refused connection never reached the agent: nothing to clear.
    expect(logs.records.filter((record) => record.event === 'mux.task-protection-failed' && record.protect === false)).toEqual([]);
  });
});
