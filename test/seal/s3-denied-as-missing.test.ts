import type { S3Client } from '@aws-sdk/client-s3';
import { describe, expect, it } from 'vitest';
import { S3PayloadStore } from '../../src/seal/s3-payload-store.js';

function denied(): Error {
  return Object.assign(new Error('Access Denied'), { name: 'AccessDenied', $metadata: { httpStatusCode: 403 } });
}

/** S3 without s3:ListBucket: a missing key is a 403, which the build role must read as "not yet". */
function s3ThatDeniesFor(deniedCalls: number): { client: S3Client; calls: string[] } {
  const calls: string[] = [];
  const client = {
    async send(command: { constructor: { name: string } }) {
      const name = command.constructor.name;
      calls.push(name);
      if (name === 'GetObjectCommand' || name === 'HeadObjectCommand') {
        if (calls.filter((call) => call === name).length <= deniedCalls) throw denied();
        return { Body: { transformToByteArray: async () => new Uint8Array([1, 2, 3]) } };
      }
      return {};
    },
  };
  return { client: client as unknown as S3Client, calls };
}

const binding = { buildId: 'p:1b2c', userId: 'AROAEXAMPLE000000001:AWSCodeBuild-1b2c' };

describe('S3 payload store under a least-privilege build role', () => {
  it('keeps waiting through 403s until the payload arrives', async () => {
    const { client, calls } = s3ThatDeniesFor(3);
    const store = new S3PayloadStore({ client, bucket: 'bucket-x', prefix: 'payloads/', pollMs: 5 });
    expect([...(await store.take(binding, { waitMs: 2000 }))]).toEqual([1, 2, 3]);
    expect(calls.filter((call) => call === 'GetObjectCommand')).toHaveLength(4);
    expect(calls).toContain('DeleteObjectCommand');
  });

  it('reports access denied when the 403s last the whole wait', async () => {
    const { client } = s3ThatDeniesFor(1_000_000);
    const store = new S3PayloadStore({ client, bucket: 'bucket-x', prefix: 'payloads/', pollMs: 5 });
    await expect(store.take(binding, { waitMs: 50 })).rejects.toMatchObject({ code: 'S3_ACCESS_DENIED' });
  });

  it('reads a 403 on its own cancel marker as "no cancel"', async () => {
    const { client } = s3ThatDeniesFor(1);
    const store = new S3PayloadStore({ client, bucket: 'bucket-x', prefix: 'payloads/' });
    expect(await store.isCancelRequested(binding)).toBe(false);
    expect(await store.isCancelRequested(binding)).toBe(true);
  });
});
