import { mkdtempSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { StringDecoder } from 'node:string_decoder';
import { join } from 'node:path';
import fc from 'fast-check';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BuildSnapshot } from '../../src/dispatch/codebuild-api.js';
import { BuildWatcher } from '../../src/watcher/build-watcher.js';
import {
  ClientMessageSchema,
  LineSplitter,
  MAX_LINE_BYTES,
  ServerMessageSchema,
  SnapshotSchema,
  WatcherProtocolErrorCode,
  snapshotForWire,
  snapshotFromWire,
  type ClientMessage,
  type ServerMessage,
} from '../../src/watcher/protocol.js';
import { WatcherServer } from '../../src/watcher/watcher-server.js';
import { isCbactionsError } from '../../src/util/errors.js';
import { InMemoryBuilds } from '../support/in-memory-builds.js';
import { fuzzParameters } from '../support/fuzz.js';

/**
 * What the socket hands the splitter: `text` as UTF-8 bytes cut at `cuts`, each piece
 * through one StringDecoder, as `socket.setEncoding('utf8')` does (a character split
 * between packets arrives whole in the next chunk).
 */
function splitAt(text: string, cuts: readonly number[]): string[] {
  const bytes = Buffer.from(text, 'utf8');
  const points = [...new Set(cuts.map((cut) => cut % (bytes.length + 1)))].sort((a, b) => a - b);
  const decoder = new StringDecoder('utf8');
  const chunks: string[] = [];
  let previous = 0;
  for (const point of [...points, bytes.length]) {
    chunks.push(decoder.write(bytes.subarray(previous, point)));
    previous = point;
  }
  chunks.push(decoder.end());
  return chunks;
}

/** The text as the other end decodes it (a lone surrogate travels as U+FFFD). */
const decoded = (text: string): string => Buffer.from(text, 'utf8').toString('utf8');
const cuts = fc.array(fc.nat(), { maxLength: 40 });

type Split = { lines: string[]; code?: string };

/** Feeds chunks; an error must be the typed line-length error, anything else fails the property. */
function split(chunks: readonly string[]): Split {
  const splitter = new LineSplitter();
  const lines: string[] = [];
  try {
    for (const chunk of chunks) lines.push(...splitter.push(chunk));
  } catch (error) {
    if (!isCbactionsError(error, WatcherProtocolErrorCode.LineTooLong)) throw new Error(`the splitter threw something untyped: ${String(error)}`, { cause: error });
    return { lines, code: error.code };
  }
  return { lines };
}

/** What the splitter must give for a whole stream: its complete, non-blank lines, or the error when one is too long. */
function reference(text: string): Split {
  const parts = text.split('\n');
  const rest = parts.pop() ?? '';
  const firstTooLong = [...parts, rest].findIndex((part) => Buffer.byteLength(part, 'utf8') > MAX_LINE_BYTES);
  if (firstTooLong < 0) return { lines: parts.filter((line) => line.trim() !== '') };
  return { lines: parts.slice(0, firstTooLong).filter((line) => line.trim() !== ''), code: WatcherProtocolErrorCode.LineTooLong };
}

const text = (maxLength: number) => fc.oneof(fc.string({ maxLength }), fc.string({ unit: 'binary', maxLength }), fc.string({ unit: fc.constantFrom('a', ' ', '\n', '\r', '\t', '{', '}', '"', 'é', '😀', '\ud800'), maxLength }));

