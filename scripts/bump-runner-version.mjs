#!/usr/bin/env node
// Moves the images to another actions/runner release: writes docker/runner-version and adds
// the release's SHA-256 checksums to docker/runner-checksums.txt (the Dockerfiles refuse a
// tarball without one).
//
//   node scripts/bump-runner-version.mjs [VERSION]      (default: the latest release)
//
// The checksums come from the release notes' "SHA-256 Checksums" section
// (`<!-- BEGIN SHA linux-x64 -->…<!-- END SHA linux-x64 -->`) and, when GitHub lists them,
// must equal the assets' own `digest` fields. GITHUB_API_URL (default https://api.github.com)
// and GITHUB_TOKEN are honoured; --docker-dir DIR writes somewhere other than docker/.
import { readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ARCHITECTURES = ['x64', 'arm64'];
/** Versions kept in the checksum file: a rolling deploy may still name the previous one. */
export const KEPT_VERSIONS = 5;

function fail(message) {
  process.stderr.write(`bump-runner-version: ${message}\n`);
  process.exit(1);
}

function parseArgs(argv) {
  const args = { version: undefined, dockerDir: join(dirname(fileURLToPath(import.meta.url)), '..', 'docker') };
  for (let index = 0; index < argv.length; index += 1) {
    const arg = argv[index];
    if (arg === '--docker-dir') {
      const value = argv[index + 1];
      if (value === undefined) fail('--docker-dir needs a directory');
      args.dockerDir = resolve(value);
      index += 1;
    } else if (/^v?\d+\.\d+\.\d+$/.test(arg) && args.version === undefined) {
      args.version = arg.replace(/^v/, '');
    } else {
      fail(`unexpected argument "${arg}"; usage: bump-runner-version.mjs [VERSION] [--docker-dir DIR]`);
    }
  }
  return args;
}

/** `{x64: sha, arm64: sha}` from a release body; throws naming what is missing. */
export function checksumsFromReleaseNotes(body, version) {
  const sums = {};
  for (const arch of ARCHITECTURES) {
    const marker = new RegExp(`<!-- BEGIN SHA linux-${arch} -->\\s*([0-9a-fA-F]{64})\\s*<!-- END SHA linux-${arch} -->`);
    const match = marker.exec(body ?? '');
    if (!match) throw new Error(`the v${version} release notes have no SHA-256 for linux-${arch}`);
    sums[arch] = match[1].toLowerCase();
  }
  return sums;
}

export function tarballName(arch, version) {
  return `actions-runner-linux-${arch}-${version}.tar.gz`;
}

function compareVersions(a, b) {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let index = 0; index < 3; index += 1) if (pa[index] !== pb[index]) return pa[index] - pb[index];
  return 0;
}

/** The checksum file with `version`'s lines replaced, newest versions first, comments kept. */
export function updatedChecksumFile(text, version, sums) {
  const comments = [];
  const entries = new Map();
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    if (line.trimStart().startsWith('#')) {
      if (!/^# v\d+\.\d+\.\d+:/.test(line)) comments.push(line);
      continue;
    }
    const match = /^([0-9a-fA-F]{64})\s+\*?actions-runner-linux-([a-z0-9]+)-(\d+\.\d+\.\d+)\.tar\.gz$/.exec(line.trim());
    if (!match) throw new Error(`unexpected line in the checksum file: "${line}"`);
    const [, sum, arch, lineVersion] = match;
    if (lineVersion === version) continue;
    if (!entries.has(lineVersion)) entries.set(lineVersion, {});
    entries.get(lineVersion)[arch] = sum.toLowerCase();
  }
  entries.set(version, sums);
  const versions = [...entries.keys()].sort((a, b) => compareVersions(b, a)).slice(0, KEPT_VERSIONS);
  const lines = [...comments];
  for (const each of versions) {
    lines.push(`# v${each}: https://github.com/actions/runner/releases/tag/v${each}`);
    for (const [arch, sum] of Object.entries(entries.get(each))) lines.push(`${sum}  ${tarballName(arch, each)}`);
  }
  return `${lines.join('\n')}\n`;
}

async function fetchRelease(api, version) {
  const url = version === undefined ? `${api}/repos/actions/runner/releases/latest` : `${api}/repos/actions/runner/releases/tags/v${version}`;
  const headers = { accept: 'application/vnd.github+json', 'user-agent': 'cbactions-bump-runner-version' };
  if (process.env.GITHUB_TOKEN) headers.authorization = `Bearer ${process.env.GITHUB_TOKEN}`;
  const response = await fetch(url, { headers });
  if (!response.ok) throw new Error(`GET ${url} answered ${response.status} ${response.statusText}`);
  return response.json();
}

async function writeAtomically(path, text) {
  await writeFile(`${path}.tmp`, text);
  await rename(`${path}.tmp`, path);
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const api = (process.env.GITHUB_API_URL ?? 'https://api.github.com').replace(/\/+$/, '');
  const release = await fetchRelease(api, args.version);
  const version = String(release.tag_name ?? '').replace(/^v/, '');
  if (!/^\d+\.\d+\.\d+$/.test(version)) throw new Error(`the release's tag "${release.tag_name}" is not a version`);
  if (args.version !== undefined && version !== args.version) throw new Error(`asked for ${args.version}, GitHub answered with ${version}`);
  const sums = checksumsFromReleaseNotes(release.body, version);
  for (const arch of ARCHITECTURES) {
    const asset = (release.assets ?? []).find((candidate) => candidate.name === tarballName(arch, version));
    if (asset === undefined) throw new Error(`the v${version} release has no asset ${tarballName(arch, version)}`);
    const digest = typeof asset.digest === 'string' ? asset.digest.replace(/^sha256:/, '').toLowerCase() : undefined;
    if (digest !== undefined && digest !== sums[arch]) {
      throw new Error(`${tarballName(arch, version)}: the release notes say ${sums[arch]}, the asset's digest is ${digest}`);
    }
  }
  const checksumPath = join(args.dockerDir, 'runner-checksums.txt');
  const versionPath = join(args.dockerDir, 'runner-version');
  const previous = (await readFile(versionPath, 'utf8').catch(() => '')).trim();
  await writeAtomically(checksumPath, updatedChecksumFile(await readFile(checksumPath, 'utf8'), version, sums));
  await writeAtomically(versionPath, `${version}\n`);
  process.stdout.write(`actions/runner ${previous || '(none)'} -> ${version}\n`);
  for (const arch of ARCHITECTURES) process.stdout.write(`  ${sums[arch]}  ${tarballName(arch, version)}\n`);
  process.stdout.write('rebuild the images (cbactions deploy) to roll it out\n');
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((error) => fail(error.message));
}
