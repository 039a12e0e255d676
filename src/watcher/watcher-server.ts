import { rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { isRetryableAwsError, awsErrorName } from '../util/aws-errors.js';
import { describeError, isCbactionsError } from '../util/errors.js';
import { listenOnPrivateSocket } from '../util/unix-socket.js';
import type { Logger } from '../util/logger.js';
import { withRetries } from '../util/retry.js';
import type { CodeBuildApi, BuildSnapshot } from '../dispatch/codebuild-api.js';
import type { BuildWatcher } from './build-watcher.js';
import { ClientMessageSchema, LineSplitter, MAX_ERROR_MESSAGE_LENGTH, snapshotForWire, type ServerMessage } from './protocol.js';
import { isAdmissionRefusal } from '../dispatch/admission.js';

/** A build a worker on this host asked the watcher to follow. */
export interface TrackedBuild {
  buildId: string;
  pid: number;
  jobId?: string;
  pool?: string;
  slot?: string;
  status?: string;
  phase?: string;
}

export type WatcherEvent =
  | { kind: 'tracked'; build: TrackedBuild }
  | { kind: 'updated'; build: TrackedBuild; snapshot: BuildSnapshot }
  | { kind: 'finished'; build: TrackedBuild; snapshot: BuildSnapshot }
  | { kind: 'worker-done'; build: TrackedBuild; exitCode: number; failureCode?: string }
  | { kind: 'orphaned'; build: TrackedBuild; stopped: boolean };

export interface WatcherServerOptions {
  socketPath: string;
  watcher: BuildWatcher;
  builds: CodeBuildApi;
  logger: Logger;
  onEvent?: (event: WatcherEvent) => void;
}

/**
 * The host's watcher endpoint. Workers connect over a Unix socket, say which build they
 * own, and get its updates. A connection that closes before its build ended means the
 * worker died: the build is stopped, so no build outlives its job.
 */
export class WatcherServer {
  private readonly connections = new Set<Socket>();
  /** Set by close(): connections we end ourselves are not workers going away. */
  private closing = false;
  private readonly tracked = new Map<string, TrackedBuild>();

  private constructor(
    private readonly server: Server,
    private readonly options: WatcherServerOptions,
  ) {}

  static async listen(options: WatcherServerOptions): Promise<WatcherServer> {
    const server = createServer();
    const instance = new WatcherServer(server, options);
    server.on('connection', (socket) => instance.accept(socket));
    // Only this user's processes (the listeners and their workers) may talk to it.
    await listenOnPrivateSocket(server, options.socketPath, 'WATCHER_SOCKET_PATH');
    options.logger.info({ event: 'watcher.listening', socket: options.socketPath }, 'build watcher listening');
    return instance;
  }

  get socketPath(): string {
    return this.options.socketPath;
  }

  builds(): TrackedBuild[] {
    return [...this.tracked.values()].map((build) => ({ ...build }));
  }

  async close(): Promise<void> {
    // Workers whose connection we end fall back to polling on their own (watcher-client);
    // their builds are still held, so they must not be stopped as orphans.
    this.closing = true;
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      for (const socket of this.connections) socket.destroy();
    });
    await rm(this.options.socketPath, { force: true });
  }

  private accept(socket: Socket): void {
    this.connections.add(socket);
    socket.setEncoding('utf8');
    const splitter = new LineSplitter();
    let build: TrackedBuild | undefined;
    let finished = false;
    let workerDone = false;
    let released = false;
    let stopFollowing: (() => void) | undefined;
    const send = (message: ServerMessage) => {
      if (!socket.destroyed) socket.write(`${JSON.stringify(message)}\n`);
    };
    const fail = (code: string, message: string) => {
      send({ op: 'error', code, message: message.slice(0, MAX_ERROR_MESSAGE_LENGTH) });
      socket.end();
    };

    socket.on('data', (chunk: string) => {
      let lines: string[];
      try {
        lines = splitter.push(chunk);
      } catch (error) {
        fail('WATCHER_BAD_MESSAGE', describeError(error));
        return;
      }
      for (const line of lines) {
        let parsed;
        try {
          parsed = ClientMessageSchema.safeParse(JSON.parse(line));
        } catch {
          fail('WATCHER_BAD_MESSAGE', 'a line that is not JSON');
          return;
        }
        if (!parsed.success) {
          fail('WATCHER_BAD_MESSAGE', parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`).join('; '));
          return;
        }
        const message = parsed.data;
        if (message.op === 'watch') {
          if (build) {
            fail('WATCHER_BAD_MESSAGE', 'one connection follows one build');
            return;
          }
          const current: TrackedBuild = { buildId: message.buildId, pid: message.pid, ...(message.jobId ? { jobId: message.jobId } : {}), ...(message.pool ? { pool: message.pool } : {}), ...(message.slot ? { slot: message.slot } : {}) };
          build = current;
          this.tracked.set(current.buildId, current);
          this.options.logger.info({ event: 'watcher.build-tracked', buildId: current.buildId, pid: current.pid, jobId: current.jobId, pool: current.pool, slot: current.slot }, 'tracking build');
          this.options.onEvent?.({ kind: 'tracked', build: { ...current } });
          const following = new AbortController();
          stopFollowing = () => following.abort();
          this.options.watcher
            .waitForCompletion(current.buildId, {
              signal: following.signal,
              onUpdate: (snapshot) => {
                current.status = snapshot.status;
                if (snapshot.currentPhase) current.phase = snapshot.currentPhase;
                if (snapshot.complete) return;
                send({ op: 'update', snapshot: snapshotForWire(snapshot) });
                this.options.onEvent?.({ kind: 'updated', build: { ...current }, snapshot });
              },
            })
            .then((snapshot) => {
              finished = true;
              this.tracked.delete(current.buildId);
              send({ op: 'complete', snapshot: snapshotForWire(snapshot) });
              this.options.onEvent?.({ kind: 'finished', build: { ...current }, snapshot });
            })
            .catch((error: unknown) => {
              if (following.signal.aborted) return;
              // The worker falls back to polling on its own; its closing the connection
              // then is not a dead worker.
              released = true;
              this.tracked.delete(current.buildId);
              send({ op: 'error', code: isCbactionsError(error) ? error.code : 'WATCHER_ERROR', message: describeError(error).slice(0, MAX_ERROR_MESSAGE_LENGTH) });
            });
        } else if (message.op === 'poke') {
          this.options.watcher.poke(build?.buildId);
        } else {
          workerDone = true;
          const about: TrackedBuild = build ?? { buildId: '', pid: 0, ...(message.jobId ? { jobId: message.jobId } : {}), ...(message.pool ? { pool: message.pool } : {}), ...(message.slot ? { slot: message.slot } : {}) };
          const fields = { buildId: about.buildId || undefined, jobId: about.jobId, pool: about.pool, slot: about.slot, exitCode: message.exitCode, failureCode: message.failureCode };
          // The mux's own log carries one line per job: the alarms on failed dispatches match `worker.failed`.
          if (isAdmissionRefusal(message.failureCode)) this.options.logger.warn({ event: 'worker.refused', ...fields }, 'job refused by the admission policy');
          else if (message.failureCode) this.options.logger.error({ event: 'worker.failed', ...fields }, 'job did not run');
          else this.options.logger.info({ event: 'worker.finished', ...fields }, 'job finished');
          this.options.onEvent?.({ kind: 'worker-done', build: { ...about }, exitCode: message.exitCode, ...(message.failureCode ? { failureCode: message.failureCode } : {}) });
        }
      }
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      this.connections.delete(socket);
      stopFollowing?.();
      if (build && !finished && !workerDone && !released && !this.closing) void this.stopOrphan(build);
    });
  }

  private async stopOrphan(build: TrackedBuild): Promise<void> {
    this.tracked.delete(build.buildId);
    this.options.logger.warn({ event: 'watcher.orphan', buildId: build.buildId, pid: build.pid, slot: build.slot }, 'worker went away before its build ended; stopping the build');
    let stopped = false;
    try {
      await withRetries(() => this.options.builds.stopBuild(build.buildId), { maxAttempts: 6, initialMs: 500, maxMs: 5000, isRetryable: isRetryableAwsError });
      stopped = true;
      this.options.logger.info({ event: 'watcher.orphan-stopped', buildId: build.buildId }, 'orphaned build stopped');
    } catch (error) {
      this.options.logger.error({ event: 'watcher.orphan-stop-failed', buildId: build.buildId, error: awsErrorName(error) }, 'could not stop an orphaned build');
    }
    this.options.watcher.poke(build.buildId);
    this.options.onEvent?.({ kind: 'orphaned', build: { ...build }, stopped });
  }
}

