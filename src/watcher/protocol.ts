import { z } from 'zod';
import { CbactionsError } from '../util/errors.js';
import type { BuildSnapshot } from '../dispatch/codebuild-api.js';

/**
 * Worker ↔ watcher messages on the host's local socket: one JSON object per line.
 * Both sides treat the other's lines as untrusted input.
 */
export const WATCHER_SOCKET_VARIABLE = 'CBACTIONS_WATCHER_SOCKET';
export const MAX_LINE_BYTES = 256 * 1024;
/** Longest `message` of an `error` reply; the watcher cuts its own to fit. */
export const MAX_ERROR_MESSAGE_LENGTH = 1000;

const BuildIdSchema = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,254}:[A-Za-z0-9-]{1,64}$/, 'expected a CodeBuild build id (project:uuid)');

export const ClientMessageSchema = z.discriminatedUnion('op', [
  z.strictObject({
    op: z.literal('watch'),
    buildId: BuildIdSchema,
    pid: z.number().int().positive(),
    jobId: z.string().max(128).optional(),
    pool: z.string().max(64).optional(),
    slot: z.string().max(128).optional(),
  }),
  z.strictObject({ op: z.literal('poke') }),
  z.strictObject({
    op: z.literal('done'),
    exitCode: z.number().int(),
    failureCode: z.string().max(64).optional(),
    // For a job whose build never started (no `watch` came first).
    jobId: z.string().max(128).optional(),
    pool: z.string().max(64).optional(),
    slot: z.string().max(128).optional(),
  }),
]);
export type ClientMessage = z.infer<typeof ClientMessageSchema>;

const PhaseSchema = z.object({
  type: z.string().max(64),
  status: z.string().max(64).optional(),
  contexts: z.array(z.object({ statusCode: z.string().max(256).optional(), message: z.string().max(4096).optional() })).max(20),
});

export const SnapshotSchema = z.object({
  id: BuildIdSchema,
  arn: z.string().max(2048).optional(),
  status: z.string().max(64),
  complete: z.boolean(),
  currentPhase: z.string().max(64).optional(),
  phases: z.array(PhaseSchema).max(20),
  exported: z.record(z.string().max(256), z.string().max(8192)),
  projectName: z.string().max(255).optional(),
  computeType: z.string().max(64).optional(),
  environmentType: z.string().max(64).optional(),
  image: z.string().max(2048).optional(),
});

export const ServerMessageSchema = z.discriminatedUnion('op', [
  z.strictObject({ op: z.literal('update'), snapshot: SnapshotSchema }),
  z.strictObject({ op: z.literal('complete'), snapshot: SnapshotSchema }),
  z.strictObject({ op: z.literal('error'), code: z.string().max(64), message: z.string().max(MAX_ERROR_MESSAGE_LENGTH) }),
]);
export type ServerMessage = z.infer<typeof ServerMessageSchema>;

/** Dates do not survive JSON; the watcher protocol carries what the worker needs. */
export function snapshotForWire(snapshot: BuildSnapshot): z.infer<typeof SnapshotSchema> {
  const { startTime: _start, endTime: _end, ...rest } = snapshot;
  return rest;
}

export function snapshotFromWire(wire: z.infer<typeof SnapshotSchema>): BuildSnapshot {
  const snapshot: BuildSnapshot = {
    id: wire.id,
    status: wire.status,
    complete: wire.complete,
    phases: wire.phases.map((phase) => ({
      type: phase.type,
      ...(phase.status !== undefined ? { status: phase.status } : {}),
      contexts: phase.contexts.map((context) => ({
        ...(context.statusCode !== undefined ? { statusCode: context.statusCode } : {}),
        ...(context.message !== undefined ? { message: context.message } : {}),
      })),
    })),
    exported: { ...wire.exported },
  };
  if (wire.arn !== undefined) snapshot.arn = wire.arn;
  if (wire.currentPhase !== undefined) snapshot.currentPhase = wire.currentPhase;
  if (wire.projectName !== undefined) snapshot.projectName = wire.projectName;
  if (wire.computeType !== undefined) snapshot.computeType = wire.computeType;
  if (wire.environmentType !== undefined) snapshot.environmentType = wire.environmentType;
  if (wire.image !== undefined) snapshot.image = wire.image;
  return snapshot;
}

export const WatcherProtocolErrorCode = {
  /** A line (or the unterminated rest of the stream) longer than MAX_LINE_BYTES. */
  LineTooLong: 'WATCHER_LINE_TOO_LONG',
} as const;

function lineTooLong(): CbactionsError {
  return new CbactionsError(WatcherProtocolErrorCode.LineTooLong, `a line longer than ${MAX_LINE_BYTES} bytes`);
}

/**
 * Splits decoded socket text into lines, refusing one longer than MAX_LINE_BYTES (UTF-8)
 * however the stream is split. Only the new chunk is scanned, so a line trickled in a byte
 * at a time costs linear time, not a rescan of everything buffered per chunk.
 */
export class LineSplitter {
  private buffered = '';
  private bufferedBytes = 0;

  push(chunk: string): string[] {
    const lines: string[] = [];
    let start = 0;
    for (let end = chunk.indexOf('\n'); end >= 0; end = chunk.indexOf('\n', start)) {
      const piece = chunk.slice(start, end);
      const bytes = this.bufferedBytes + Buffer.byteLength(piece, 'utf8');
      const line = this.buffered + piece;
      this.buffered = '';
      this.bufferedBytes = 0;
      if (bytes > MAX_LINE_BYTES) throw lineTooLong();
      if (line.trim() !== '') lines.push(line);
      start = end + 1;
    }
    const rest = chunk.slice(start);
    this.buffered += rest;
    this.bufferedBytes += Buffer.byteLength(rest, 'utf8');
    if (this.bufferedBytes > MAX_LINE_BYTES) {
      this.buffered = '';
      this.bufferedBytes = 0;
      throw lineTooLong();
    }
    return lines;
  }
}
