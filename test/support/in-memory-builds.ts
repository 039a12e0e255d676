import type { CodeBuildApi, BuildSnapshot, StartBuildRequest } from '../../src/dispatch/codebuild-api.js';

/** An SDK-shaped error, as the AWS SDK v3 throws them. */
export function awsError(name: string, message = name, status = 400): Error {
  return Object.assign(new Error(message), { name, $metadata: { httpStatusCode: status } });
}

/**
 * An in-memory CodeBuild for component tests: records every call, can be told to fail
 * the next calls, and lets the test move builds along (or react to StartBuild).
 */
export class InMemoryBuilds implements CodeBuildApi {
  readonly calls: { op: 'start' | 'get' | 'stop'; arg: unknown }[] = [];
  readonly builds = new Map<string, BuildSnapshot>();
  readonly failures: { op: 'start' | 'get' | 'stop'; error: Error }[] = [];
  onStart?: (build: BuildSnapshot, request: StartBuildRequest) => void;
  private counter = 0;

  private maybeFail(op: 'start' | 'get' | 'stop'): void {
    const index = this.failures.findIndex((failure) => failure.op === op);
    if (index >= 0) {
      const [failure] = this.failures.splice(index, 1);
      throw failure?.error;
    }
  }

  async startBuild(request: StartBuildRequest): Promise<BuildSnapshot> {
    this.calls.push({ op: 'start', arg: request });
    this.maybeFail('start');
    const existing = [...this.builds.values()].find((build) => (build as BuildSnapshot & { token?: string }).token === request.idempotencyToken);
    if (existing) return { ...existing };
    const uuid = `00000000-0000-4000-8000-${String(++this.counter).padStart(12, '0')}`;
    const id = `${request.projectName}:${uuid}`;
    const build: BuildSnapshot & { token?: string } = {
      id,
      arn: `arn:aws:codebuild:us-east-1:123456789012:build/${id}`,
      status: 'IN_PROGRESS',
      complete: false,
      currentPhase: 'QUEUED',
      phases: [],
      exported: {},
      token: request.idempotencyToken,
    };
    this.builds.set(id, build);
    this.onStart?.(build, request);
    return { ...build };
  }

  async getBuilds(ids: string[]): Promise<{ builds: BuildSnapshot[]; notFound: string[] }> {
    this.calls.push({ op: 'get', arg: ids });
    this.maybeFail('get');
    return {
      builds: ids.flatMap((id) => {
        const build = this.builds.get(id);
        return build ? [{ ...build }] : [];
      }),
      notFound: ids.filter((id) => !this.builds.has(id)),
    };
  }

  async stopBuild(id: string): Promise<BuildSnapshot> {
    this.calls.push({ op: 'stop', arg: id });
    this.maybeFail('stop');
    const build = this.builds.get(id);
    if (!build) throw awsError('ResourceNotFoundException');
    if (!build.complete) this.finish(id, { status: 'STOPPED' });
    return { ...build };
  }

  update(id: string, changes: Partial<BuildSnapshot>): void {
    const build = this.builds.get(id);
    if (!build) throw new Error(`no build ${id}`);
    Object.assign(build, changes);
  }

  finish(id: string, changes: Partial<BuildSnapshot> = {}): void {
    this.update(id, { status: 'SUCCEEDED', currentPhase: 'COMPLETED', complete: true, ...changes });
  }

  count(op: 'start' | 'get' | 'stop'): number {
    return this.calls.filter((call) => call.op === op).length;
  }
}
