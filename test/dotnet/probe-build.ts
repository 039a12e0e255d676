/**
 * Builds the .NET probe (test/dotnet/probe) with the machine's SDK, once per source
 * change: the output is cached under the OS temp dir, keyed by a hash of the probe's
 * sources and the SDK version, and built in a staging dir that is renamed into place, so
 * concurrent runs never see half a build. NuGet restores from the machine's configured
 * source (no host is named here).
 *
 * Two builds: net8.0 published self-contained for linux-x64 (the runtime the runner
 * ships, with its own libSystem.Native.so from the runtime pack) and net10.0
 * framework-dependent (the SDK's own shared runtime).
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const PROBE_SOURCE_DIR = resolve(import.meta.dirname, 'probe');
const PROJECT = join(PROBE_SOURCE_DIR, 'FileProbe.csproj');
/** The apphost's file name (AssemblyName in the project). */
export const PROBE_NAME = 'FileProbe';

export interface ProbeBuild {
  /** Self-contained .NET 8 publish dir (apphost, FileProbe.dll, the runtime). */
  net8: string;
  /** Framework-dependent .NET 10 publish dir (apphost + FileProbe.dll). */
  net10: string;
  /** Seconds the restore and publish took (0 when the cache was used). */
  buildSeconds: number;
}

/** What the test processes get from globalSetup: the build, or why there is none. */
export type ProbeBuildResult = { ok: true; build: ProbeBuild } | { ok: false; error: string };

/** The environment every dotnet command here runs with: no telemetry, banners or build servers left behind. */
export function dotnetEnvironment(): NodeJS.ProcessEnv {
  return {
    ...process.env,
    DOTNET_CLI_TELEMETRY_OPTOUT: '1',
    DOTNET_NOLOGO: '1',
    DOTNET_SKIP_FIRST_TIME_EXPERIENCE: '1',
    DOTNET_CLI_USE_MSBUILD_SERVER: '0',
    MSBUILDDISABLENODEREUSE: '1',
  };
}

function dotnet(args: string[], what: string): string {
  const result = spawnSync('dotnet', args, { encoding: 'utf8', env: dotnetEnvironment(), maxBuffer: 64 * 1024 * 1024 });
  if (result.error) {
    throw new Error(
      `the .NET probe tests need "dotnet" (the .NET SDK 10, which also targets net8.0) on PATH, and ${what} could not start it: ${result.error.message}`,
    );
  }
  if (result.status !== 0) {
    throw new Error(`${what} failed (exit ${String(result.status)}):\n${result.stdout}${result.stderr}`);
  }
  return result.stdout;
}

/**
 * The two publishes. TargetFrameworks is narrowed to the one being published so a restore
 * fetches only that target's packs (the net8.0 runtime pack, not also net10.0's).
 */
const TARGETS = [
  { dir: 'net8', args: ['-f', 'net8.0', '-p:TargetFrameworks=net8.0', '-r', 'linux-x64', '--self-contained'], what: 'dotnet publish -f net8.0 (self-contained)' },
  { dir: 'net10', args: ['-f', 'net10.0', '-p:TargetFrameworks=net10.0'], what: 'dotnet publish -f net10.0' },
] as const;

function sourceHash(sdkVersion: string): string {
  const hash = createHash('sha256').update(`sdk ${sdkVersion}\n${JSON.stringify(TARGETS)}\n`);
  for (const entry of readdirSync(PROBE_SOURCE_DIR, { withFileTypes: true }).filter((e) => e.isFile()).sort((a, b) => a.name.localeCompare(b.name))) {
    const name = entry.name;
    hash.update(`${name}\n`).update(readFileSync(join(PROBE_SOURCE_DIR, name)));
  }
  return hash.digest('hex').slice(0, 16);
}

/** Restores and publishes both builds, or returns the cached ones. Throws naming what failed. */
export function buildProbe(cacheRoot = join(tmpdir(), 'cbactions-dotnet-probe')): ProbeBuild {
  const sdkVersion = dotnet(['--version'], 'dotnet --version').trim();
  const finalDir = join(cacheRoot, sourceHash(sdkVersion));
  const ready = join(finalDir, 'ready');
  if (existsSync(ready)) {
    return { net8: join(finalDir, 'net8'), net10: join(finalDir, 'net10'), buildSeconds: 0 };
  }
  mkdirSync(cacheRoot, { recursive: true });
  const stage = mkdtempSync(join(cacheRoot, 'staging-'));
  const started = process.hrtime.bigint();
  try {
    // obj/ and bin/ go to the staging dir too: nothing is written into the repository.
    const outputs = [`-p:BaseIntermediateOutputPath=${join(stage, 'obj')}/`, `-p:BaseOutputPath=${join(stage, 'bin')}/`];
    const common = ['publish', PROJECT, '-c', 'Release', '--disable-build-servers', '-nodeReuse:false', ...outputs];
    for (const target of TARGETS) {
      dotnet([...common, ...target.args, '-o', join(stage, target.dir)], target.what);
    }
    const buildSeconds = Number(process.hrtime.bigint() - started) / 1e9;
    writeFileSync(join(stage, 'ready'), `${buildSeconds.toFixed(1)}\n`);
    rmSync(join(stage, 'obj'), { recursive: true, force: true });
    rmSync(join(stage, 'bin'), { recursive: true, force: true });
    try {
      renameSync(stage, finalDir);
    } catch (error) {
      // Another run finished the same build first: use its copy.
      if (!existsSync(ready)) {
        throw error;
      }
      rmSync(stage, { recursive: true, force: true });
    }
    return { net8: join(finalDir, 'net8'), net10: join(finalDir, 'net10'), buildSeconds };
  } catch (error) {
    rmSync(stage, { recursive: true, force: true });
    throw error;
  }
}
