/**
 * The native Runner.Worker shim (src/preload/worker-shim.c) as a process, against a fake
 * mux peer that speaks docs/worker-shim.md, with fd R a real pipe (a FIFO opened by the
 * shell that execs the shim, as the listener hands it an anonymous pipe). Every wait is on
 * an event: a message at the peer, the connection closing, the process exiting.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { chmodSync, closeSync, constants, copyFileSync, createWriteStream, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, type WriteStream } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { encodeFrame } from '../../src/protocol/codec.js';
import { MessageType } from '../../src/protocol/messages.js';
import { readProcStat } from '../../src/util/proc.js';
import { exitAfterOutput, type ChildExit } from '../support/child-exit.js';
import { encodeShimHeader, encodeShimMessage, encodeUint32, parseHello, ShimMessage, ShimMessageDecoder, type ShimFrame } from '../support/shim-protocol.js';
import { buildOnce, cleanupAll, requireTool } from './helpers.js';

const LOST = 'cbactions: lost the connection to the mux before the job ended';

/** The fallback records how it was run, then reads fd R to the end (as `cbactions worker` would). */
const FALLBACK_SCRIPT = `#!/bin/sh
out="$(dirname "$0")/fallback"
printf '%s\\n' "$0" "$@" > "$out.args"
echo "$$" > "$out.pid"
# The shell's own builtins read its status: a forked grep would see dash's mask around fork.
while IFS= read -r line; do case "$line" in SigBlk:*|SigIgn:*) echo "$line" ;; esac; done < /proc/$$/status > "$out.signals"
if [ -e "/proc/$$/fd/$3" ]; then echo open > "$out.w"; fi
for fd in /proc/$$/fd/*; do echo "\${fd##*/} $(readlink "$fd")"; done > "$out.fds"
cat <&"$2" > "$out.job"
exit 42
`;

const scratch: string[] = [];
const cleanups: Array<() => void> = [];

afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

afterAll(() => {
  for (const dir of scratch.splice(0)) rmSync(dir, { recursive: true, force: true });
  cleanupAll();
});

interface Installed {
  dir: string;
  shimPath: string;
  fallbackPath: string;
}

/** A bin dir as install-worker leaves it: the shim as Runner.Worker, the script next to it. */
function installShim(options: { fallback?: boolean } = {}): Installed {
  const dir = mkdtempSync(join(tmpdir(), 'cbactions-shim-'));
  scratch.push(dir);
  const shimPath = join(dir, 'bin', 'Runner.Worker');
  const fallbackPath = join(dir, 'bin', 'Runner.Worker.fallback');
  mkdirSync(join(dir, 'bin'));
  copyFileSync(buildOnce().workerShimPath, shimPath);
  chmodSync(shimPath, 0o755);
  if (options.fallback !== false) {
    writeFileSync(fallbackPath, FALLBACK_SCRIPT, { mode: 0o755 });
  }
  return { dir, shimPath, fallbackPath };
}

/** One connection from the shim, as the mux sees it. */
class PeerConnection extends EventEmitter {
  readonly messages: ShimFrame[] = [];
  readonly #decoder = new ShimMessageDecoder();
  readonly #hash = createHash('sha256');
  readonly #data: Buffer[] = [];
  dataBytes = 0;
  decodeError: Error | undefined;
  readonly closed: Promise<void>;

  constructor(
    readonly socket: Socket,
    readonly keepData: boolean,
  ) {
    super();
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('error', () => undefined);
    socket.on('data', (chunk: Buffer) => {
      let frames: ShimFrame[];
      try {
        frames = this.#decoder.push(chunk);
      } catch (error) {
        this.decodeError = error as Error;
        socket.destroy();
        return;
      }
      for (const frame of frames) {
        if (frame.type === ShimMessage.Data) {
          this.#hash.update(frame.body);
          this.dataBytes += frame.body.length;
          if (keepData) this.#data.push(frame.body);
        } else {
          this.messages.push(frame);
          this.emit('message', frame);
        }
      }
    });
  }

