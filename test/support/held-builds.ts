/**
 * A CodeBuild fake whose BatchGetBuilds answers wait until the test releases them: the test
 * decides what happens while a call is in flight (a poke, a close, a new build).
 */
import type { CodeBuildApi, BuildSnapshot, StartBuildRequest } from '../../src/dispatch/codebuild-api.js';

export interface HeldGetBuilds {
  ids: string[];
  signal: AbortSignal | undefined;
  /** Answers with these builds (the rest of `ids` come back as not found). */
  answer(builds: BuildSnapshot[]): void;
  fail(error: Error): void;
}

export function snapshot(id: string, changes: Partial<BuildSnapshot> = {}): BuildSnapshot {
  return { id, status: 'IN_PROGRESS', complete: false, currentPhase: 'BUILD', phases: [], exported: {}, ...changes };
}

export class HeldBuilds implements CodeBuildApi {
  /** Every getBuilds call so far, answered or not. */
  readonly calls: HeldGetBuilds[] = [];
  #handedOut = 0;
  readonly #listeners = new Set<() => void>();

  async startBuild(request: StartBuildRequest): Promise<BuildSnapshot> {
    return snapshot(`${request.projectName}:held`);
  }

  getBuilds(ids: string[], signal?: AbortSignal): Promise<{ builds: BuildSnapshot[]; notFound: string[] }> {
    return new Promise((resolve, reject) => {
      this.calls.push({
        ids,
        signal,
        answer: (builds) => resolve({ builds, notFound: ids.filter((id) => !builds.some((build) => build.id === id)) }),
        fail: reject,
      });
      signal?.addEventListener('abort', () => reject(signal.reason), { once: true });
      for (const listener of [...this.#listeners]) listener();
    });
  }

  async stopBuild(id: string): Promise<BuildSnapshot> {
    return snapshot(id, { status: 'STOPPED', complete: true, currentPhase: 'COMPLETED' });
  }

  /** The next getBuilds call not handed out yet, as soon as it is made. */
  nextCall(timeoutMs = 20_000): Promise<HeldGetBuilds> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const call = this.calls[this.#handedOut];
        if (!call) return;
        this.#handedOut += 1;
        this.#listeners.delete(check);
        clearTimeout(timer);
        resolve(call);
      };
      const timer = setTimeout(() => {
        this.#listeners.delete(check);
        reject(new Error(`no getBuilds call within ${timeoutMs} ms (calls so far: ${this.calls.length})`));
      }, timeoutMs);
      this.#listeners.add(check);
      check();
    });
  }
}
