import { describe, expect, it } from 'vitest';
import { hostNamePrefix, hostSegment, isOwnRunnerName, MAX_RUNNER_NAME_LENGTH, randomSuffix, runnerName } from '../../src/mux/naming.js';

describe('runner names', () => {
  it('are <prefix>-<host>-<pool>-<slot>-<suffix>', () => {
    expect(runnerName({ prefix: 'cbactions', hostname: 'ip-10-0-1-23.ec2.internal', pool: 'linux', slot: 3, suffix: 'a1b2c3' })).toBe('cbactions-ip-10-0-1-23-linux-3-a1b2c3');
  });

  it('take the first DNS label of the host, lower-case, only [a-z0-9-], at most 20 characters', () => {
    expect(hostSegment('Build_Host.example.com')).toBe('build-host');
    expect(hostSegment('a'.repeat(40))).toBe('a'.repeat(20));
    expect(hostSegment('abcdefghijklmnopqrs-uvw')).toBe('abcdefghijklmnopqrs');
    expect(hostSegment('...')).toBe('host');
    expect(hostSegment('')).toBe('host');
  });

  it('never exceed 64 characters: the pool segment is shortened, prefix and host are kept', () => {
    const name = runnerName({ prefix: 'p'.repeat(24), hostname: 'h'.repeat(63), pool: `pool-${'x'.repeat(26)}`, slot: 99, suffix: 'zzzzzz' });
    expect(name.length).toBeLessThanOrEqual(MAX_RUNNER_NAME_LENGTH);
    expect(name.startsWith(`${'p'.repeat(24)}-${'h'.repeat(20)}-pool`)).toBe(true);
    expect(name.endsWith('-99-zzzzzz')).toBe(true);
  });

  it('get a random suffix of six [0-9a-z] characters', () => {
    const suffixes = new Set(Array.from({ length: 50 }, () => randomSuffix()));
    for (const suffix of suffixes) expect(suffix).toMatch(/^[0-9a-z]{6}$/);
    expect(suffixes.size).toBeGreaterThan(45);
    expect(randomSuffix(() => Buffer.from([0, 1, 35, 36, 37, 255]))).toBe('01z013');
  });

  it("are recognised as this host's only when the whole name could have come from one of its pools", () => {
    const name = runnerName({ prefix: 'cb', hostname: 'web', pool: 'linux', slot: 2, suffix: 'abc123' });
    expect(isOwnRunnerName(name, 'cb', 'web', ['linux'])).toBe(true);
    expect(isOwnRunnerName(name, 'cb', 'web', ['arm'])).toBe(false);
    // Host "web" must not claim the runners of host "web-2".
    const other = runnerName({ prefix: 'cb', hostname: 'web-2', pool: 'linux', slot: 2, suffix: 'abc123' });
    expect(isOwnRunnerName(other, 'cb', 'web', ['linux'])).toBe(false);
    expect(isOwnRunnerName('cb-web-linux-2-abc', 'cb', 'web', ['linux'])).toBe(false);
    expect(isOwnRunnerName('someone-else', 'cb', 'web', ['linux'])).toBe(false);
    expect(hostNamePrefix('cb', 'WEB.local')).toBe('cb-web-');
  });

  it('recognise names whose pool segment was shortened', () => {
    const pool = `pool-${'x'.repeat(26)}`;
    const name = runnerName({ prefix: 'p'.repeat(24), hostname: 'h'.repeat(30), pool, slot: 7, suffix: 'qwerty' });
    expect(isOwnRunnerName(name, 'p'.repeat(24), 'h'.repeat(30), [pool])).toBe(true);
  });
});
