/**
 * The installed Runner.Worker (the native shim) driven over its pipe as a listener drives
 * it, for the cases a listener cannot be made to produce: malformed frames, an unreadable
 * job, and the listener dying mid-job (its end of the pipe closes). Once with the mux's
 * in-process dispatch, once with the dispatch socket absent (the fallback `cbactions worker`).
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/protocol/exit-codes.js';
import { exitAfterOutput } from '../support/child-exit.js';
import { JOB_PATH_DISPATCHES, processesWithEnvironment, startJobPathRig, type JobPathRig } from '../support/job-path.js';
import { jobMessage } from '../support/runner-root.js';

// Written here, not with src/protocol, so a codec bug cannot hide behind its own encoder.
function frame(type: number, body: Buffer, announcedLength = body.length): Buffer {
  const header = Buffer.alloc(8);
  header.writeInt32LE(type, 0);
  header.writeInt32LE(announcedLength, 4);
  return Buffer.concat([header, body]);
}
const utf16 = (text: string) => Buffer.from(text, 'utf16le');

describe.each(JOB_PATH_DISPATCHES)('Runner.Worker given bad or vanishing pipe input (dispatch: %s)', (dispatch) => {
  let rig: JobPathRig;

  beforeAll(async () => {
    rig = await startJobPathRig({ dispatch });
  });
  afterAll(async () => {
    await rig?.stop();
  });

  function startWorker(): { toWorker: Writable; done: Promise<{ code: number | null; stderrLines: string[] }> } {
    const child = spawn(join(rig.listenerRoot, 'bin', 'Runner.Worker'), ['spawnclient', '3', '4'], {
      cwd: join(rig.listenerRoot, 'bin'),
      env: rig.workerEnv,
      stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const toWorker = child.stdio[3] as Writable;
    toWorker.on('error', () => {});
    const timer = setTimeout(() => child.kill('SIGKILL'), 90_000);
    const done = exitAfterOutput(child).then(({ code }) => {
      clearTimeout(timer);
      // The job went the way this block names: a fallback worker writes its log; in-process, no worker ran.
      expect(existsSync(rig.workerLog)).toBe(dispatch === 'worker');
      return { code, stderrLines: stderr.trim().split('\n').filter(Boolean) };
    });
    return { toWorker, done };
  }

  const malformedFrames: [string, Buffer, boolean, string][] = [
    ['a frame announcing more than 50 MB', frame(1, Buffer.alloc(0), 60_000_000), false, 'PIPE_FRAME_TOO_LARGE'],
    ['an unknown message type', frame(9, Buffer.alloc(0)), false, 'PIPE_UNKNOWN_MESSAGE_TYPE'],
    ['an odd body length', frame(1, Buffer.alloc(3)), false, 'PIPE_BAD_LENGTH'],
    ['a frame cut short by EOF', frame(1, Buffer.alloc(4), 10), true, 'PIPE_TRUNCATED_FRAME'],
    ['a cancel before any job', frame(2, Buffer.alloc(0)), false, 'PIPE_UNEXPECTED_MESSAGE'],
    ['EOF before any job', Buffer.alloc(0), true, 'PIPE_NO_JOB'],
  ];
  for (const [name, input, close, code] of malformedFrames) {
    it(`exits ${ExitCode.ProtocolError} for ${name} (${code}), with its one line`, async () => {
      const worker = startWorker();
      if (close) worker.toWorker.end(input);
      else worker.toWorker.write(input);
      const result = await worker.done;
      expect(result.code).toBe(ExitCode.ProtocolError);
      expect(result.stderrLines).toEqual([expect.stringMatching(new RegExp(`^cbactions: the job could not be started: .*\\(${code}\\)$`))]);
    });
  }

  it('exits 1 for a job that is not JSON (JOB_MESSAGE_INVALID)', async () => {
    const worker = startWorker();
    worker.toWorker.write(frame(1, utf16('not json')));
    const result = await worker.done;
    expect(result.code).toBe(ExitCode.InfrastructureFailure);
    expect(result.stderrLines).toEqual([expect.stringMatching(/^cbactions: the job could not be started: the job message .*\(JOB_MESSAGE_INVALID\)$/)]);
  });

  it('the listener dying mid-job (its pipe closes): the job is cancelled in its build, the build ends, nothing of it is left', { timeout: 120_000 }, async () => {
    const worker = startWorker();
    worker.toWorker.write(frame(1, utf16(jobMessage({ jobId: 'job-listener-dies', action: 'wait-for-cancel' }))));
    let buildId: string | undefined;
    await expect
      .poll(
        async () => {
          const build = (await rig.service.builds()).find((record) => JSON.stringify(record.request).includes('"value":"job-listener-dies"'));
          if (!build || build.currentPhase !== 'BUILD') return false;
          buildId = build.id;
          return (await rig.service.log(build.id)).includes('running job job-listener-dies');
        },
        { timeout: 60_000, interval: 200 },
      )
      .toBe(true);
    worker.toWorker.end();
    const result = await worker.done;
    // Nobody reads the code of a dead listener's worker; 103 keeps the record truthful.
    expect(result.code).toBe(103);
    const build = await rig.service.waitForBuild(String(buildId), { timeoutMs: 30_000 });
    expect(['SUCCEEDED', 'STOPPED']).toContain(build.buildStatus);
    expect(processesWithEnvironment(`CODEBUILD_BUILD_ID=${buildId}`)).toEqual([]);
  });
});