  /** The first message of `type` (already here or still to come); DATA is never one. */
  message(type: number, nth = 1): Promise<ShimFrame> {
    const matches = (): ShimFrame | undefined => this.messages.filter((frame) => frame.type === type)[nth - 1];
    return new Promise((resolve, reject) => {
      const found = matches();
      if (found) return resolve(found);
      const onMessage = (): void => {
        const hit = matches();
        if (!hit) return;
        this.off('message', onMessage);
        resolve(hit);
      };
      this.on('message', onMessage);
      void this.closed.then(() => {
        const hit = matches();
        if (hit) resolve(hit);
        else reject(new Error(`the shim closed the connection before message type ${type} #${nth} (decode error: ${this.decodeError?.message ?? 'none'})`));
      });
    });
  }

  send(...buffers: Buffer[]): void {
    this.socket.write(Buffer.concat(buffers));
  }

  get data(): Buffer {
    return Buffer.concat(this.#data);
  }

  get dataSha256(): string {
    return this.#hash.copy().digest('hex');
  }
}

/** The mux's dispatch socket: holds every answer until the test gives it. */
class FakeMux {
  readonly connections: PeerConnection[] = [];
  readonly #events = new EventEmitter();

  private constructor(
    readonly path: string,
    readonly server: Server,
    keepData: boolean,
  ) {
    server.on('connection', (socket) => {
      const connection = new PeerConnection(socket, keepData);
      this.connections.push(connection);
      this.#events.emit('connection', connection);
    });
  }

  static async listen(dir: string, keepData = true): Promise<FakeMux> {
    const path = join(dir, 'dispatch.sock');
    const server = createServer();
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(path, resolve));
    const mux = new FakeMux(path, server, keepData);
    cleanups.push(() => {
      for (const connection of mux.connections) connection.socket.destroy();
      server.close();
    });
    return mux;
  }

  connection(): Promise<PeerConnection> {
    const first = this.connections[0];
    if (first) return Promise.resolve(first);
    return new Promise((resolve) => this.#events.once('connection', resolve));
  }
}

interface RunningShim {
  child: ChildProcess;
  /** fd R's FIFO (`<fifo>.fds`: the descriptors the shim was started with). */
  fifo: string;
  exit: Promise<ChildExit>;
  stderr: () => string;
  /** Writes to fd R (the listener's side of the pipe); resolves when the bytes are in the pipe. */
  write: (bytes: Buffer) => Promise<void>;
  /** Closes the listener's side: the shim reads EOF. */
  end: () => Promise<void>;
}

/**
 * Starts `program spawnclient 3 4` with fd 3 the read end of a FIFO and fd 4 /dev/null,
 * through `sh -c 'exec …'` (so the pid is the shim's). `wrapper` runs it under valgrind.
 */
function startShim(installed: Installed, env: Record<string, string>, options: { wrapper?: string[]; args?: string[] } = {}): RunningShim {
  const fifo = join(installed.dir, `r-${scratch.length}-${Math.random().toString(16).slice(2)}`);
  const made = spawnSync('mkfifo', [fifo]);
  if (made.status !== 0) throw new Error(`mkfifo failed: ${String(made.stderr)}`);
  const command = [...(options.wrapper ?? []), installed.shimPath, ...(options.args ?? ['spawnclient', '3', '4'])];
  // The shell lists the descriptors the shim inherits (beyond R and W), for the fallback's check.
  const listFds = 'for fd in /proc/$$/fd/*; do echo "${fd##*/} $(readlink "$fd")"; done';
  const child = spawn('/bin/sh', ['-c', `fifo="$1"; shift; ${listFds} > "$fifo.fds"; exec "$@" 3<"$fifo" 4>/dev/null`, 'sh', fifo, ...command], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  child.stdout?.resume();
  const exit = exitAfterOutput(child);
  // Opening a FIFO for writing waits for its reader (the shell's redirection).
  const writer: WriteStream = createWriteStream(fifo);
  writer.on('error', () => undefined);
  cleanups.push(() => {
    child.kill('SIGKILL');
    // A writer still waiting in open() would hold a libuv thread: give it a reader.
    try {
      closeSync(openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK));
    } catch {
      // gone
    }
    writer.destroy();
  });
  return {
    child,
    fifo,
    exit,
    stderr: () => stderr,
    write: (bytes) => new Promise((resolve, reject) => writer.write(bytes, (error) => (error ? reject(error) : resolve()))),
    end: () => new Promise((resolve) => writer.end(() => resolve())),
  };
}

function jobFrame(bodyChars = 2_000): Buffer {
  const job = JSON.stringify({ messageType: 'RunnerJobRequest', jobId: 'job-1', padding: 'x'.repeat(bodyChars) });
  return encodeFrame(MessageType.NewJobRequest, job);
}

/**
 * The sockets and anonymous inodes (signalfd, eventfd …) among a process's descriptors, by
 * kernel object, whatever their numbers (the shells move their own descriptors around).
 */
function kernelObjects(listing: string): string[] {
  const objects = listing.split('\n').map((line) => line.split(' ')[1] ?? '').filter((target) => /^(socket|anon_inode):/.test(target));
  return [...new Set(objects)].sort();
}

function readFallback(installed: Installed): { args: string[]; pid: number; signals: string; wOpen: boolean; job: Buffer; kernelObjects: string[] } {
  const out = join(installed.dir, 'bin', 'fallback');
  return {
    // Descriptors above R and W (the shell's own directory scan among them).
    kernelObjects: kernelObjects(readFileSync(`${out}.fds`, 'utf8')),
    args: readFileSync(`${out}.args`, 'utf8').trimEnd().split('\n'),
    pid: Number(readFileSync(`${out}.pid`, 'utf8')),
    signals: readFileSync(`${out}.signals`, 'utf8'),
    wOpen: existsSync(`${out}.w`),
    job: readFileSync(`${out}.job`),
  };
}

function expectFallbackRan(installed: Installed, shim: RunningShim, exit: ChildExit, job: Buffer): void {
  expect(exit, shim.stderr()).toEqual({ code: 42, signal: null });
  expect(shim.stderr()).toBe('');
  const fallback = readFallback(installed);
  expect(fallback.args).toEqual([installed.fallbackPath, 'spawnclient', '3', '4']);
  expect(fallback.pid).toBe(shim.child.pid); // exec'ed in place: the listener's child is the same process
  expect(fallback.wOpen).toBe(true);
  // What we were given (nothing blocked, nothing ignored), not the shim's own signal setup.
  expect(fallback.signals).toBe('SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n');
  expect(fallback.job.equals(job)).toBe(true);
  // The shim's socket and signalfd are close-on-exec: the fallback has just what the shim was given.
  const given = kernelObjects(readFileSync(`${shim.fifo}.fds`, 'utf8'));
  for (const object of fallback.kernelObjects) expect(given, `${object} reached the fallback`).toContain(object);
}

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'cbactions-shim-mux-'));
  scratch.push(dir);
  return dir;
}

