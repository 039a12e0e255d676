/**
 * Every environment variable `cbactions worker` and `cbactions entrypoint` read is listed,
 * with its meaning, in their --help (the built binary) and in the README; and the code reads
 * no variable that list does not have. So the three cannot drift apart.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ENTRYPOINT_ENVIRONMENT } from '../../src/entrypoint/environment.js';
import { WORKER_ENVIRONMENT } from '../../src/worker/environment.js';
import { WATCHER_SOCKET_VARIABLE } from '../../src/watcher/protocol.js';
import { WorkerEnv } from '../../src/worker/environment.js';
import { CBACTIONS_BIN, PROJECT_ROOT } from '../support/runner-root.js';

const commands = [
  // The job settings and clients the worker builds are read in dispatch/ (shared with the mux's in-process dispatch).
  { command: 'worker', documented: WORKER_ENVIRONMENT, sources: ['src/worker/main.ts', 'src/dispatch/job-settings.ts', 'src/dispatch/job-clients.ts'] },
  { command: 'entrypoint', documented: ENTRYPOINT_ENVIRONMENT, sources: ['src/entrypoint/main.ts', 'src/entrypoint/run-entrypoint.ts'] },
] as const;

/**
 * Variables a source file reads by name: `env.NAME`, `workerEnv.NAME`, `env['NAME']`
 * (not `env.NAME ??= …`, which sets a default for a child), and every
 * `SomethingEnv.Key` constant it uses, resolved through the documented table's own names.
 */
function variablesRead(source: string): string[] {
  const names = new Set<string>();
  for (const match of source.matchAll(/\b\w*[eE]nv\.([A-Z][A-Z0-9_]+)\b(?!\s*\?\?=)/g)) names.add(String(match[1]));
  for (const match of source.matchAll(/\benv\[\s*['"]([A-Z][A-Z0-9_]+)['"]\s*\]/g)) names.add(String(match[1]));
  return [...names];
}

describe('environment of worker and entrypoint', () => {
  for (const { command, documented, sources } of commands) {
    it(`cbactions ${command} --help lists every variable with its meaning`, () => {
      const help = execFileSync(CBACTIONS_BIN, [command, '--help'], { encoding: 'utf8' });
      expect(help).toMatch(/\nEnvironment \(/);
      for (const [name, meaning] of Object.entries(documented)) {
        expect(help, name).toMatch(new RegExp(`\\n  ${name} +${meaning.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\n`));
      }
    });

    it(`${command}: the code reads no variable its help leaves out`, () => {
      const read = sources.flatMap((path) => variablesRead(readFileSync(join(PROJECT_ROOT, path), 'utf8')));
      expect(read.length).toBeGreaterThan(0);
      expect(read.filter((name) => !(name in documented))).toEqual([]);
    });

    it(`${command}: the README's environment section has every variable`, () => {
      const readme = readFileSync(join(PROJECT_ROOT, 'README.md'), 'utf8');
      const section = readme.slice(readme.indexOf('## Environment variables'), readme.indexOf('## Commands'));
      expect(Object.keys(documented).filter((name) => !section.includes(`\`${name}\``))).toEqual([]);
    });
  }

  it('the worker documents the watcher socket under the name the watcher uses', () => {
    expect(WorkerEnv.WatcherSocket).toBe(WATCHER_SOCKET_VARIABLE);
  });

  it('finds reads the way the sources write them', () => {
    expect(variablesRead('const a = env.AWS_REGION; b = env[Env.Log]; deps.workerEnv.HOOK_X; env.CI ??= "true"; env["QUOTED"]')).toEqual(['AWS_REGION', 'HOOK_X', 'QUOTED']);
  });
});