// Valid messages, each field within the schema's limits (zod counts UTF-16 code units).
const bounded = (max: number) => fc.string({ unit: 'binary', maxLength: Math.floor(max / 2) });
const buildId = fc.tuple(fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_-]{0,40}$/), fc.stringMatching(/^[A-Za-z0-9-]{1,64}$/)).map(([project, id]) => `${project}:${id}`);
const clientMessage: fc.Arbitrary<ClientMessage> = fc.oneof(
  fc.record({ op: fc.constant('watch' as const), buildId, pid: fc.integer({ min: 1, max: 2 ** 31 }), jobId: bounded(128), pool: bounded(64), slot: bounded(128) }, { requiredKeys: ['op', 'buildId', 'pid'] }),
  fc.constant({ op: 'poke' as const }),
  fc.record({ op: fc.constant('done' as const), exitCode: fc.integer(), failureCode: bounded(64), jobId: bounded(128), pool: bounded(64), slot: bounded(128) }, { requiredKeys: ['op', 'exitCode'] }),
);
const phase = fc.record(
  {
    type: bounded(64),
    status: bounded(64),
    contexts: fc.array(fc.record({ statusCode: bounded(256), message: bounded(4096) }, { requiredKeys: [] }), { maxLength: 3 }),
  },
  { requiredKeys: ['type', 'contexts'] },
);
const snapshot: fc.Arbitrary<BuildSnapshot> = fc.record(
  {
    id: buildId,
    arn: bounded(2048),
    status: bounded(64),
    complete: fc.boolean(),
    currentPhase: bounded(64),
    phases: fc.array(phase, { maxLength: 4 }),
    exported: fc.dictionary(fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_]{0,30}$/), bounded(8192), { maxKeys: 4 }),
    projectName: bounded(255),
    computeType: bounded(64),
    environmentType: bounded(64),
    image: bounded(2048),
    startTime: fc.date({ noInvalidDate: true }),
    endTime: fc.date({ noInvalidDate: true }),
  },
  { requiredKeys: ['id', 'status', 'complete', 'phases', 'exported'] },
);
const serverMessage: fc.Arbitrary<ServerMessage> = fc.oneof(
  snapshot.map((s) => ({ op: 'update' as const, snapshot: snapshotForWire(s) })),
  snapshot.map((s) => ({ op: 'complete' as const, snapshot: snapshotForWire(s) })),
  fc.record({ op: fc.constant('error' as const), code: bounded(64), message: bounded(1000) }),
);

function withoutDates(value: BuildSnapshot): BuildSnapshot {
  const { startTime: _start, endTime: _end, ...rest } = value;
  return rest;
}

