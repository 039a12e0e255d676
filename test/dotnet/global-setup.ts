/**
 * vitest globalSetup: builds the .NET probe once per test run (cached across runs, see
 * probe-build.ts) and hands the result to the test files. A failed build does not stop
 * the other tests: the .NET test files fail, each with the reason (never skip).
 */
import type { TestProject } from 'vitest/node';
import { buildProbe, type ProbeBuildResult } from './probe-build.js';

declare module 'vitest' {
  export interface ProvidedContext {
    dotnetProbe: ProbeBuildResult;
  }
}

export default function setup(project: TestProject): void {
  let result: ProbeBuildResult;
  try {
    const build = buildProbe();
    result = { ok: true, build };
    if (build.buildSeconds > 0) {
      console.log(`dotnet probe: restored and published net8.0 (self-contained) and net10.0 in ${build.buildSeconds.toFixed(1)} s`);
    }
  } catch (error) {
    result = { ok: false, error: error instanceof Error ? error.message : String(error) };
  }
  project.provide('dotnetProbe', result);
}
