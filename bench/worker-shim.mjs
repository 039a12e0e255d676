#!/usr/bin/env node
// The native Runner.Worker shim (dist/preload/worker-shim, `npm run build` first): how long
// from spawn to its HELLO at the mux's socket, and how much memory it holds while it relays
// a job. A fake mux peer accepts at once and answers EXIT after EOF.
//   node bench/worker-shim.mjs [runs=50] [jobMiB=5]
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const SHIM = resolve(import.meta.dirname, '..', 'dist', 'preload', 'worker-shim');
const runs = Number(process.argv[2] ?? 50);
const jobBytes = Number(process.argv[3] ?? 5) * 1024 * 1024;
const dir = mkdtempSync(join(tmpdir(), 'bench-shim-'));
const socketPath = join(dir, 'dispatch.sock');

const header = (type, length) => {
  const buffer = Buffer.alloc(8);
  buffer.writeUInt32LE(type, 0);
  buffer.writeUInt32LE(length, 4);
  return buffer;
};
const status = (pid, field) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);

let onConnection;
const server = createServer((socket) => onConnection(socket));
await new Promise((done) => server.listen(socketPath, done));

/** One job through the shim; returns ms to HELLO and the memory samples taken while relaying. */
function once(job) {
  return new Promise((done, fail) => {
    const started = process.hrtime.bigint();
    const child = spawn(SHIM, ['spawnclient', '3', '4'], { env: { CBACTIONS_DISPATCH_SOCKET: socketPath }, stdio: ['ignore', 'ignore', 'inherit', 'pipe', 'pipe'] });
    const result = { helloMs: 0, rssKb: [], anonKb: [], hwmKb: 0 };
    child.on('error', fail);
    child.on('exit', (code) => (code === 100 ? done(result) : fail(new Error(`shim exited ${code}`))));
    onConnection = (socket) => {
      let buffered = Buffer.alloc(0);
      let relayed = 0;
      socket.on('data', (chunk) => {
        buffered = Buffer.concat([buffered, chunk]);
        while (buffered.length >= 8 && buffered.length >= 8 + buffered.readUInt32LE(4)) {
          const type = buffered.readUInt32LE(0);
          const length = buffered.readUInt32LE(4);
          buffered = buffered.subarray(8 + length);
          if (type === 1) {
            result.helloMs = Number(process.hrtime.bigint() - started) / 1e6;
            socket.write(header(101, 0));
            child.stdio[3].end(job);
          } else if (type === 2) {
            relayed += length;
            if (result.rssKb.length < 1000 && relayed > jobBytes / 4) {
              result.rssKb.push(status(child.pid, 'VmRSS'));
              result.anonKb.push(status(child.pid, 'RssAnon'));
            }
          } else if (type === 3) {
            result.hwmKb = status(child.pid, 'VmHWM');
            const exit = Buffer.alloc(4);
            exit.writeUInt32LE(100, 0);
            socket.end(Buffer.concat([header(103, 4), exit]));
          }
        }
      });
    };
  });
}

const job = Buffer.alloc(jobBytes, 'x');
const hello = [];
let rss = [];
let anon = [];
let hwm = 0;
for (let i = 0; i < runs; i++) {
  const result = await once(job);
  hello.push(result.helloMs);
  rss = rss.concat(result.rssKb);
  anon = anon.concat(result.anonKb);
  hwm = Math.max(hwm, result.hwmKb);
}
server.close();
rmSync(dir, { recursive: true, force: true });
const sorted = (values) => [...values].sort((a, b) => a - b);
const pick = (values, q) => sorted(values)[Math.min(values.length - 1, Math.floor(q * values.length))];
console.log(
  JSON.stringify(
    {
      runs,
      jobBytes,
      helloMs: { p50: pick(hello, 0.5).toFixed(2), p95: pick(hello, 0.95).toFixed(2), max: pick(hello, 1).toFixed(2) },
      relayingVmRssKb: { samples: rss.length, p50: pick(rss, 0.5), max: pick(rss, 1) },
      // Of that, the shim's own memory (the rest is libc's shared, file-backed pages).
      relayingRssAnonKb: { p50: pick(anon, 0.5), max: pick(anon, 1) },
      peakVmHwmKb: hwm,
    },
    null,
    2,
  ),
);
