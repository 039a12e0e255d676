/**
 * In-mux dispatch (docs/worker-shim.md): the native Runner.Worker shim of every slot
 * connects to `<stateDir>/dispatch.sock` and relays the listener's pipe; the mux runs the
 * job path for each connection with its one set of AWS clients and its build watcher, and
 * sends back the reason lines and the exit code `cbactions worker` would have used.
 *
 * Each connection is its own job: whatever goes wrong in one (malformed messages, a bad
 * job, a thrown error, a shim that dies) ends that job only.
 */
import { rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import type { Config, Pool } from '../config/schema.js';
import { isAdmissionRefusal, type AdmissionDecision } from '../dispatch/admission.js';
import { PollingBuildWaiter, type BuildWaiter, type WaitOptions } from '../dispatch/build-waiter.js';
import type { BuildSnapshot, CodeBuildApi } from '../dispatch/codebuild-api.js';
import { formatFailure } from '../dispatch/failure.js';
import { reportError, reportOutcome, type JobReport } from '../dispatch/job-report.js';
import { jobSettings } from '../dispatch/job-settings.js';
import { runJob } from '../dispatch/run-job.js';
import type { JobTimelineRecord } from '../dispatch/job-timeline.js';
import type { StandbyClaims } from '../dispatch/standby-claim.js';
import { readRunnerFiles } from '../dispatch/runner-files.js';
import {
  decodeHello,
  decodeUint32,
  encodeDispatchMessage,
  encodeExit,
  encodeLine,
  MuxMessage,
  shimToMuxDecoder,
  ShimMessage,
  ShimProtocolErrorCode,
  type DispatchMessage,
} from '../dispatch/shim-protocol.js';
import { readFrames } from '../protocol/codec.js';
import { ExitCode } from '../protocol/exit-codes.js';
import type { PayloadServices } from '../dispatch/job-clients.js';
import { awsErrorName, isRetryableAwsError } from '../util/aws-errors.js';
import { CbactionsError, describeError, isCbactionsError } from '../util/errors.js';
import { listenOnPrivateSocket } from '../util/unix-socket.js';
import type { Logger } from '../util/logger.js';
import { withRetries } from '../util/retry.js';
import { ListenerEnv } from './mux.js';

/** Set by the mux in every listener's environment (in-process dispatch only); the shim connects to it. */
export const DISPATCH_SOCKET_VARIABLE = 'CBACTIONS_DISPATCH_SOCKET';
export const DISPATCH_SOCKET_NAME = 'dispatch.sock';

export const DispatchErrorCode = {
  SocketPath: 'DISPATCH_SOCKET_PATH',
  UnknownSlot: 'DISPATCH_UNKNOWN_SLOT',
  NoHello: 'DISPATCH_NO_HELLO',
  ShimGone: 'DISPATCH_SHIM_GONE',
  PipeRead: 'DISPATCH_PIPE_READ_FAILED',
} as const;

/** The shim has this long to say HELLO. */
const HELLO_TIMEOUT_MS = 10_000;
/** At close, running jobs get this long to end (the listener's own kill comes 45 s after a cancel). */
const CLOSE_TIMEOUT_MS = 45_000;

/** What the mux knows of a slot a shim names. */
export interface DispatchSlot {
  pool: string;
  /** Where the slot's `.runner` and `.credentials` are. */
  configDir: string;
}

export type DispatchEvent =
  | { kind: 'tracked'; buildId: string; slot: string; jobId: string }
  /** The job is over; `stopped === false` only for an orphan whose StopBuild failed (keep it journaled). */
  | { kind: 'done'; buildId?: string; slot: string; jobId?: string; exitCode: number; failureCode?: string; orphan?: { stopped: boolean }; timeline?: JobTimelineRecord };

export interface DispatchServerOptions {
  socketPath: string;
  config: Config;
  configPath: string;
  builds: CodeBuildApi;
  /** The key service and payload store (made on first use; a failure is that job's). */
  payloads: () => Promise<PayloadServices>;
  /** The mux's build watcher. */
  waiter: BuildWaiter;
  /** The running slot with this id, or undefined. */
  slot: (slotId: string) => DispatchSlot | undefined;
  logger: Logger;
  onEvent?: (event: DispatchEvent) => void;
  /** Every admission decision of a job (the mux counts them per rule in /metrics). */
  onAdmission?: (decision: AdmissionDecision, job: { jobId: string; pool: string }) => void;
  closeTimeoutMs?: number;
  /** The mux's standby builds: a job for a warm pool goes to one when it can. */
  standbys?: StandbyClaims;
}

/** Chunks of the listener's pipe as the shim relays them; ends at EOF or when the connection goes. */
class PipeChunks implements AsyncIterable<Buffer> {
  #chunks: Buffer[] = [];
  #ended = false;
  #error: unknown;
  #wake: (() => void) | undefined;

  push(chunk: Buffer): void {
    if (this.#ended) return;
    this.#chunks.push(chunk);
    this.#notify();
  }

  end(error?: unknown): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#error = error;
    this.#notify();
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Buffer> {
    for (;;) {
      const chunk = this.#chunks.shift();
      if (chunk) {
        yield chunk;
        continue;
      }
      if (this.#ended) {
        if (this.#error !== undefined) throw this.#error;
        return;
      }
      await new Promise<void>((resolve) => (this.#wake = resolve));
    }
  }
}

/** The shared watcher, and polling of our own when it cannot reach CodeBuild (as a worker falls back). */
class WatcherWithFallback implements BuildWaiter {
  constructor(
    private readonly watcher: BuildWaiter,
    private readonly fallback: PollingBuildWaiter,
    private readonly logger: Logger,
  ) {}

  async waitForCompletion(buildId: string, options?: WaitOptions): Promise<BuildSnapshot> {
    try {
      return await this.watcher.waitForCompletion(buildId, options);
    } catch (error) {
      if (options?.signal?.aborted || !isCbactionsError(error, 'WATCHER_FAILING')) throw error;
      this.logger.warn({ event: 'worker.watcher-lost', buildId, error: describeError(error) }, 'the build watcher is failing; polling on our own');
      return this.fallback.waitForCompletion(buildId, options);
    }
  }

  poke(buildId: string): void {
    this.watcher.poke?.(buildId);
    this.fallback.poke(buildId);
  }
}

export class DispatchServer {
  readonly #connections = new Set<Socket>();
  readonly #jobs = new Set<Promise<void>>();
  readonly #shutdowns = new Set<AbortController>();
  readonly #waiter: BuildWaiter;

  private constructor(
    private readonly server: Server,
    private readonly options: DispatchServerOptions,
  ) {
    this.#waiter = new WatcherWithFallback(options.waiter, new PollingBuildWaiter(options.builds, options.logger), options.logger);
  }

  /** Listens on `socketPath` (mode 0600); a socket file left by a previous life (the state lock is ours) is replaced. */
  static async listen(options: DispatchServerOptions): Promise<DispatchServer> {
    const server = createServer();
    const instance = new DispatchServer(server, options);
    server.on('connection', (socket) => instance.#accept(socket));
    // Only this user's processes (the listeners and their shims) may hand it jobs.
    await listenOnPrivateSocket(server, options.socketPath, DispatchErrorCode.SocketPath);
    options.logger.info({ event: 'dispatch.listening', socket: options.socketPath }, 'in-process dispatch listening');
    return instance;
  }

  get socketPath(): string {
    return this.options.socketPath;
  }

  /** Open connections (a job each, or one being refused). */
  get connections(): number {
    return this.#connections.size;
  }

  /** Jobs running now. */
  get running(): number {
    return this.#jobs.size;
  }

  /**
   * After the slots stopped: no new connections; running jobs are told to stop (as a
   * worker's SIGTERM) and get a bounded time; what is left loses its connection, so its
   * build is stopped.
   */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const shutdown of this.#shutdowns) shutdown.abort(new CbactionsError('WORKER_SIGNALLED', 'the mux is stopping'));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, this.options.closeTimeoutMs ?? CLOSE_TIMEOUT_MS)));
    await Promise.race([Promise.allSettled([...this.#jobs]), timeout]);
    clearTimeout(timer);
    for (const socket of this.#connections) socket.destroy();
    await Promise.race([Promise.allSettled([...this.#jobs]), new Promise<void>((resolve) => setTimeout(resolve, 10_000).unref())]);
    await closed;
    await rm(this.options.socketPath, { force: true });
  }

  #accept(socket: Socket): void {
    this.#connections.add(socket);
    const log = this.options.logger;
    const decoder = shimToMuxDecoder();
    let phase: 'hello' | 'relaying' | 'done' = 'hello';
    let pipe: PipeChunks | undefined;
    let shutdown: AbortController | undefined;
    // Set once the connection is gone (or unusable) while the job runs: the shim is dead.
    let lost: string | undefined;
    let onLost: (() => void) | undefined;

    const send = (message: Buffer) => {
      if (!socket.destroyed && socket.writable) socket.write(message);
    };
    const finish = (report: JobReport) => {
      if (phase === 'done') return;
      phase = 'done';
      for (const line of report.lines) send(encodeLine(line));
      send(encodeExit(report.exitCode));
      socket.end();
    };
    const connectionLost = (why: string) => {
      // After EXIT the shim closing is the normal end, not a dead shim.
      if (lost !== undefined || phase === 'done') return;
      lost = why;
      pipe?.end();
      onLost?.();
    };
    const helloTimer = setTimeout(() => {
      if (phase !== 'hello') return;
      log.warn({ event: 'dispatch.no-hello' }, 'a dispatch connection sent no HELLO in time');
      phase = 'done';
      socket.destroy();
    }, HELLO_TIMEOUT_MS);
    helloTimer.unref();

    const onMessage = (message: DispatchMessage) => {
      if (phase === 'hello') {
        clearTimeout(helloTimer);
        if (message.type !== ShimMessage.Hello) throw new CbactionsError(DispatchErrorCode.NoHello, `the first dispatch message was of type ${message.type}, not HELLO`);
        const hello = decodeHello(message.body);
        const slotId = hello.env[ListenerEnv.Slot] ?? '';
        const slot = slotId ? this.options.slot(slotId) : undefined;
        const pool = slot ? this.options.config.pools.find((candidate) => candidate.name === slot.pool) : undefined;
        if (!slot || !pool) {
          log.warn({ event: 'dispatch.unknown-slot', slot: slotId.slice(0, 100), pid: hello.pid }, 'a shim named no running slot');
          finish({ exitCode: ExitCode.InfrastructureFailure, lines: [formatFailure({ code: DispatchErrorCode.UnknownSlot, message: `the mux runs no slot "${slotId.slice(0, 100)}" (${ListenerEnv.Slot}); the job was not taken` })] });
          return;
        }
        phase = 'relaying';
        pipe = new PipeChunks();
        shutdown = new AbortController();
        send(encodeDispatchMessage(MuxMessage.Accept));
        const job = this.#runJob({ slotId, slot, pool, env: hello.env, pid: hello.pid, pipe, shutdown, finish, isLost: () => lost, setOnLost: (callback) => (onLost = callback) }).catch((error: unknown) => {
          // A bug past the job path (the mux's own bookkeeping): this job still ends, the mux goes on.
          log.error({ event: 'dispatch.internal-error', slot: slotId, error: describeError(error) }, 'in-process dispatch failed after the job');
          finish(reportError(error));
        });
        this.#jobs.add(job);
        void job.finally(() => this.#jobs.delete(job));
        return;
      }
      if (phase !== 'relaying') return;
      switch (message.type) {
        case ShimMessage.Data:
          pipe?.push(message.body);
          return;
        case ShimMessage.Eof:
          pipe?.end(message.body.length > 0 ? new CbactionsError(DispatchErrorCode.PipeRead, `reading the listener pipe failed in the shim: ${message.body.toString('utf8').slice(0, 200)}`) : undefined);
          return;
        case ShimMessage.Signal:
          log.info({ event: 'dispatch.signal', signal: decodeUint32(message) }, 'the shim was signalled');
          shutdown?.abort(new CbactionsError('WORKER_SIGNALLED', 'the worker was told to stop'));
          return;
        default:
          throw new CbactionsError(ShimProtocolErrorCode.BadBody, 'HELLO again after the job was accepted');
      }
    };

    socket.on('data', (chunk: Buffer) => {
      if (phase === 'done' && lost !== undefined) return;
      try {
        for (const message of decoder.push(chunk)) onMessage(message);
      } catch (error) {
        log.warn({ event: 'dispatch.bad-message', error: describeError(error) }, 'malformed dispatch message; closing the connection');
        if (phase === 'hello') {
          phase = 'done';
          clearTimeout(helloTimer);
        }
        connectionLost(describeError(error));
        socket.destroy();
      }
    });
    socket.on('end', () => {
      // The shim never half-closes: an end is the shim gone.
      connectionLost('the shim closed the connection');
    });
    socket.on('error', (error) => connectionLost(describeError(error)));
    socket.on('close', () => {
      clearTimeout(helloTimer);
      this.#connections.delete(socket);
      connectionLost('the connection closed');
    });
  }

  /** The mux's bookkeeping (journal, status) must not end a job: its errors are logged. */
  #emit(event: DispatchEvent): void {
    try {
      this.options.onEvent?.(event);
    } catch (error) {
      this.options.logger.error({ event: 'dispatch.event-failed', kind: event.kind, slot: event.slot, error: describeError(error) }, 'recording a dispatch event failed');
    }
  }

  async #runJob(job: {
    slotId: string;
    slot: DispatchSlot;
    pool: Pool;
    env: Record<string, string>;
    pid: number;
    pipe: PipeChunks;
    shutdown: AbortController;
    finish: (report: JobReport) => void;
    isLost: () => string | undefined;
    setOnLost: (callback: () => void) => void;
  }): Promise<void> {
    const { config, configPath, builds } = this.options;
    const log = this.options.logger.child({ slot: job.slotId, pool: job.pool.name, shimPid: job.pid });
    this.#shutdowns.add(job.shutdown);
    let buildId: string | undefined;
    let jobId: string | undefined;
    let orphan: Promise<boolean> | undefined;
    // The shim died (the listener's SIGKILL after a cancel): stop the build now, as the watcher does for a dead worker.
    let ended = false;
    const stopOrphan = () => {
      if (orphan || ended || buildId === undefined) return;
      const id = buildId;
      log.warn({ event: 'watcher.orphan', buildId: id, jobId, reason: job.isLost() }, 'the shim went away before its build ended; stopping the build');
      orphan = withRetries(() => builds.stopBuild(id), { maxAttempts: 6, initialMs: 500, maxMs: 5000, isRetryable: isRetryableAwsError }).then(
        () => {
          log.info({ event: 'watcher.orphan-stopped', buildId: id }, 'orphaned build stopped');
          this.#waiter.poke?.(id);
          return true;
        },
        (error: unknown) => {
          log.error({ event: 'watcher.orphan-stop-failed', buildId: id, error: awsErrorName(error) }, 'could not stop an orphaned build');
          return false;
        },
      );
    };
    job.setOnLost(stopOrphan);
    let report: JobReport;
    let timeline: JobTimelineRecord | undefined;
    try {
      const settings = jobSettings(config, configPath, job.pool, job.env);
      const { keys, store } = await this.options.payloads();
      const outcome = await runJob({
        frames: readFrames(job.pipe)[Symbol.asyncIterator](),
        builds,
        waiter: this.#waiter,
        tracker: {
          track: (id, about) => {
            buildId = id;
            jobId = about.jobId;
            this.#emit({ kind: 'tracked', buildId: id, slot: job.slotId, jobId: about.jobId });
            if (job.isLost() !== undefined) stopOrphan();
          },
        },
        keys,
        store,
        runnerFiles: () => readRunnerFiles(job.slot.configDir),
        logger: log,
        shutdownSignal: job.shutdown.signal,
        settings,
        ...(this.options.onAdmission ? { onAdmission: this.options.onAdmission } : {}),
        ...(this.options.standbys ? { standbys: this.options.standbys } : {}),
      });
      jobId = outcome.jobId;
      timeline = outcome.timeline;
      report = reportOutcome(outcome);
    } catch (error) {
      report = reportError(error);
    } finally {
      ended = true;
      this.#shutdowns.delete(job.shutdown);
    }
    const stopped = orphan ? await orphan : undefined;
    const fields = { buildId, jobId, slot: job.slotId, pool: job.pool.name, exitCode: report.exitCode, failureCode: report.failureCode, shimGone: job.isLost() !== undefined };
    // The mux's log carries one line per job, as for a worker: the alarms on failed dispatches match `worker.failed`.
    if (isAdmissionRefusal(report.failureCode)) log.warn({ event: 'worker.refused', ...fields }, 'job refused by the admission policy');
    else if (report.failureCode) log.error({ event: 'worker.failed', ...fields, ...(report.error ? { error: report.error } : {}) }, 'job did not run');
    else log.info({ event: 'worker.finished', ...fields }, 'job finished');
    this.#emit({
      kind: 'done',
      slot: job.slotId,
      exitCode: report.exitCode,
      ...(buildId ? { buildId } : {}),
      ...(jobId ? { jobId } : {}),
      ...(report.failureCode ? { failureCode: report.failureCode } : {}),
      ...(stopped !== undefined ? { orphan: { stopped } } : {}),
      ...(timeline ? { timeline } : {}),
    });
    job.finish(report);
  }
}

