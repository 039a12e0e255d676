/** `cbactions mux` publishes its demand signal as EMF log lines on ECS, and stays quiet elsewhere. */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startFakeEcsAgent, type FakeEcsAgent } from '../support/fake-ecs-agent.js';
import { startFakeGitHub, type FakeGitHub } from '../support/fake-github.js';
import { eventsNamed, killEverything, makeMuxRunnerRoot, muxConfig, PRELOAD_SO, startMux, waitFor, writeConfig } from './helpers.js';

describe('cbactions mux: demand metrics', () => {
  let fake: FakeGitHub | undefined;
  let agent: FakeEcsAgent | undefined;
  afterEach(async () => {
    await killEverything([fake]);
    await fake?.stop();
    await agent?.stop();
    fake = undefined;
    agent = undefined;
  });

  async function start(env: NodeJS.ProcessEnv) {
    fake = await startFakeGitHub({ tokens: ['ghp_fake_test_token'] });
    const dir = mkdtempSync(join(tmpdir(), 'mux-demand-'));
    const config = muxConfig({
      fake,
      runnerRoot: makeMuxRunnerRoot(join(dir, 'runner')),
      stateDir: join(dir, 'state'),
      pools: [
        { name: 'small', labels: ['small'], slots: 2 },
        { name: 'large', labels: ['large'], slots: 1 },
      ],
      mux: { isolation: 'preload', preloadPath: PRELOAD_SO, demandMetrics: { publish: 'auto', intervalSeconds: 10 } },
    });
    return startMux(writeConfig(dir, config), env);
  }

  it('on ECS (publish: auto): every interval, per task and pool and service-wide, all of the task\'s listeners counted', async () => {
    agent = await startFakeEcsAgent();
    const mux = await start({ ECS_AGENT_URI: agent.uri });
    expect(eventsNamed(mux.logs, 'mux.demand-metrics-started')).toMatchObject([{ intervalSeconds: 10, project: 'cbactions-test' }]);
    const emf = () => eventsNamed(mux.logs, 'metrics.emf');
    // One publication is six records: two pools, the task, two pools service-wide, the service.
    await waitFor('one publication', () => emf().length >= 6, 60_000, 200);
    const [first] = emf();
    const task = first?.Task;
    expect(typeof task).toBe('string');
    const dimensionSets = emf()
      .slice(0, 6)
      .map((record) => (record._aws as { CloudWatchMetrics: { Dimensions: string[][] }[] }).CloudWatchMetrics[0]?.Dimensions);
    expect(dimensionSets).toEqual([[['Project', 'Task', 'Pool']], [['Project', 'Task', 'Pool']], [['Project', 'Task']], [['Project', 'Pool']], [['Project', 'Pool']], [['Project']]]);
    const service = emf()[5] as Record<string, unknown>;
    expect(service).toMatchObject({ Project: 'cbactions-test', _aws: { CloudWatchMetrics: [{ Namespace: 'cbactions' }] } });
    expect(service.Task).toBeUndefined();
    // No job ran: every listener is idle or (still) starting, none busy.
    expect(service.BusyListeners).toBe(0);
    expect(Number(service.IdleListeners) + Number(service.StartingListeners)).toBe(3);
    expect(service.ListenerUtilization).toBe(0);
  }, 120_000);

  it('elsewhere (publish: auto, no ECS_AGENT_URI): no demand metrics', async () => {
    const mux = await start({ ECS_AGENT_URI: '' });
    // The publisher would have started before the mux logged mux.started.
    expect(eventsNamed(mux.logs, 'mux.started')).toHaveLength(1);
    expect(eventsNamed(mux.logs, 'mux.demand-metrics-started')).toEqual([]);
  });
});
