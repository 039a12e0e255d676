import { describe, expect, it } from 'vitest';
import { decideAfterExit, ListenerExitCode } from '../../src/mux/exit-policy.js';

const exit = (code: number | null, jobStarted = false, signal: NodeJS.Signals | null = null) => decideAfterExit({ code, signal, jobStarted });

describe('listener exit-code policy (RUNNER-PROTOCOL §6)', () => {
  it('0 after a job: re-register at once; the registration was consumed', () => {
    expect(exit(0, true)).toMatchObject({ kind: 'reregister', backoff: false, consumed: true });
  });

  it('0 without a job: the registration is spent (revoked or deleted), re-register with backoff and delete it', () => {
    expect(exit(0, false)).toMatchObject({ kind: 'reregister', backoff: true, consumed: false });
  });

  it('1 terminated error: back off, then a fresh registration', () => {
    expect(exit(ListenerExitCode.TerminatedError)).toMatchObject({ kind: 'reregister', backoff: true, consumed: false });
  });

  it('2 retryable: back off and restart with the same registration', () => {
    expect(exit(ListenerExitCode.RetryableError)).toMatchObject({ kind: 'restart', backoff: true });
  });

  it('3 and 4 self-update: stop the pool, updates must be off', () => {
    expect(exit(ListenerExitCode.RunnerUpdating)).toMatchObject({ kind: 'stop-pool' });
    expect(exit(ListenerExitCode.RunOnceRunnerUpdating)).toMatchObject({ kind: 'stop-pool' });
    expect(exit(3).kind === 'stop-pool' && exit(3).reason).toMatch(/disableUpdate/);
  });

  it('5 session conflict: back off and re-register', () => {
    expect(exit(ListenerExitCode.SessionConflict)).toMatchObject({ kind: 'reregister', backoff: true, consumed: false });
  });

  it('7 version deprecated: stop the pool', () => {
    expect(exit(ListenerExitCode.VersionDeprecated)).toMatchObject({ kind: 'stop-pool' });
    expect((exit(7) as { reason: string }).reason).toMatch(/deprecated/);
  });

  it('a signal or an unknown code: back off and re-register', () => {
    expect(exit(null, false, 'SIGKILL')).toMatchObject({ kind: 'reregister', backoff: true, consumed: false });
    expect(exit(null, true, 'SIGSEGV')).toMatchObject({ kind: 'reregister', backoff: true });
    expect(exit(42)).toMatchObject({ kind: 'reregister', backoff: true });
    expect(exit(6)).toMatchObject({ kind: 'reregister', backoff: true });
  });
});
