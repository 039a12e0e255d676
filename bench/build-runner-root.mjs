#!/usr/bin/env node
// What a runner root of its own costs each local build: hard-linking a runner-sized
// installation (BENCH_FILES files in BENCH_DIRS directories; an actions/runner 2.33x
// unpacks to a few thousand) at PROVISIONING and removing it at FINALIZING.
// Run after `npm run build`: node bench/build-runner-root.mjs
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildHardLinkRoot } from '../dist/src/preload/hardlink-root.js';

const FILES = Number(process.env.BENCH_FILES ?? 5000);
const DIRS = Number(process.env.BENCH_DIRS ?? 250);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);

const base = mkdtempSync(join(tmpdir(), 'bench-runner-root-'));
const installation = join(base, 'installation');
for (let d = 0; d < DIRS; d++) mkdirSync(join(installation, d % 2 ? 'bin' : 'externals', `dir-${d}`), { recursive: true });
for (let f = 0; f < FILES; f++) writeFileSync(join(installation, f % 2 ? 'bin' : 'externals', `dir-${f % DIRS}`, `file-${f}`), 'x'.repeat(64));

const make = [];
const remove = [];
for (let round = 0; round < ROUNDS; round++) {
  const root = join(base, `build-${round}`, 'runner');
  let started = process.hrtime.bigint();
  await buildHardLinkRoot({ sharedRoot: installation, slotRoot: root });
  make.push(Number(process.hrtime.bigint() - started) / 1e6);
  started = process.hrtime.bigint();
  await rm(root, { recursive: true, force: true });
  remove.push(Number(process.hrtime.bigint() - started) / 1e6);
}
rmSync(base, { recursive: true, force: true });
const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)].toFixed(0);
process.stdout.write(`${JSON.stringify({ files: FILES, directories: DIRS, rounds: ROUNDS, makeMsMedian: Number(median(make)), removeMsMedian: Number(median(remove)) })}\n`);
