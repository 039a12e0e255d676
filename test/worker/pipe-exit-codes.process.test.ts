/**
 * What `cbactions worker` exits with when the listener's pipe input is bad, as the README's
 * exit-code table states it: 3 for malformed frames, 1 for a well-framed job message it
 * cannot read (like any job that did not run), each with one reason line on stderr.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import { beforeAll, describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/protocol/exit-codes.js';
import { createLocalKeyFile } from '../../src/seal/local-key-service.js';
import { exitAfterOutput } from '../support/child-exit.js';
import { CBACTIONS_BIN } from '../support/runner-root.js';

// Written here, not with src/protocol, so a codec bug cannot hide behind its own encoder.
function frame(type: number, body: Buffer, announcedLength = body.length): Buffer {
  const header = Buffer.alloc(8);
  header.writeInt32LE(type, 0);
  header.writeInt32LE(announcedLength, 4);
  return Buffer.concat([header, body]);
}
const utf16 = (text: string) => Buffer.from(text, 'utf16le');

let dir: string;
let configPath: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'worker-pipe-'));
  mkdirSync(join(dir, 'payloads'), { mode: 0o700 });
  await createLocalKeyFile(join(dir, 'payload.key'));
  configPath = join(dir, 'cbactions.yml');
  writeFileSync(
    configPath,
    [
      'github: { scope: { repository: octo/repo }, auth: { token: { env: GITHUB_TOKEN } } }',
      'codebuild: { projectName: cbactions, region: us-east-1 }',
      `payloads: { key: { local: { file: ${join(dir, 'payload.key')} } }, store: { local: { dir: ${join(dir, 'payloads')} } } }`,
      'pools: [ { name: default, labels: [cbactions] } ]',
      '',
    ].join('\n'),
  );
});

async function workerGiven(input: Buffer, options: { close: boolean }): Promise<{ code: number | null; stderrLines: string[] }> {
  const child = spawn(process.execPath, [CBACTIONS_BIN, 'worker', 'spawnclient', '3', '4'], {
    env: { ...process.env, CBACTIONS_CONFIG: configPath, CBACTIONS_POOL: 'default', CBACTIONS_WORKER_LOG: join(dir, 'worker.log'), CBACTIONS_RUNNER_ROOT: dir },
    stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const toWorker = child.stdio[3] as Writable;
  toWorker.on('error', () => {});
  if (options.close) toWorker.end(input);
  else toWorker.write(input);
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const { code } = await exitAfterOutput(child);
  clearTimeout(timer);
  return { code, stderrLines: stderr.trim().split('\n') };
}

describe('cbactions worker: exit codes for bad pipe input', () => {
  it('are the numbers the README states', () => {
    expect([ExitCode.InfrastructureFailure, ExitCode.UsageOrConfig, ExitCode.ProtocolError]).toEqual([1, 2, 3]);
  });

  const malformedFrames: [string, Buffer, boolean, string][] = [
    ['a frame announcing more than 50 MB', frame(1, Buffer.alloc(0), 60_000_000), false, 'PIPE_FRAME_TOO_LARGE'],
    ['an unknown message type', frame(9, Buffer.alloc(0)), false, 'PIPE_UNKNOWN_MESSAGE_TYPE'],
    ['an odd body length', frame(1, Buffer.alloc(3)), false, 'PIPE_BAD_LENGTH'],
    ['a frame cut short by EOF', frame(1, Buffer.alloc(4), 10), true, 'PIPE_TRUNCATED_FRAME'],
    ['a cancel before any job', frame(2, Buffer.alloc(0)), false, 'PIPE_UNEXPECTED_MESSAGE'],
    ['EOF before any job', Buffer.alloc(0), true, 'PIPE_NO_JOB'],
  ];
  for (const [name, input, close, code] of malformedFrames) {
    it(`exits ${ExitCode.ProtocolError} for ${name} (${code})`, async () => {
      const result = await workerGiven(input, { close });
      expect(result.code).toBe(ExitCode.ProtocolError);
      expect(result.stderrLines).toEqual([expect.stringMatching(new RegExp(`^cbactions: the job could not be started: .*\\(${code}\\)$`))]);
    });
  }

  const unreadableJobs: [string, Buffer][] = [
    ['a job body that is not JSON', frame(1, utf16('not json'))],
    ['a job without a usable jobId', frame(1, utf16('{"jobId": "has space"}'))],
  ];
  for (const [name, input] of unreadableJobs) {
    it(`exits ${ExitCode.InfrastructureFailure} for ${name} (JOB_MESSAGE_INVALID)`, async () => {
      const result = await workerGiven(input, { close: false });
      expect(result.code).toBe(ExitCode.InfrastructureFailure);
      expect(result.stderrLines).toEqual([expect.stringMatching(/^cbactions: the job could not be started: the job message .*\(JOB_MESSAGE_INVALID\)$/)]);
    });
  }
});
