import { connect, type Socket } from 'node:net';
import { describeError } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { Wakeup } from '../util/wakeup.js';
import type { BuildSnapshot } from '../dispatch/codebuild-api.js';
import type { BuildWaiter, WaitOptions } from '../dispatch/build-waiter.js';
import type { BuildTracker } from '../dispatch/run-job.js';
import { LineSplitter, ServerMessageSchema, snapshotFromWire, type ClientMessage } from './protocol.js';

export interface WatcherClientIdentity {
  pid: number;
  jobId?: string;
  pool?: string;
  slot?: string;
}

/**
 * The worker's side of the host watcher: tracks its build there and waits for it. If the
 * watcher cannot be reached or goes away mid-job, it falls back to polling on its own.
 */
export class WatcherClient implements BuildWaiter, BuildTracker {
  private readonly splitter = new LineSplitter();
  private buildId: string | undefined;
  private latest: BuildSnapshot | undefined;
  private completed: BuildSnapshot | undefined;
  private lost = false;
  /** Woken when the build completes or the watcher is lost; every waiting call sees it. */
  private readonly changed = new Wakeup();
  private onUpdate: ((snapshot: BuildSnapshot) => void) | undefined;

  private constructor(
    private readonly socket: Socket,
    private readonly identity: WatcherClientIdentity,
    private readonly fallback: BuildWaiter,
    private readonly logger: Logger,
  ) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.receive(chunk));
    socket.on('error', (error) => this.logger.warn({ event: 'worker.watcher-error', error: error.message }, 'watcher connection error'));
    socket.on('close', () => {
      if (!this.completed) {
        this.lost = true;
        this.logger.warn({ event: 'worker.watcher-lost', buildId: this.buildId }, 'lost the watcher; polling on our own');
      }
      this.changed.wake();
    });
  }

  /** Connects, or returns undefined (and the caller polls on its own). */
  static async connect(socketPath: string, identity: WatcherClientIdentity, fallback: BuildWaiter, logger: Logger, timeoutMs = 2000): Promise<WatcherClient | undefined> {
    try {
      const socket = await new Promise<Socket>((resolve, reject) => {
        const candidate = connect(socketPath);
        const timer = setTimeout(() => {
          candidate.destroy();
          reject(new Error(`no answer within ${timeoutMs} ms`));
        }, timeoutMs);
        candidate.once('connect', () => {
          clearTimeout(timer);
          resolve(candidate);
        });
        candidate.once('error', (error) => {
          clearTimeout(timer);
          reject(error);
        });
      });
      return new WatcherClient(socket, identity, fallback, logger);
    } catch (error) {
      logger.warn({ event: 'worker.watcher-unreachable', socket: socketPath, error: describeError(error) }, 'no build watcher; polling on our own');
      return undefined;
    }
  }

  track(buildId: string, job?: { jobId: string }): void {
    this.buildId = buildId;
    if (job?.jobId) this.identity.jobId = job.jobId;
    const jobId = this.identity.jobId;
    this.send({ op: 'watch', buildId, pid: this.identity.pid, ...(jobId ? { jobId } : {}), ...(this.identity.pool ? { pool: this.identity.pool } : {}), ...(this.identity.slot ? { slot: this.identity.slot } : {}) });
  }

  poke(buildId: string): void {
    if (this.lost) this.fallback.poke?.(buildId);
    else this.send({ op: 'poke' });
  }

  async waitForCompletion(buildId: string, options: WaitOptions = {}): Promise<BuildSnapshot> {
    if (this.buildId !== buildId) this.track(buildId);
    this.onUpdate = options.onUpdate;
    if (this.latest) options.onUpdate?.(this.latest);
    while (!this.completed && !this.lost) {
      if ((await this.changed.wait(this.changed.generation, { signal: options.signal })) === 'aborted') throw options.signal?.reason;
    }
    if (this.completed) return this.completed;
    return this.fallback.waitForCompletion(buildId, options);
  }

  /** Tells the watcher the job is over (so closing is not mistaken for a dead worker). */
  async finish(exitCode: number, failureCode?: string, jobId?: string): Promise<void> {
    if (jobId) this.identity.jobId = jobId;
    this.send({
      op: 'done',
      exitCode,
      ...(failureCode ? { failureCode } : {}),
      ...(this.identity.jobId ? { jobId: this.identity.jobId } : {}),
      ...(this.identity.pool ? { pool: this.identity.pool } : {}),
      ...(this.identity.slot ? { slot: this.identity.slot } : {}),
    });
    await new Promise<void>((resolve) => this.socket.end(resolve));
  }

  private send(message: ClientMessage): void {
    if (!this.socket.destroyed && !this.lost) this.socket.write(`${JSON.stringify(message)}\n`);
  }

  private receive(chunk: string): void {
    let lines: string[];
    try {
      lines = this.splitter.push(chunk);
    } catch (error) {
      this.drop(`bad data from the watcher (${describeError(error)})`);
      return;
    }
    for (const line of lines) {
      let parsed;
      try {
        parsed = ServerMessageSchema.safeParse(JSON.parse(line));
      } catch {
        parsed = undefined;
      }
      if (!parsed?.success) {
        this.drop('a message from the watcher that does not parse');
        return;
      }
      const message = parsed.data;
      if (message.op === 'error') {
        this.drop(`the watcher refused: ${message.code}: ${message.message}`);
        return;
      }
      const snapshot = snapshotFromWire(message.snapshot);
      if (snapshot.id !== this.buildId) continue;
      this.latest = snapshot;
      this.onUpdate?.(snapshot);
      if (message.op === 'complete') {
        this.completed = snapshot;
        this.changed.wake();
      }
    }
  }

  private drop(reason: string): void {
    this.logger.warn({ event: 'worker.watcher-dropped', reason }, 'stopped using the watcher');
    this.lost = true;
    this.socket.destroy();
    this.changed.wake();
  }
}
