import { DeleteMessageBatchCommand, ReceiveMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { z } from 'zod';
import { awsErrorName } from '../util/aws-errors.js';
import { backoffDelay, sleep } from '../util/backoff.js';
import type { Logger } from '../util/logger.js';

/** A message from the queue EventBridge feeds; bodies are untrusted JSON. */
export interface QueuedEvent {
  receipt: string;
  body: string;
}

export interface EventQueue {
  /** Long-polls for up to 10 messages. */
  receive(signal: AbortSignal): Promise<QueuedEvent[]>;
  acknowledge(receipts: string[], signal: AbortSignal): Promise<void>;
}

export class SqsEventQueue implements EventQueue {
  constructor(
    private readonly client: SQSClient,
    private readonly queueUrl: string,
  ) {}

  async receive(signal: AbortSignal): Promise<QueuedEvent[]> {
    const output = await this.client.send(new ReceiveMessageCommand({ QueueUrl: this.queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 20 }), { abortSignal: signal });
    return (output.Messages ?? []).flatMap((message) =>
      typeof message.ReceiptHandle === 'string' && typeof message.Body === 'string' ? [{ receipt: message.ReceiptHandle, body: message.Body }] : [],
    );
  }

  async acknowledge(receipts: string[], signal: AbortSignal): Promise<void> {
    if (receipts.length === 0) return;
    await this.client.send(
      new DeleteMessageBatchCommand({ QueueUrl: this.queueUrl, Entries: receipts.map((receipt, index) => ({ Id: String(index), ReceiptHandle: receipt })) }),
      { abortSignal: signal },
    );
  }
}

const BuildStateChangeSchema = z.object({
  source: z.literal('aws.codebuild'),
  'detail-type': z.literal('CodeBuild Build State Change'),
  detail: z.object({
    'build-id': z.string().max(2048),
    'build-status': z.string().max(64),
  }),
});

/** `arn:aws:codebuild:<region>:<account>:build/<project>:<uuid>` → `<project>:<uuid>`. */
export function buildIdFromEvent(body: string): { buildId: string; status: string } | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    return undefined;
  }
  const event = BuildStateChangeSchema.safeParse(parsed);
  if (!event.success) return undefined;
  const match = /^arn:aws[a-z-]*:codebuild:[a-z0-9-]+:\d{12}:build\/([A-Za-z0-9][A-Za-z0-9_-]*:[A-Za-z0-9-]+)$/.exec(event.data.detail['build-id']);
  if (!match?.[1]) return undefined;
  return { buildId: match[1], status: event.data.detail['build-status'] };
}

/**
 * EventBridge "CodeBuild Build State Change" events, delivered through SQS, only make the
 * watcher look sooner: delivery is best effort, so the batched poll stays the source of
 * truth and the event's content is not trusted for the result.
 */
export async function consumeBuildEvents(options: {
  queue: EventQueue;
  onBuildEvent: (buildId: string, status: string) => void;
  logger: Logger;
  signal: AbortSignal;
}): Promise<void> {
  let failures = 0;
  while (!options.signal.aborted) {
    try {
      const messages = await options.queue.receive(options.signal);
      failures = 0;
      for (const message of messages) {
        const event = buildIdFromEvent(message.body);
        if (event) options.onBuildEvent(event.buildId, event.status);
        else options.logger.warn({ event: 'watcher.event-ignored' }, 'a queue message that is not a CodeBuild build state change');
      }
      await options.queue.acknowledge(
        messages.map((message) => message.receipt),
        options.signal,
      );
    } catch (error) {
      if (options.signal.aborted) return;
      failures++;
      const delayMs = backoffDelay({ initialMs: 1000, maxMs: 60_000 }, failures);
      options.logger.warn({ event: 'watcher.events-failed', error: awsErrorName(error), delayMs }, 'reading build events failed; the poll carries on');
      await sleep(delayMs, options.signal).catch(() => {});
    }
  }
}