/** Runs a shim to the point where the mux accepted and the whole job arrived. */
/** A shim started against a fake mux, its HELLO read: where every dispatch test begins. */
async function shimAfterHello(env: Record<string, string> = {}, options: { wrapper?: string[]; keepData?: boolean } = {}): Promise<{ shim: RunningShim; peer: PeerConnection; mux: FakeMux; installed: Installed }> {
  const installed = installShim();
  const mux = await FakeMux.listen(tempDir(), options.keepData ?? true);
  const shim = startShim(installed, { CBACTIONS_DISPATCH_SOCKET: mux.path, ...env }, options.wrapper ? { wrapper: options.wrapper } : {});
  const peer = await mux.connection();
  await peer.message(ShimMessage.Hello);
  return { shim, peer, mux, installed };
}

async function acceptedJob(env: Record<string, string> = {}, job = jobFrame(), options: { wrapper?: string[] } = {}): Promise<{ shim: RunningShim; peer: PeerConnection; mux: FakeMux; installed: Installed }> {
  const { shim, peer, mux, installed } = await shimAfterHello(env, options);
  // Not awaited before ACCEPT: a job bigger than the pipe is only written once the shim reads.
  const written = shim.write(job).then(() => shim.end());
  peer.send(encodeShimMessage(ShimMessage.Accept));
  await written;
  await peer.message(ShimMessage.Eof);
  expect(peer.data.equals(job)).toBe(true);
  return { shim, peer, mux, installed };
}

