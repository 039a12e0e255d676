import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { buildIdFromEvent, consumeBuildEvents, type EventQueue, type QueuedEvent } from '../../src/watcher/build-events.js';

const silent = pino({ level: 'silent' });

function event(buildArn: string, status = 'SUCCEEDED'): string {
  return JSON.stringify({ source: 'aws.codebuild', 'detail-type': 'CodeBuild Build State Change', detail: { 'build-id': buildArn, 'build-status': status, 'project-name': 'cbactions' } });
}

describe('EventBridge build state changes', () => {
  it('extracts the build id from the event ARN', () => {
    expect(buildIdFromEvent(event('arn:aws:codebuild:eu-west-1:123456789012:build/cbactions:0b1c-4d'))).toEqual({ buildId: 'cbactions:0b1c-4d', status: 'SUCCEEDED' });
  });

  it('ignores anything that is not a CodeBuild build state change', () => {
    expect(buildIdFromEvent('not json')).toBeUndefined();
    expect(buildIdFromEvent(JSON.stringify({ source: 'aws.ec2', 'detail-type': 'x', detail: {} }))).toBeUndefined();
    expect(buildIdFromEvent(event('arn:aws:codebuild:eu-west-1:123456789012:project/cbactions'))).toBeUndefined();
  });

  it('pokes for each event, acknowledges every message, and survives queue errors', async () => {
    const batches: QueuedEvent[][] = [
      [
        { receipt: 'r1', body: event('arn:aws:codebuild:us-east-1:123456789012:build/p:1') },
        { receipt: 'r2', body: 'garbage' },
      ],
    ];
    const acknowledged: string[] = [];
    const controller = new AbortController();
    let receives = 0;
    const queue: EventQueue = {
      async receive() {
        receives++;
        if (receives === 2) throw Object.assign(new Error('boom'), { name: 'ServiceUnavailable' });
        const batch = batches.shift();
        if (!batch) {
          controller.abort();
          return [];
        }
        return batch;
      },
      async acknowledge(receipts) {
        acknowledged.push(...receipts);
      },
    };
    const poked: string[] = [];
    await consumeBuildEvents({ queue, onBuildEvent: (id) => poked.push(id), logger: silent, signal: controller.signal });
    expect(poked).toEqual(['p:1']);
    expect(acknowledged).toEqual(['r1', 'r2']);
    expect(receives).toBe(3);
  });
});