describe('watcher socket protocol properties', () => {
  it('splits any text into the same lines however it is split', () => {
    fc.assert(
      fc.property(text(200), cuts, (input, cutPoints) => {
        const expected = reference(decoded(input));
        expect(expected.code).toBeUndefined();
        expect(split(splitAt(input, cutPoints))).toEqual(expected);
      }),
      fuzzParameters(),
    );
  });

  it('refuses a line over the limit (in UTF-8 bytes) with WATCHER_LINE_TOO_LONG however it is split, and accepts one at the limit', () => {
    // Lines near the limit, made of one- to four-byte characters, between short ones.
    const longLine = fc
      .tuple(fc.integer({ min: -8, max: 8 }), fc.constantFrom('x', 'é', '東', '😀'))
      .map(([delta, char]) => {
        const bytes = Buffer.byteLength(char, 'utf8');
        const line = char.repeat(Math.floor((MAX_LINE_BYTES + delta) / bytes));
        return line + 'y'.repeat(MAX_LINE_BYTES + delta - Buffer.byteLength(line, 'utf8'));
      });
    const stream = fc.array(fc.oneof({ weight: 3, arbitrary: text(20) }, { weight: 1, arbitrary: longLine }), { minLength: 1, maxLength: 4 }).map((lines) => lines.join('\n'));
    fc.assert(
      fc.property(stream, cuts, fc.boolean(), (input, cutPoints, terminated) => {
        const whole = terminated ? `${input}\n` : input;
        const expected = reference(decoded(whole));
        const actual = split(splitAt(whole, cutPoints));
        expect(actual.code).toBe(expected.code);
        // Lines before the bad one may come out of earlier chunks; none after it, and none too long.
        expect(expected.lines.slice(0, actual.lines.length)).toEqual(actual.lines);
        if (expected.code === undefined) expect(actual.lines).toEqual(expected.lines);
        for (const line of actual.lines) expect(Buffer.byteLength(line, 'utf8')).toBeLessThanOrEqual(MAX_LINE_BYTES);
      }),
      fuzzParameters(20),
    );
  });

  it('valid client and server messages survive JSON lines, random splits and the schema, unchanged', () => {
    fc.assert(
      fc.property(fc.array(clientMessage, { maxLength: 5 }), fc.array(serverMessage, { maxLength: 3 }), cuts, (clients, servers, cutPoints) => {
        const clientStream = clients.map((message) => `${JSON.stringify(message)}\n`).join('');
        const serverStream = servers.map((message) => `${JSON.stringify(message)}\n`).join('');
        const clientLines = split(splitAt(clientStream, cutPoints));
        const serverLines = split(splitAt(serverStream, cutPoints));
        expect(clientLines.lines.map((line) => ClientMessageSchema.parse(JSON.parse(line)))).toEqual(clients);
        expect(serverLines.lines.map((line) => ServerMessageSchema.parse(JSON.parse(line)))).toEqual(servers);
      }),
      fuzzParameters(2),
    );
  });

  it('a snapshot crosses the wire intact but for its dates', () => {
    fc.assert(
      fc.property(snapshot, (build) => {
        const wire = SnapshotSchema.parse(JSON.parse(JSON.stringify(snapshotForWire(build))));
        expect(snapshotFromWire(wire)).toEqual(withoutDates(build));
      }),
      fuzzParameters(),
    );
  });

  it('garbage lines never make the schemas throw: JSON.parse fails with a SyntaxError or the schema says no', () => {
    const garbage = fc.oneof(
      text(100),
      fc.jsonValue().map((value) => JSON.stringify(value)),
      fc.record({ op: fc.constantFrom('watch', 'poke', 'done', 'update', 'complete', 'error', 'x'), extra: fc.jsonValue() }).map((value) => JSON.stringify(value)),
    );
    fc.assert(
      fc.property(garbage, (line) => {
        let value: unknown;
        try {
          value = JSON.parse(line);
        } catch (error) {
          expect(error).toBeInstanceOf(SyntaxError);
          return;
        }
        ClientMessageSchema.safeParse(value);
        ServerMessageSchema.safeParse(value);
      }),
      fuzzParameters(),
    );
  });
});