describe('worker-shim: argv (the real worker exits 1 unless it gets exactly "spawnclient R W")', () => {
  it.each([
    [[], /expected the arguments "spawnclient R W", got 0 arguments/],
    [['spawnclient', '3'], /got 2 arguments/],
    [['spawnclient', '3', '4', '5'], /got 4 arguments/],
    [['spawnserver', '3', '4'], /expected "spawnclient", got "spawnserver"/],
    [['spawnclient', '3x', '4'], /R and W must be file descriptor numbers, got "3x" "4"/],
    [['spawnclient', '3', '-4'], /R and W must be file descriptor numbers/],
    [['spawnclient', '3', '77'], /file descriptor 77 is not open/],
  ])('%j: one reason line, exit 1, no fallback', async (args, reason) => {
    const installed = installShim();
    const shim = startShim(installed, {}, { args });
    const exit = await shim.exit;
    expect(exit).toEqual({ code: 1, signal: null });
    expect(shim.stderr()).toMatch(/^cbactions: the job could not be started: .* \(WORKER_USAGE\)\n$/);
    expect(shim.stderr()).toMatch(reason);
    expect(existsSync(join(installed.dir, 'bin', 'fallback.args'))).toBe(false);
  });
});

describe('worker-shim: no mux, so the fallback script runs the job (same argv, same fds, same process)', () => {
  it.each([
    ['the socket variable is unset', (): Record<string, string> => ({})],
    ['the socket variable is empty', (): Record<string, string> => ({ CBACTIONS_DISPATCH_SOCKET: '' })],
    ['the socket does not exist', (): Record<string, string> => ({ CBACTIONS_DISPATCH_SOCKET: join(tempDir(), 'none.sock') })],
    ['the socket path is too long for a Unix socket', (): Record<string, string> => ({ CBACTIONS_DISPATCH_SOCKET: `/tmp/${'x'.repeat(200)}.sock` })],
  ])('%s', async (_name, env) => {
    const installed = installShim();
    const job = jobFrame();
    const shim = startShim(installed, env());
    await shim.write(job);
    await shim.end();
    expectFallbackRan(installed, shim, await shim.exit, job);
  });

  it('the connect is refused (a socket file nobody listens on)', async () => {
    const dir = tempDir();
    const path = join(dir, 'stale.sock');
    // A mux that died: its socket file stays, nothing accepts.
    const stale = spawnSync(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, 'SIGKILL'))`]);
    expect(stale.signal).toBe('SIGKILL');
    expect(existsSync(path)).toBe(true);
    const installed = installShim();
    const job = jobFrame();
    const shim = startShim(installed, { CBACTIONS_DISPATCH_SOCKET: path });
    await shim.write(job);
    await shim.end();
    expectFallbackRan(installed, shim, await shim.exit, job);
  });

  it('the mux closes the connection before ACCEPT: fd R was never read, the fallback gets the whole job', async () => {
    const { shim, peer, installed } = await shimAfterHello();
    // The whole job is in the pipe before the shim decides (it fits the 64 KiB pipe).
    const job = jobFrame(20_000);
    await shim.write(job);
    await shim.end();
    peer.socket.end();
    expectFallbackRan(installed, shim, await shim.exit, job);
    expect(peer.dataBytes).toBe(0);
  });

  it('no ACCEPT within 10 s: falls back', async () => {
    const { shim, peer, installed } = await shimAfterHello();
    const job = jobFrame();
    await shim.write(job);
    await shim.end();
    // The peer never answers; the shim's own 10 s deadline ends the wait.
    expectFallbackRan(installed, shim, await shim.exit, job);
    await peer.closed;
  }, 60_000);

  it('a fallback that is missing: one reason line naming it, exit 1', async () => {
    const installed = installShim({ fallback: false });
    const shim = startShim(installed, {});
    const exit = await shim.exit;
    expect(exit).toEqual({ code: 1, signal: null });
    expect(shim.stderr()).toBe(`cbactions: the job could not be started: cannot run ${installed.fallbackPath}: No such file or directory (WORKER_FALLBACK)\n`);
  });
});

describe('worker-shim: relaying a job to the mux', () => {
  it('HELLO (version, pid, the CBACTIONS_* variables and nothing else), then after ACCEPT the exact pipe bytes, EOF, LINEs on stderr, the EXIT code', async () => {
    const installed = installShim();
    const mux = await FakeMux.listen(tempDir());
    const shim = startShim(installed, {
      CBACTIONS_DISPATCH_SOCKET: mux.path,
      CBACTIONS_POOL: 'linux',
      CBACTIONS_ODD: 'a=b c\tä',
      CBACTIONS_EMPTY: '',
      SECRET_TOKEN: 'never-forwarded',
      XCBACTIONS_NOT: 'prefix only',
    });
    const peer = await mux.connection();
    const hello = parseHello((await peer.message(ShimMessage.Hello)).body);
    expect(hello.version).toBe('cbactions-shim 1');
    expect(hello.pid).toBe(shim.child.pid);
    expect(hello.env).toEqual({ CBACTIONS_DISPATCH_SOCKET: mux.path, CBACTIONS_POOL: 'linux', CBACTIONS_ODD: 'a=b c\tä', CBACTIONS_EMPTY: '' });
    expect(hello.entries).toHaveLength(2 + 4);

    const job = jobFrame();
    // Written in two pieces: the frame header and body arrive separately, as DATA in any chunking.
    await shim.write(job.subarray(0, 5));
    peer.send(encodeShimMessage(ShimMessage.Accept));
    await shim.write(job.subarray(5));
    await shim.end();
    const eof = await peer.message(ShimMessage.Eof);
    expect(eof.body.length).toBe(0);
    expect(peer.data.equals(job)).toBe(true);

    peer.send(encodeShimMessage(ShimMessage.Line, 'cbactions: first reason'), encodeShimMessage(ShimMessage.Line, 'two\nlines become one'), encodeShimMessage(ShimMessage.Exit, encodeUint32(103)));
    expect(await shim.exit).toEqual({ code: 103, signal: null });
    expect(shim.stderr()).toBe('cbactions: first reason\ntwo lines become one\n');
    await peer.closed;
    expect(peer.decodeError).toBeUndefined();
  });

  it('mux messages split into single bytes are put back together', async () => {
    const { shim, peer } = await acceptedJob();
    const bytes = Buffer.concat([encodeShimMessage(ShimMessage.Line, 'split ünicode'), encodeShimMessage(ShimMessage.Exit, encodeUint32(104))]);
    for (const byte of bytes) await new Promise<void>((resolve) => peer.socket.write(Buffer.from([byte]), () => resolve()));
    expect(await shim.exit).toEqual({ code: 104, signal: null });
    expect(shim.stderr()).toBe('split ünicode\n');
  });

  it('EXIT may come before the job is fully read (the mux decided early)', async () => {
    const { shim, peer } = await shimAfterHello();
    peer.send(encodeShimMessage(ShimMessage.Accept), encodeShimMessage(ShimMessage.Line, 'refused'), encodeShimMessage(ShimMessage.Exit, encodeUint32(2)));
    expect(await shim.exit).toEqual({ code: 2, signal: null });
    expect(shim.stderr()).toBe('refused\n');
  });

  it('a 5 MB job streams through (same sha256) without the shim ever holding it', async () => {
    const { shim, peer } = await shimAfterHello({}, { keepData: false });
    peer.send(encodeShimMessage(ShimMessage.Accept));
    const job = jobFrame(2_500_000);
    expect(job.length).toBeGreaterThan(5_000_000);
    await shim.write(job);
    await shim.end();
    await peer.message(ShimMessage.Eof);
    expect(peer.dataBytes).toBe(job.length);
    expect(peer.dataSha256).toBe(createHash('sha256').update(job).digest('hex'));
    // Peak resident memory while it relayed, far below the job's size.
    const peakKb = Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${shim.child.pid}/status`, 'utf8'))?.[1]);
    expect(peakKb).toBeGreaterThan(0);
    expect(peakKb).toBeLessThan(4 * 1024);
    peer.send(encodeShimMessage(ShimMessage.Exit, encodeUint32(100)));
    expect(await shim.exit).toEqual({ code: 100, signal: null });
  });

  it('SIGTERM and SIGINT become SIGNAL messages; the shim keeps running until EXIT', async () => {
    const { shim, peer } = await acceptedJob();
    shim.child.kill('SIGTERM');
    expect((await peer.message(ShimMessage.Signal)).body.readUInt32LE(0)).toBe(15);
    shim.child.kill('SIGINT');
    expect((await peer.message(ShimMessage.Signal, 2)).body.readUInt32LE(0)).toBe(2);
    expect(shim.child.exitCode).toBeNull();
    expect(shim.child.signalCode).toBeNull();
    expect(readProcStat(shim.child.pid as number)?.state).not.toBe('Z');
    peer.send(encodeShimMessage(ShimMessage.Exit, encodeUint32(103)));
    expect(await shim.exit).toEqual({ code: 103, signal: null });
    expect(shim.stderr()).toBe('');
  });

  it('a SIGTERM before ACCEPT waits, and reaches the mux once it accepted', async () => {
    const { shim, peer } = await shimAfterHello();
    shim.child.kill('SIGTERM');
    peer.send(encodeShimMessage(ShimMessage.Accept));
    expect((await peer.message(ShimMessage.Signal)).body.readUInt32LE(0)).toBe(15);
    peer.send(encodeShimMessage(ShimMessage.Exit, encodeUint32(103)));
    expect(await shim.exit).toEqual({ code: 103, signal: null });
  });

  it('a SIGTERM before ACCEPT, then no mux after all: it acts as it would without a shim (the default ends the process), the fallback never runs', async () => {
    const { shim, peer, installed } = await shimAfterHello();
    shim.child.kill('SIGTERM');
    peer.socket.end();
    expect(await shim.exit).toEqual({ code: null, signal: 'SIGTERM' });
    expect(existsSync(join(installed.dir, 'bin', 'fallback.args'))).toBe(false);
  });

  it('CBACTIONS_* variables beyond the 64 KiB of a HELLO: one reason line, exit 1, nothing sent', async () => {
    const installed = installShim();
    const mux = await FakeMux.listen(tempDir());
    const shim = startShim(installed, { CBACTIONS_DISPATCH_SOCKET: mux.path, CBACTIONS_BIG: 'x'.repeat(70_000) });
    expect(await shim.exit).toEqual({ code: 1, signal: null });
    expect(shim.stderr()).toBe('cbactions: the job could not be started: the CBACTIONS_* environment does not fit in the 65536 bytes the mux accepts (SHIM_HELLO_TOO_LARGE)\n');
    expect(mux.connections).toHaveLength(0);
  });

  it('killed with SIGKILL (the listener after a cancel): the mux sees the connection close', async () => {
    const { shim, peer } = await acceptedJob();
    shim.child.kill('SIGKILL');
    await peer.closed;
    expect((await shim.exit).signal).toBe('SIGKILL');
  });
});

