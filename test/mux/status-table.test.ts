import { describe, expect, it } from 'vitest';
import type { MuxStatus, SlotStatus } from '../../src/mux/status-model.js';
import { formatStatus } from '../../src/mux/status-table.js';

function slot(fields: Partial<SlotStatus>): SlotStatus {
  return { id: 'p-0', pool: 'p', index: 0, state: 'idle', since: '2026-01-01T00:00:00.000Z', runnerName: null, runnerId: null, job: null, buildId: null, restarts: 0, lastExit: null, listenerPid: null, backoffMs: null, ...fields };
}

describe('formatStatus', () => {
  it('prints pools and every slot state as aligned columns', () => {
    const status: MuxStatus = {
      host: 'ip-10-0-0-1',
      startedAt: '2026-01-01T00:00:00.000Z',
      draining: true,
      isolation: { kind: 'hardlink', reason: 'falling back: probe failed' },
      registration: 'jit',
      taskProtection: { available: true, enabled: true },
      pools: [
        { name: 'linux', labels: ['cbactions', 'linux'], slots: 3, stopped: null, capacity: { busy: 2, idle: 0, starting: 1, prepared: 1, registering: 0, idleTarget: 1, preparedTarget: 2, max: 8 }, coolDownSeconds: 300 },
        { name: 'old', labels: ['old'], slots: 1, stopped: { reason: 'the runner version is deprecated', at: '2026-01-01T00:01:00.000Z' } },
      ],
      slots: [
        slot({ id: 'linux-0', pool: 'linux', state: 'busy', runnerName: 'cb-h-linux-0-aaaaaa', job: 'build (ubuntu)', buildId: 'proj:1234' }),
        slot({ id: 'linux-1', pool: 'linux', index: 1, state: 'backing-off', backoffMs: 800, restarts: 4, lastExit: { code: 2, signal: null, at: 'x' } }),
        slot({ id: 'linux-2', pool: 'linux', index: 2, state: 'draining', runnerName: 'cb-h-linux-2-bbbbbb', job: 'test', lastExit: { code: null, signal: 'SIGKILL', at: 'x' }, restarts: 1 }),
        slot({ id: 'old-0', pool: 'old', state: 'stopped', restarts: 1, lastExit: { code: 7, signal: null, at: 'x' } }),
      ],
    };
    const text = formatStatus(status);
    expect(text).toContain('host ip-10-0-0-1  started 2026-01-01T00:00:00.000Z  DRAINING');
    expect(text).toContain('isolation hardlink (falling back: probe failed)');
    expect(text).toContain('registration jit  task protection held');
    expect(text).toMatch(/^POOL\s+LABELS\s+SLOTS\s+BUSY\s+IDLE\s+STARTING\s+PREPARED\s+IDLE TARGET\s+MAX\s+STATE$/m);
    expect(text).toMatch(/^linux\s+cbactions,linux\s+3\s+2\s+0\s+1\s+1\/2\s+1\s+8\s+running$/m);
    expect(text).toMatch(/^old\s+old\s+1\s+-\s+-\s+-\s+-\s+-\s+-\s+STOPPED: the runner version is deprecated$/m);
    expect(text).toMatch(/^linux-0\s+busy\s+cb-h-linux-0-aaaaaa\s+build \(ubuntu\)\s+proj:1234\s+0\s+-$/m);
    expect(text).toMatch(/^linux-1\s+backing-off \(800 ms\)\s+-\s+-\s+-\s+4\s+2$/m);
    expect(text).toMatch(/^linux-2\s+draining\s+cb-h-linux-2-bbbbbb\s+test\s+-\s+1\s+SIGKILL$/m);
    expect(text).toMatch(/^old-0\s+stopped\s+-\s+-\s+-\s+1\s+7$/m);
    const header = text.split('\n').find((line) => line.startsWith('SLOT')) as string;
    const row = text.split('\n').find((line) => line.startsWith('linux-0')) as string;
    expect(row.indexOf('cb-h-linux-0')).toBe(header.indexOf('RUNNER'));
  });

  it('says when task protection is unavailable', () => {
    const text = formatStatus({ host: 'h', startedAt: 's', draining: false, isolation: { kind: 'preload', reason: 'ok' }, registration: 'token', taskProtection: { available: false, enabled: false }, pools: [], slots: [] });
    expect(text).toContain('task protection unavailable (not on ECS)');
    expect(text).not.toContain('DRAINING');
  });
});
