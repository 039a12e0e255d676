/**
 * Task protection under every interleaving fast-check can think of: wishes change while
 * requests are in flight, answers come in any order relative to them. Whatever happens,
 * once everything settles the agent holds the last wish, never two requests are in
 * flight, and close() ends with protection cleared. The agent is an injected fetch whose
 * answers the test releases one by one; time stands still (a manual clock).
 */
import fc from 'fast-check';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { TaskProtection } from '../../src/mux/task-protection.js';
import { ManualClock } from '../support/manual-clock.js';

type Action = { kind: 'desire'; protect: boolean } | { kind: 'answer' } | { kind: 'turn' };

const action: fc.Arbitrary<Action> = fc.oneof(
  fc.boolean().map((protect) => ({ kind: 'desire' as const, protect })),
  fc.constant({ kind: 'answer' as const }),
  fc.constant({ kind: 'turn' as const }),
);

/** An ECS agent as a fetch function: each request waits in `inFlight` until answered. */
function heldAgent() {
  const inFlight: { protect: boolean; answer: () => void }[] = [];
  const state = { enabled: false, maxInFlight: 0, requests: 0 };
  const fetchImpl = ((_url: string, init: { body: string }) =>
    new Promise((resolve) => {
      const protect = (JSON.parse(init.body) as { ProtectionEnabled: boolean }).ProtectionEnabled;
      state.requests += 1;
      inFlight.push({
        protect,
        answer: () => {
          state.enabled = protect;
          resolve({ ok: true, status: 200, text: async () => JSON.stringify({ protection: { ProtectionEnabled: protect } }) });
        },
      });
      state.maxInFlight = Math.max(state.maxInFlight, inFlight.length);
    })) as unknown as typeof fetch;
  return { inFlight, state, fetchImpl };
}

/** The fake agent answers without I/O: one macrotask turn lets the loop run to its next request or wait. */
const turn = () => new Promise((resolve) => setImmediate(resolve));

async function answerUntilQuiet(agent: ReturnType<typeof heldAgent>): Promise<void> {
  for (let rounds = 0; ; rounds++) {
    await turn();
    const next = agent.inFlight.shift();
    if (!next) return;
    if (rounds > 100) throw new Error('the loop never went quiet');
    next.answer();
  }
}

describe('TaskProtection interleavings', () => {
  it('ends with the last wish applied, one request at a time, and clears on close()', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(action, { maxLength: 30 }), async (actions) => {
        const agent = heldAgent();
        const clock = new ManualClock();
        const protection = new TaskProtection({ agentUri: 'http://ecs-agent.invalid', expiresInMinutes: 30, logger: pino({ level: 'silent' }), fetchImpl: agent.fetchImpl, clock });
        let wish = false;
        for (const step of actions) {
          if (step.kind === 'desire') {
            wish = step.protect;
            protection.setDesired(step.protect);
          } else if (step.kind === 'answer') {
            agent.inFlight.shift()?.answer();
          } else {
            await turn();
          }
        }
        await answerUntilQuiet(agent);
        expect(agent.state.enabled).toBe(wish);
        expect(protection.enabled).toBe(wish);
        // Protected: the only timer is the renewal; idle: none.
        expect(clock.pending).toEqual(wish ? [15 * 60_000] : []);
        const closing = protection.close();
        await answerUntilQuiet(agent);
        await closing;
        expect(agent.state.enabled).toBe(false);
        expect(agent.state.maxInFlight).toBeLessThanOrEqual(1);
      }),
      { numRuns: 300 },
    );
  });
});