describe('worker-shim: the mux goes wrong after ACCEPT (reason line, exit 1)', () => {
  it('the mux closes the connection in the middle of a message', async () => {
    const { shim, peer } = await acceptedJob();
    peer.send(encodeShimHeader(ShimMessage.Line, 100), Buffer.from('ten bytes!'));
    peer.socket.end();
    expect(await shim.exit).toEqual({ code: 1, signal: null });
    expect(shim.stderr()).toBe(`${LOST} (the mux closed it in the middle of a message)\n`);
  });

  it('the mux closes the connection without an EXIT', async () => {
    const { shim, peer } = await acceptedJob();
    peer.send(encodeShimMessage(ShimMessage.Line, 'a reason first'));
    peer.socket.end();
    expect(await shim.exit).toEqual({ code: 1, signal: null });
    expect(shim.stderr()).toBe(`a reason first\n${LOST} (the mux closed it without an EXIT)\n`);
  });

  it('the mux dies before the job was read: the same line', async () => {
    const { shim, peer } = await shimAfterHello();
    peer.send(encodeShimMessage(ShimMessage.Accept));
    await shim.write(jobFrame(100_000));
    peer.socket.destroy();
    expect(await shim.exit).toEqual({ code: 1, signal: null });
    expect(shim.stderr()).toMatch(new RegExp(`^${LOST} \\(.+\\)\\n$`));
  });

  it.each([
    ['an unknown type', encodeShimMessage(7, 'x'), 'cbactions: the mux sent a message the worker shim does not know (type 7, 1 bytes) (SHIM_PROTOCOL)'],
    ['a shim-side type', encodeShimMessage(ShimMessage.Data, 'x'), 'cbactions: the mux sent a message the worker shim does not know (type 2, 1 bytes) (SHIM_PROTOCOL)'],
    ['an oversized LINE (header only: refused before the body)', encodeShimHeader(ShimMessage.Line, 4097), 'cbactions: the mux sent an invalid LINE message (4097 bytes) (SHIM_PROTOCOL)'],
    ['a huge length', encodeShimHeader(ShimMessage.Line, 0xffffffff), 'cbactions: the mux sent an invalid LINE message (4294967295 bytes) (SHIM_PROTOCOL)'],
    ['a short EXIT', encodeShimMessage(ShimMessage.Exit, Buffer.from([1])), 'cbactions: the mux sent an invalid EXIT message (1 bytes) (SHIM_PROTOCOL)'],
    ['an ACCEPT with a body', encodeShimMessage(ShimMessage.Accept, 'x'), 'cbactions: the mux sent an invalid ACCEPT message (1 bytes, a second ACCEPT) (SHIM_PROTOCOL)'],
    ['a second ACCEPT', encodeShimMessage(ShimMessage.Accept), 'cbactions: the mux sent an invalid ACCEPT message (0 bytes, a second ACCEPT) (SHIM_PROTOCOL)'],
    ['an exit code above 255', encodeShimMessage(ShimMessage.Exit, encodeUint32(256)), 'cbactions: the mux sent exit code 256, outside 0..255 (SHIM_PROTOCOL)'],
  ])('%s', async (_name, message, line) => {
    const { shim, peer } = await acceptedJob();
    peer.send(message);
    expect(await shim.exit).toEqual({ code: 1, signal: null });
    expect(shim.stderr()).toBe(`${line}\n`);
    await peer.closed;
  });

  it('an unknown message before ACCEPT is refused too (never a fallback)', async () => {
    const { shim, peer, installed } = await shimAfterHello();
    peer.send(encodeShimMessage(9));
    expect(await shim.exit).toEqual({ code: 1, signal: null });
    expect(shim.stderr()).toBe('cbactions: the mux sent a message the worker shim does not know (type 9, 0 bytes) (SHIM_PROTOCOL)\n');
    expect(existsSync(join(installed.dir, 'bin', 'fallback.args'))).toBe(false);
  });
});

