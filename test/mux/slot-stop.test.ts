/**
 * One Slot in-process with a scripted registry: the test decides when the stop signal
 * fires relative to the registry's answer, which a whole mux cannot pin down.
 */
import { chmodSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MuxMetrics } from '../../src/mux/metrics.js';
import type { RunnerRegistry } from '../../src/mux/runner-registry.js';
import { Slot } from '../../src/mux/slot.js';
import { liveGroupMembers } from '../../src/util/process-group.js';
import { captureLogger } from './capture-logger.js';
import { waitFor } from './helpers.js';

/** A `Runner.Listener` whose `configure` records its pid and then never finishes by itself. */
function hangingConfigure(dir: string): { listenerPath: string; pidFile: string } {
  const listenerPath = join(dir, 'Runner.Listener');
  const pidFile = join(dir, 'configure.pid');
  writeFileSync(listenerPath, `#!/bin/sh\necho $$ > '${pidFile}'\nexec sleep 600\n`);
  chmodSync(listenerPath, 0o755);
  return { listenerPath, pidFile };
}

function unusedRegistryCall(): never {
  throw new Error('not used by this test');
}

describe('Slot', () => {
  it('a stop that lands while the registration token is on its way also stops configure', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'slot-stop-'));
    const { listenerPath, pidFile } = hangingConfigure(dir);
    const stop = new AbortController();
    const registry: RunnerRegistry = {
      // The stop comes after GitHub answered, before the answer reaches the slot.
      createRegistrationToken: async () => {
        stop.abort();
        return { token: 'registration-token-value', expiresAt: '2030-01-01T00:00:00Z' };
      },
      generateJitConfig: unusedRegistryCall,
      listRunners: unusedRegistryCall,
      deleteRunner: unusedRegistryCall,
      findRunnerGroup: unusedRegistryCall,
    };
    const logs = captureLogger();
    const slot = new Slot({
      pool: 'small',
      labels: ['small'],
      index: 0,
      layout: { slotId: 'small-0', root: dir, listenerPath, configDir: dir, env: {} },
      registry,
      registration: { mode: 'token', namePrefix: 'cbt', hostname: 'host', runnerGroup: { id: 1, name: 'Default' }, passRunnerGroup: false, configUrl: 'https://github.example/octo/repo' },
      env: { PATH: process.env.PATH },
      backoff: { initialMs: 60_000, maxMs: 60_000, healthyAfterMs: 60_000 },
      stopGraceMs: 5_000,
      logger: logs.logger,
      metrics: new MuxMetrics(() => []),
      onChange: () => {},
      onRegistered: () => {},
      onReleased: () => {},
      onStopPool: () => {},
    });
    // Without the stop reaching configure, run() would wait for its 120 s timeout.
    await slot.run(stop.signal);
    expect(slot.state).toBe('stopped');
    // configure was stopped at once, perhaps before its first line ran: if it got as far
    // as recording its pid, its process group must be gone too.
    if (existsSync(pidFile)) {
      const pid = Number(readFileSync(pidFile, 'utf8'));
      await waitFor('configure gone', () => liveGroupMembers(pid).length === 0);
    }
    expect(JSON.stringify(logs.records)).not.toContain('registration-token-value');
  });
});
