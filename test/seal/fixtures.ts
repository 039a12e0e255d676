import { randomBytes } from 'node:crypto';
import type { JobPayload, PayloadBinding } from '../../src/seal/types.js';

export const BUILD_A = 'cbactions-pool:0b6c9c4e-2f7d-4c11-9a8e-5d1f3a7b9c21';
export const BUILD_B = 'cbactions-pool:7e3a1d20-8c45-4b6f-a1d2-c3e4f5a6b7c8';
export const ROLE_ID = 'AROAEXAMPLEROLEID1234';

/** A marker that must never show up in an error message or log. */
export const SECRET_MARKER = 'ghs_SECRETTOKEN0123456789';

/**
 * A job message as the runner sends it: UTF-16LE, here about `bytes` long, with
 * non-ASCII, astral-plane characters (surrogate pairs) and a lone surrogate that no
 * UTF-8 round trip could preserve.
 */
export function jobMessageBytes(bytes: number): Buffer {
  const head = Buffer.from(`{"token":"${SECRET_MARKER}","text":"Grüße, 東京 🚀𝄞 "`, 'utf16le');
  const lone = Buffer.from([0x00, 0xd8, 0x41, 0x00, 0x1e, 0xdd]); // U+D800 (lone high), 'A', U+DD1E (lone low)
  const filler = randomBytes(Math.max(0, bytes - head.length - lone.length - 2) & ~1);
  return Buffer.concat([head, lone, filler, Buffer.from('}', 'utf16le')]);
}

export function makePayload(buildId: string, messageBytes = 4_096): JobPayload {
  return {
    jobMessage: jobMessageBytes(messageBytes),
    runnerFile: Buffer.from(JSON.stringify({ agentId: 42, agentName: 'cbactions-host-pool-1-7', serverUrl: 'https://pipelines.actions.githubusercontent.com/x' })),
    credentialsFile: Buffer.from(JSON.stringify({ scheme: 'OAuth', data: { clientId: 'c0ffee' } })),
    runnerVersion: '2.330.0',
    ids: { buildId, jobId: 'job-1', requestId: '1234', runnerName: 'cbactions-host-pool-1-7', pool: 'pool' },
  };
}

export function bindingFor(buildId: string, roleId?: string): PayloadBinding {
  if (roleId === undefined) return { buildId };
  const uuid = buildId.slice(buildId.lastIndexOf(':') + 1);
  return { buildId, userId: `${roleId}:AWSCodeBuild-${uuid}` };
}

/** Offsets inside a version-1 envelope, computed from its own header length. */
export function layout(sealed: Buffer): { headerStart: number; headerEnd: number; aadEnd: number; tagStart: number } {
  const headerLength = sealed.readUInt32BE(5);
  const headerEnd = 9 + headerLength;
  return { headerStart: 9, headerEnd, aadEnd: headerEnd + 16, tagStart: sealed.length - 16 };
}

export function flipped(bytes: Buffer, offset: number, mask = 0x01): Buffer {
  const copy = Buffer.from(bytes);
  copy[offset] = (copy[offset] ?? 0) ^ mask;
  return copy;
}

/** Runs `fn`, expecting it to reject, and returns the error for inspection. */
export async function rejection(fn: () => Promise<unknown>): Promise<unknown> {
  try {
    await fn();
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection, but the call succeeded');
}