describe('worker-shim under valgrind (memory errors and leaks fail the test)', () => {
  const valgrind = ['valgrind', '--error-exitcode=99', '--leak-check=full', '--show-leak-kinds=all', '--errors-for-leak-kinds=all', '--quiet'];

  it('the happy path is clean', async () => {
    requireTool('valgrind');
    const { shim, peer } = await acceptedJob({}, jobFrame(200_000), { wrapper: valgrind });
    shim.child.kill('SIGTERM');
    await peer.message(ShimMessage.Signal);
    peer.send(encodeShimMessage(ShimMessage.Line, 'done'), encodeShimMessage(ShimMessage.Exit, encodeUint32(101)));
    const exit = await shim.exit;
    expect(shim.stderr()).toBe('done\n');
    expect(exit).toEqual({ code: 101, signal: null });
  }, 120_000);

  it('a refused mux message is clean', async () => {
    requireTool('valgrind');
    const { shim, peer } = await acceptedJob({}, jobFrame(), { wrapper: valgrind });
    peer.send(encodeShimHeader(ShimMessage.Line, 5000));
    const exit = await shim.exit;
    expect(shim.stderr()).toBe('cbactions: the mux sent an invalid LINE message (5000 bytes) (SHIM_PROTOCOL)\n');
    expect(exit).toEqual({ code: 1, signal: null });
  }, 120_000);

  it('the fallback path is clean up to the exec (valgrind reports errors as they happen)', async () => {
    requireTool('valgrind');
    const { shim, peer, installed } = await shimAfterHello({}, { wrapper: valgrind });
    const job = jobFrame();
    await shim.write(job);
    await shim.end();
    peer.socket.end();
    expectFallbackRan(installed, shim, await shim.exit, job);
  }, 120_000);

  it('a fallback that cannot run is clean (no exec: the leak check runs at exit)', async () => {
    requireTool('valgrind');
    const installed = installShim({ fallback: false });
    const shim = startShim(installed, { CBACTIONS_DISPATCH_SOCKET: join(tempDir(), 'none.sock') }, { wrapper: valgrind });
    const exit = await shim.exit;
    expect(shim.stderr()).toMatch(/^cbactions: the job could not be started: cannot run .*Runner\.Worker\.fallback: No such file or directory \(WORKER_FALLBACK\)\n$/);
    expect(exit).toEqual({ code: 1, signal: null });
  }, 120_000);
});