describe('watcher server over its socket, fed random client bytes', () => {
  const silent = pino({ level: 'silent' });
  let builds: InMemoryBuilds;
  let watcher: BuildWatcher;
  let server: WatcherServer;

  beforeAll(async () => {
    builds = new InMemoryBuilds();
    watcher = new BuildWatcher(builds, silent, { minIntervalMs: 10, maxCallsPerSecond: 100, hardFailureLimit: 3 });
    watcher.start();
    server = await WatcherServer.listen({ socketPath: join(mkdtempSync(join(tmpdir(), 'watcher-fuzz-')), 'w.sock'), watcher, builds, logger: silent });
  });
  afterAll(async () => {
    await server.close();
    await watcher.close();
  });

  /** Sends `input`, half-closes, and collects every line the server writes until it closes the connection. */
  function exchange(input: string): Promise<string[]> {
    return new Promise((resolve, reject) => {
      const socket = connect(server.socketPath);
      let received = '';
      socket.setEncoding('utf8');
      socket.on('data', (chunk: string) => (received += chunk));
      // The server hangs up after a bad line; the rest of our input then meets a closed pipe.
      socket.on('error', (error: NodeJS.ErrnoException) => {
        if (error.code !== 'EPIPE' && error.code !== 'ECONNRESET') reject(error);
      });
      socket.on('close', () => resolve(received.split('\n').filter((line) => line !== '')));
      socket.end(input);
    });
  }

  it('regression: a refusal listing many unknown keys is cut to what the client accepts (it was 2,236 characters)', async () => {
    const fields = Object.fromEntries(Array.from({ length: 60 }, (_, i) => [`key-number-${i}-`.padEnd(30, 'z'), i]));
    const [reply, ...more] = await exchange(`${JSON.stringify({ op: 'poke', ...fields })}\n`);
    expect(more).toEqual([]);
    const parsed = ServerMessageSchema.parse(JSON.parse(reply ?? ''));
    expect(parsed).toMatchObject({ op: 'error', code: 'WATCHER_BAD_MESSAGE', message: expect.stringContaining('Unrecognized keys') });
  });

  it('answers only with messages the client can parse, and never hangs', async () => {
    // No `watch`: a followed build outlives the connection (the orphan path has its own tests).
    const safeMessage = clientMessage.filter((message) => message.op !== 'watch').map((message) => JSON.stringify(message));
    const wrongShape = fc
      .tuple(fc.constantFrom('watch', 'poke', 'done'), fc.dictionary(fc.string({ unit: 'binary', maxLength: 80, size: 'large' }), fc.jsonValue({ maxDepth: 1 }), { maxKeys: 30, size: 'large' }))
      .map(([op, fields]) => JSON.stringify({ ...fields, op }));
    const line = fc.oneof(safeMessage, wrongShape, text(60), fc.constant('x'.repeat(MAX_LINE_BYTES + 1)));
    await fc.assert(
      fc.asyncProperty(fc.array(line, { minLength: 1, maxLength: 4 }), async (lines) => {
        const replies = await exchange(`${lines.join('\n')}\n`);
        for (const reply of replies) {
          const parsed = ServerMessageSchema.safeParse(JSON.parse(reply));
          expect(parsed.success, `server sent ${reply.slice(0, 200)}…`).toBe(true);
        }
      }),
      // Each case is a connection; shrinking one would outlast the test timeout, so the
      // first failing input is reported as found (its seed replays it).
      fuzzParameters(20, { endOnFailure: true }),
    );
  });
});

describe('regressions the properties found in the line splitter', () => {
  it('refuses an over-long line that follows a newline in the same chunk (it was returned whole)', () => {
    const splitter = new LineSplitter();
    expect(() => splitter.push(`a\n${'y'.repeat(MAX_LINE_BYTES + 10)}`)).toThrow(expect.objectContaining({ code: WatcherProtocolErrorCode.LineTooLong }));
    expect(() => new LineSplitter().push(`${'y'.repeat(MAX_LINE_BYTES + 1)}\n`)).toThrow(expect.objectContaining({ code: WatcherProtocolErrorCode.LineTooLong }));
  });

  it('throws a typed error (it was a plain Error without a code)', () => {
    let caught: unknown;
    try {
      new LineSplitter().push('z'.repeat(MAX_LINE_BYTES + 1));
    } catch (error) {
      caught = error;
    }
    expect(isCbactionsError(caught, WatcherProtocolErrorCode.LineTooLong)).toBe(true);
  });

  it('counts the limit in UTF-8 bytes, not UTF-16 units', () => {
    const threeByteChars = '東'.repeat(Math.floor(MAX_LINE_BYTES / 3) + 1);
    expect(threeByteChars.length).toBeLessThan(MAX_LINE_BYTES);
    expect(() => new LineSplitter().push(`${threeByteChars}\n`)).toThrow(expect.objectContaining({ code: WatcherProtocolErrorCode.LineTooLong }));
    expect(new LineSplitter().push(`${'東'.repeat(Math.floor(MAX_LINE_BYTES / 3))}\n`)).toHaveLength(1);
  });

  it('takes a line at the limit fed one character per chunk', () => {
    const splitter = new LineSplitter();
    let early = 0;
    for (let i = 0; i < MAX_LINE_BYTES; i += 1) early += splitter.push('x').length;
    expect(early).toBe(0);
    expect(splitter.push('\n')).toEqual(['x'.repeat(MAX_LINE_BYTES)]);
  });
});
