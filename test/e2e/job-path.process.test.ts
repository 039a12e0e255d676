import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { filesUnder, fileContains, JOB_PATH_DISPATCHES, leakForms, processesWithEnvironment, startJobPathRig, type JobPathRig } from '../support/job-path.js';
import { jobMessage } from '../support/runner-root.js';

/**
 * The spine, as processes: fake Runner.Listener → the installed native Runner.Worker shim →
 * the mux's in-process dispatch (or, without its socket, the fallback `cbactions worker`,
 * the built binary) → local build service (the AWS SDK's CodeBuild path) → the
 * repository's buildspec → `cbactions entrypoint` → fake Runner.Worker → exit code back.
 */
describe.each(JOB_PATH_DISPATCHES)('core job path, end to end on one machine (dispatch: %s)', (dispatch) => {
  let rig: JobPathRig;

  beforeAll(async () => {
    rig = await startJobPathRig({ dispatch });
  });
  afterAll(async () => {
    await rig?.stop();
  });

  function evidence(jobId: string): Record<string, unknown> {
    return JSON.parse(readFileSync(join(rig.buildRunnerRoot, '_diag', `fake-worker-${jobId}.json`), 'utf8')) as Record<string, unknown>;
  }

  async function buildOfJob(jobId: string) {
    const builds = await rig.service.builds();
    const build = builds.find((record) => JSON.stringify(record.request).includes(`"value":"${jobId}"`));
    if (!build) throw new Error(`no build for job ${jobId}`);
    return build;
  }

  it('returns 100 for a job that succeeds, and nothing is left on stderr', async () => {
    const result = await rig.runJob({ jobBody: jobMessage({ jobId: 'job-ok', action: 'succeed' }) });
    expect(result).toMatchObject({ exitCode: 100, result: 'Succeeded', crashReport: null, killedByListener: null });
    expect(result.keptOutput).toEqual([]);
    const build = await buildOfJob('job-ok');
    expect(build.buildStatus).toBe('SUCCEEDED');
    expect(build.exportedEnvironmentVariables).toContainEqual({ name: 'CBACTIONS_EXIT_CODE', value: '100' });
    expect(evidence('job-ok')).toMatchObject({ argv: ['spawnclient', '3', '4'], runnerFilePresent: true, messages: [1] });
    // The job went the way this block names: the mux's dispatch ran it, or the fallback worker did.
    if (dispatch === 'in-process') {
      expect(rig.inProcess?.events).toContainEqual(expect.objectContaining({ kind: 'done', jobId: 'job-ok', exitCode: 100, slot: 'default-0' }));
      expect(existsSync(rig.workerLog)).toBe(false);
    } else {
      expect(rig.inProcess).toBeUndefined();
      expect(readFileSync(rig.workerLog, 'utf8')).toContain('"event":"worker.finished"');
    }
  });

  it('returns 102 for a job that fails', async () => {
    const result = await rig.runJob({ jobBody: jobMessage({ jobId: 'job-fail', action: 'fail' }) });
    expect(result).toMatchObject({ exitCode: 102, result: 'Failed', crashReport: null });
  });

  it('relays a cancel into the build and returns 103; the build ends and no process of it is left', async () => {
    let buildId: string | undefined;
    const result = await rig.runJob({
      jobBody: jobMessage({ jobId: 'job-cancel', action: 'wait-for-cancel' }),
      followUp: {
        type: 2,
        afterMs: 200,
        // Cancel once the job really runs in its build (the fake worker has said so in the build log).
        when: async () => {
          const build = await buildOfJob('job-cancel').catch(() => undefined);
          if (!build || build.currentPhase !== 'BUILD') return false;
          buildId = build.id;
          return (await rig.service.log(build.id)).includes('running job job-cancel');
        },
      },
    });
    expect(result).toMatchObject({ exitCode: 103, followUpSent: true, killedByListener: null });
    expect(evidence('job-cancel').messages).toEqual([1, 2]);
    const build = await rig.service.waitForBuild(String(buildId));
    expect(build.buildStatus).toBe('SUCCEEDED');
    expect(processesWithEnvironment(`CODEBUILD_BUILD_ID=${buildId}`)).toEqual([]);
  });

  it('delivers a 5 MB job with non-ASCII and astral-plane characters byte for byte', async () => {
    const unit = 'ü€ 𝄞😀 漢字 ';
    const padding = unit.repeat(Math.ceil((5 * 1024 * 1024) / Buffer.byteLength(unit, 'utf16le')));
    const job = jobMessage({ jobId: 'job-big', padding });
    const body = Buffer.from(job, 'utf16le');
    expect(body.length).toBeGreaterThan(5 * 1024 * 1024);
    const result = await rig.runJob({ jobBody: job });
    expect(result.exitCode).toBe(100);
    const seen = evidence('job-big');
    expect(seen.bodyBytes).toBe(body.length);
    expect(seen.bodySha256).toBe(createHash('sha256').update(body).digest('hex'));
  });

  it('keeps a secret from the job out of logs, overrides, records and files, and the payload is gone', async () => {
    const secret = `cbx-marker-${randomBytes(12).toString('hex')}`;
    const result = await rig.runJob({ jobBody: jobMessage({ jobId: 'job-secret', action: 'succeed', secret }) });
    expect(result.exitCode).toBe(100);
    const forms = leakForms(secret);
    const build = await buildOfJob('job-secret');
    const overrides = JSON.stringify((build.request as { environmentVariablesOverride?: unknown }).environmentVariablesOverride ?? []);
    expect(overrides).not.toContain(secret);
    expect(JSON.stringify(await rig.service.builds())).not.toContain(secret);
    expect(await rig.service.log(build.id)).not.toContain(secret);
    expect(rig.service.stderr()).not.toContain(secret);
    expect(result.keptOutput.join('\n')).not.toContain(secret);
    // The job's log was written (and scanned below): the worker's own, or the mux's.
    expect(existsSync(rig.inProcess?.logPath ?? rig.workerLog)).toBe(true);
    const leaking = filesUnder(rig.base).filter((path) => fileContains(path, forms));
    expect(leaking).toEqual([]);
    expect(readdirSync(rig.payloadDir).filter((name) => name.endsWith('.sealed'))).toEqual([]);
  });

  it('retries throttled CodeBuild calls and the job still succeeds', async () => {
    await rig.service.resetCalls();
    await rig.service.setFaults({ throttle: { count: 3 } });
    const result = await rig.runJob({ jobBody: jobMessage({ jobId: 'job-throttled' }) });
    expect(result.exitCode).toBe(100);
    const calls = (await rig.service.calls()) as unknown as { throttled?: Record<string, number> } & Record<string, unknown>;
    expect(JSON.stringify(calls)).toMatch(/throttled/i);
    expect((await rig.service.faults()).throttle?.remaining ?? 0).toBe(0);
  });

  it('fails with one clear line when CodeBuild refuses the build for quota', async () => {
    await rig.service.setFaults({ accountLimit: { count: 1, limit: 1 } });
    const result = await rig.runJob({ jobBody: jobMessage({ jobId: 'job-quota' }) });
    expect(result.exitCode).toBe(1);
    expect(result.crashReport).toHaveLength(1);
    expect(result.crashReport?.[0]).toMatch(/^cbactions: CodeBuild refused to start a build: the account's build quota is reached \(AccountLimitExceededException: Cannot have more than 1 active builds for the account\).*\(CODEBUILD_QUOTA\)$/);
  });

  it('fails with one clear line naming the phase when the build fails in INSTALL', async () => {
    await rig.service.setFaults({ buildFailures: [{ phase: 'INSTALL', statusCode: 'COMMAND_EXECUTION_ERROR', message: 'Error while executing command: yum install -y foo. Reason: exit status 1' }] });
    const result = await rig.runJob({ jobBody: jobMessage({ jobId: 'job-install' }) });
    expect(result.exitCode).toBe(1);
    expect(result.crashReport).toHaveLength(1);
    const line = String(result.crashReport?.[0]);
    expect(line).toContain('INSTALL');
    expect(line).toContain('yum install -y foo');
    expect(line).toMatch(/\[build cbactions:[0-9a-f-]+ https:\/\/us-east-1\.console\.aws\.amazon\.com\/codesuite\/codebuild\/000000000000\/projects\/cbactions\/build\/cbactions%3A/);
    expect(readdirSync(rig.payloadDir).filter((name) => name.endsWith('.sealed'))).toEqual([]);
  });

  it('a cancel right after the job, while CodeBuild throttles StartBuild, starts no build: the worker stops retrying and exits 103', { timeout: 120_000 }, async () => {
    await rig.service.resetCalls();
    // Every StartBuild the worker may make is throttled: no build can start whenever the cancel
    // is seen, and only the cancel can end the job before the worker's retries run out.
    await rig.service.setFaults({ throttle: { count: 10, operations: ['StartBuild'] } });
    try {
      const result = await rig.runJob({ jobBody: jobMessage({ jobId: 'job-cancel-early' }), followUp: { type: 2, afterMs: 0 } });
      expect(result).toMatchObject({ exitCode: 103, followUpSent: true, killedByListener: null });
      expect(result.keptOutput).toEqual([expect.stringMatching(/^cbactions: the job was cancelled before its build was started; no build was started \(JOB_CANCELLED_BEFORE_BUILD\)$/)]);
      const startBuilds = (await rig.service.calls()).operations.StartBuild?.calls ?? 0;
      expect(startBuilds).toBeLessThan(10);
      expect((await rig.service.builds()).filter((build) => JSON.stringify(build.request).includes('"value":"job-cancel-early"'))).toEqual([]);
    } finally {
      await rig.service.clearFaults();
    }
  });
});
