import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  decodeHello,
  decodeUint32,
  DispatchDecoder,
  encodeDispatchMessage,
  encodeExit,
  encodeHello,
  encodeLine,
  MAX_SHIM_BODY,
  MuxMessage,
  muxToShimDecoder,
  ShimMessage,
  ShimProtocolErrorCode,
  shimToMuxDecoder,
  type DispatchMessageType,
} from '../../src/dispatch/shim-protocol.js';
import { isCbactionsError } from '../../src/util/errors.js';
import { fuzzParameters } from '../support/fuzz.js';

function splitAt(bytes: Buffer, cuts: readonly number[]): Buffer[] {
  const points = [...new Set(cuts.map((cut) => cut % (bytes.length + 1)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let previous = 0;
  for (const point of [...points, bytes.length]) {
    chunks.push(bytes.subarray(previous, point));
    previous = point;
  }
  return chunks;
}

function header(type: number, length: number): Buffer {
  const bytes = Buffer.alloc(8);
  bytes.writeUInt32LE(type, 0);
  bytes.writeUInt32LE(length, 4);
  return bytes;
}

function codeOf(action: () => unknown): string | undefined {
  try {
    action();
  } catch (error) {
    return isCbactionsError(error) ? error.code : 'not a CbactionsError';
  }
  return undefined;
}

describe('shim protocol codec (docs/worker-shim.md)', () => {
  it('writes little-endian type and length before the body', () => {
    expect(encodeDispatchMessage(ShimMessage.Data, Buffer.from('ab'))).toEqual(Buffer.from([2, 0, 0, 0, 2, 0, 0, 0, 0x61, 0x62]));
    expect(encodeExit(103)).toEqual(Buffer.from([103, 0, 0, 0, 4, 0, 0, 0, 103, 0, 0, 0]));
  });

  it('decodes any sequence of messages fed in random splits, whole and in order', () => {
    const shimType = fc.constantFrom<DispatchMessageType>(ShimMessage.Data, ShimMessage.Eof, ShimMessage.Signal);
    const message = shimType.chain((type) => fc.uint8Array({ maxLength: Math.min(MAX_SHIM_BODY[type], 300) }).map((body) => ({ type, body: Buffer.from(body) })));
    fc.assert(
      fc.property(fc.array(message, { maxLength: 8 }), fc.array(fc.nat(), { maxLength: 30 }), (messages, cuts) => {
        const stream = Buffer.concat(messages.map((m) => encodeDispatchMessage(m.type, m.body)));
        const decoder = shimToMuxDecoder();
        const decoded = splitAt(stream, cuts).flatMap((chunk) => decoder.push(chunk));
        decoder.end();
        return decoded.length === messages.length && decoded.every((d, i) => d.type === messages[i]?.type && d.body.equals(messages[i]?.body ?? Buffer.alloc(0)));
      }),
      fuzzParameters(),
    );
  });

  it('refuses a length above the type maximum from the header alone', () => {
    const decoder = shimToMuxDecoder();
    expect(codeOf(() => decoder.push(header(ShimMessage.Data, MAX_SHIM_BODY[ShimMessage.Data] + 1)))).toBe(ShimProtocolErrorCode.TooLarge);
    expect(codeOf(() => shimToMuxDecoder().push(header(ShimMessage.Signal, 5)))).toBe(ShimProtocolErrorCode.TooLarge);
    expect(codeOf(() => shimToMuxDecoder().push(header(ShimMessage.Hello, 0xffffffff)))).toBe(ShimProtocolErrorCode.TooLarge);
    expect(codeOf(() => muxToShimDecoder().push(header(MuxMessage.Accept, 1)))).toBe(ShimProtocolErrorCode.TooLarge);
    expect(codeOf(() => encodeDispatchMessage(MuxMessage.Exit, Buffer.alloc(5)))).toBe(ShimProtocolErrorCode.TooLarge);
  });

  it('refuses unknown types and the other direction’s types', () => {
    expect(codeOf(() => shimToMuxDecoder().push(header(7, 0)))).toBe(ShimProtocolErrorCode.UnknownType);
    expect(codeOf(() => shimToMuxDecoder().push(header(MuxMessage.Exit, 4)))).toBe(ShimProtocolErrorCode.UnknownType);
    expect(codeOf(() => muxToShimDecoder().push(header(ShimMessage.Hello, 0)))).toBe(ShimProtocolErrorCode.UnknownType);
    expect(codeOf(() => new DispatchDecoder([]).push(header(1, 0)))).toBe(ShimProtocolErrorCode.UnknownType);
  });

  it('an end inside a message is an error, between messages is not', () => {
    const decoder = shimToMuxDecoder();
    decoder.push(encodeDispatchMessage(ShimMessage.Eof));
    expect(() => decoder.end()).not.toThrow();
    decoder.push(encodeDispatchMessage(ShimMessage.Data, Buffer.from('abc')).subarray(0, 9));
    expect(codeOf(() => decoder.end())).toBe(ShimProtocolErrorCode.Truncated);
    const halfHeader = shimToMuxDecoder();
    halfHeader.push(Buffer.from([2, 0, 0]));
    expect(codeOf(() => halfHeader.end())).toBe(ShimProtocolErrorCode.Truncated);
  });

  it('HELLO round-trips the pid and the CBACTIONS_ variables, values with = and spaces included', () => {
    const env = { CBACTIONS_SLOT: 'default-0', CBACTIONS_CONFIG: '/etc/cb actions/a=b.yaml', CBACTIONS_EMPTY: '' };
    const message = shimToMuxDecoder().push(encodeHello({ pid: 1234, env }))[0];
    expect(message?.type).toBe(ShimMessage.Hello);
    expect(decodeHello(message?.body ?? Buffer.alloc(0))).toEqual({ pid: 1234, env });
  });

  it('HELLO takes every name the shim forwards: any variable whose name starts with CBACTIONS_', () => {
    // The shim (worker-shim.c) forwards names like these too; refusing them refused every job.
    const env = { CBACTIONS_SLOT: 'default-0', CBACTIONS_foo: '1', 'CBACTIONS_A-B': 'x' };
    expect(decodeHello(Buffer.from('cbactions-shim 1\0pid=7\0env:CBACTIONS_SLOT=default-0\0env:CBACTIONS_foo=1\0env:CBACTIONS_A-B=x\0'))).toEqual({ pid: 7, env });
  });

  it('refuses a HELLO of another version, without a pid, with foreign entries or variables', () => {
    const hello = (text: string) => codeOf(() => decodeHello(Buffer.from(text)));
    expect(hello('cbactions-shim 2\0pid=1\0')).toBe(ShimProtocolErrorCode.BadBody);
    expect(hello('cbactions-shim 1\0')).toBe(ShimProtocolErrorCode.BadBody);
    expect(hello('cbactions-shim 1\0pid=x\0')).toBe(ShimProtocolErrorCode.BadBody);
    expect(hello('cbactions-shim 1\0pid=1\0env:PATH=/bin\0')).toBe(ShimProtocolErrorCode.BadBody);
    expect(hello('cbactions-shim 1\0pid=1\0what\0')).toBe(ShimProtocolErrorCode.BadBody);
    expect(hello('cbactions-shim 1\0pid=1')).toBe(ShimProtocolErrorCode.BadBody);
  });

  it('a LINE is one line of at most 4 KiB of valid UTF-8', () => {
    const long = encodeLine(`cbactions: ${'ü'.repeat(5000)}\nsecond`);
    const [message] = muxToShimDecoder().push(long);
    expect(message?.body.length).toBeLessThanOrEqual(MAX_SHIM_BODY[MuxMessage.Line]);
    const text = message?.body.toString('utf8') ?? '';
    expect(text).not.toContain('\uFFFD');
    expect(Buffer.from(text, 'utf8').equals(message?.body ?? Buffer.alloc(0))).toBe(true);
    const [short] = muxToShimDecoder().push(encodeLine('a\r\nb'));
    expect(short?.body.toString('utf8')).toBe('a b');
  });

  it('uint32 bodies must be exactly 4 bytes', () => {
    expect(decodeUint32({ type: ShimMessage.Signal, body: Buffer.from([15, 0, 0, 0]) })).toBe(15);
    expect(codeOf(() => decodeUint32({ type: ShimMessage.Signal, body: Buffer.from([15]) }))).toBe(ShimProtocolErrorCode.BadBody);
  });
});
