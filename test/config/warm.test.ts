/** `pools[].warm`: defaults, and the combinations refused when the configuration is loaded. */
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';

const base = {
  github: { scope: { organization: 'octo' }, auth: { token: { env: 'GITHUB_TOKEN' } } },
  codebuild: { projectName: 'cbactions' },
  payloads: { key: { local: { file: '/k' } }, store: { local: { dir: '/p' } } },
};

function problems(pool: Record<string, unknown>, mux: Record<string, unknown> = {}): string[] {
  try {
    parseConfig({ ...base, pools: [{ name: 'ok', labels: ['a'] }, { name: 'warm', labels: ['w'], ...pool }], mux });
  } catch (error) {
    return String((error as Error).message).split('\n').slice(1).map((line) => line.trim());
  }
  return [];
}

describe('pools[].warm', () => {
  it('defaults to no standbys, a 10-minute wait and no windows', () => {
    const config = parseConfig({ ...base, pools: [{ name: 'ok', labels: ['a'] }] });
    expect(config.pools[0]?.warm).toEqual({ standby: 0, maxWaitMinutes: 10 });
  });

  it('accepts standbys with windows and a fractional wait', () => {
    expect(problems({ warm: { standby: 2, maxWaitMinutes: 0.5, windows: [{ days: ['mon', 'fri'], from: '08:00', to: '24:00' }] } })).toEqual([]);
  });

  const cases: [string, Record<string, unknown>, Record<string, unknown>, string][] = [
    ['standbys with worker dispatch', { warm: { standby: 1 } }, { dispatch: 'worker' }, 'pools[1].warm.standby: pool "warm": standby builds need mux.dispatch "in-process"'],
    ['a wait as long as the build timeout', { warm: { standby: 1, maxWaitMinutes: 30 }, build: { timeoutMinutes: 30 } }, {}, 'pools[1].warm.maxWaitMinutes: pool "warm": a standby waits 30 min but its build may run only 30 min (build.timeoutMinutes)'],
    ['a wait as long as Lambda builds run', { warm: { standby: 1, maxWaitMinutes: 15 }, build: { computeType: 'BUILD_LAMBDA_1GB', environmentType: 'LINUX_LAMBDA_CONTAINER' } }, {}, 'pools[1].warm.maxWaitMinutes: pool "warm": a standby waits 15 min but its build may run only 15 min (Lambda compute)'],
    ['a window that ends before it starts', { warm: { standby: 1, windows: [{ days: ['mon'], from: '18:00', to: '08:00' }] } }, {}, 'pools[1].warm.windows[0].to: "to" must be later than "from"'],
    ['a window time that is no time', { warm: { standby: 1, windows: [{ days: ['mon'], from: '8am', to: '18:00' }] } }, {}, 'pools[1].warm.windows[0].from: expected UTC "HH:MM"'],
    ['an unknown day', { warm: { standby: 1, windows: [{ days: ['monday'], from: '08:00', to: '18:00' }] } }, {}, 'pools[1].warm.windows[0].days[0]: Invalid option'],
    ['too many standbys', { warm: { standby: 51 } }, {}, 'pools[1].warm.standby: Too big: expected number to be <=50'],
    ['a too short wait', { warm: { standby: 1, maxWaitMinutes: 0.05 } }, {}, 'pools[1].warm.maxWaitMinutes: Too small: expected number to be >=0.1'],
    ['an unknown field', { warm: { standbys: 1 } }, {}, 'pools[1].warm: Unrecognized key: "standbys"'],
  ];
  for (const [name, pool, mux, expected] of cases) {
    it(`refuses ${name}`, () => {
      const found = problems(pool, mux);
      expect(found.some((line) => line.startsWith(expected)), found.join('\n')).toBe(true);
    });
  }

  it('lets worker dispatch have pools without standbys', () => {
    expect(problems({ warm: { standby: 0 } }, { dispatch: 'worker' })).toEqual([]);
  });
});
