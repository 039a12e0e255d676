#!/usr/bin/env node
// The original prototype's strategy, for comparison only (not product code): read the job
// from the listener pipe, put it inline in an environment variable of the build, and poll
// BatchGetBuilds for this one build every 10 s until it completes.
import { BatchGetBuildsCommand, CodeBuildClient, StartBuildCommand } from '@aws-sdk/client-codebuild';
import { Socket } from 'node:net';

const POLL_MS = Number(process.env.BENCH_BASELINE_POLL_MS ?? 10_000);

async function readJob(fd) {
  const socket = new Socket({ fd, readable: true, writable: false });
  let buffered = Buffer.alloc(0);
  for await (const chunk of socket) {
    buffered = Buffer.concat([buffered, chunk]);
    if (buffered.length >= 8 && buffered.length >= 8 + buffered.readInt32LE(4)) {
      socket.pause();
      return { socket, body: buffered.subarray(8, 8 + buffered.readInt32LE(4)).toString('utf16le') };
    }
  }
  throw new Error('pipe closed before the job');
}

const { socket, body } = await readJob(Number(process.argv[3]));
const jobId = JSON.parse(body).jobId;
const client = new CodeBuildClient({ maxAttempts: 3 });
const started = await client.send(
  new StartBuildCommand({
    projectName: process.env.BENCH_PROJECT ?? 'bench',
    environmentVariablesOverride: [
      { name: 'BASELINE_JOB', value: Buffer.from(body).toString('base64').slice(0, 4000), type: 'PLAINTEXT' },
      { name: 'CBACTIONS_JOB_ID', value: String(jobId), type: 'PLAINTEXT' },
    ],
  }),
);
const id = started.build.id;
for (;;) {
  await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  let build;
  try {
    build = (await client.send(new BatchGetBuildsCommand({ ids: [id] }))).builds?.[0];
  } catch {
    continue;
  }
  if (build?.buildComplete) {
    const code = build.exportedEnvironmentVariables?.find((v) => v.name === 'CBACTIONS_EXIT_CODE')?.value;
    socket.destroy();
    client.destroy();
    process.exit(code ? Number(code) : 1);
  }
}
