import { describe, expect, it } from 'vitest';
import { readJobContext } from '../../src/dispatch/job-context.js';
import { contextTree, githubContext, pullRequestContext } from '../support/context-data.js';

const read = (github: unknown) => readJobContext({ jobId: 'j', contextData: { github } });

describe('reading the job context from contextData.github', () => {
  it('reads repository, owner, event, ref, workflow file and actor, and never the token', () => {
    const context = read(contextTree(githubContext('acme/app')));
    expect(context).toEqual({ repository: 'acme/app', owner: 'acme', event: 'push', ref: 'refs/heads/main', workflow: '.github/workflows/ci.yml', actor: 'octocat', fork: false });
    expect(JSON.stringify(context)).not.toContain('ghs_');
  });

  it('accepts the object forms the runner also reads ({t:0,s}, {t:3,b}) and case-insensitive keys', () => {
    const github = { t: 2, d: [{ k: 'Repository', v: { t: 0, s: 'acme/app' } }, { k: 'EVENT_NAME', v: { s: 'push' } }, { k: 'event', v: { t: 2, d: [{ k: 'pull_request', v: null }] } }] };
    expect(read(github)).toEqual({ repository: 'acme/app', owner: 'acme', event: 'push', fork: false });
    const pr = contextTree(pullRequestContext('acme/app', 'mallory/app')) as { d: { k: string; v: unknown }[] };
    expect(read(pr).fork).toBe(true);
    expect(read({ t: 2, d: [{ k: 'event_name', v: 'push' }, { k: 'flag', v: { t: 3, b: true } }] })).toEqual({ event: 'push', fork: false });
  });

  it('tells a fork by the head repository, not by the fork flag of a repository that is itself a fork', () => {
    const sameRepoOfAFork = pullRequestContext('acme/app', 'acme/app', {
      event: { pull_request: { head: { repo: { full_name: 'acme/app', fork: true } }, base: { repo: { full_name: 'acme/app', fork: true } } } },
    });
    expect(read(contextTree(sameRepoOfAFork)).fork).toBe(false);
    const onlyTheFlag = pullRequestContext('acme/app', 'acme/app', { event: { pull_request: { head: { repo: { fork: true } } } } });
    expect(read(contextTree({ ...onlyTheFlag, repository: undefined })).fork).toBe(true);
    const noHeadRepo = pullRequestContext('acme/app', 'acme/app', { event: { pull_request: { head: { ref: 'x' } } } });
    expect(read(contextTree(noHeadRepo)).fork).toBeUndefined();
    const run = githubContext('acme/app', { event_name: 'workflow_run', event: { workflow_run: { head_repository: { full_name: 'mallory/app' } } } });
    expect(read(contextTree(run)).fork).toBe(true);
  });

  it.each([
    ['no github context', { jobId: 'j', contextData: {} }, "the job message's contextData has no github context"],
    ['github twice, in two cases', { jobId: 'j', contextData: { github: contextTree({ repository: 'acme/app' }), GitHub: contextTree({ repository: 'acme/legacy' }) } }, "the job message's contextData has the github context twice"],
        ['contextData is an array', { jobId: 'j', contextData: [] }, "the job message's contextData is not an object"],
    ['an unknown node type', { jobId: 'j', contextData: { github: { t: 9 } } }, 'contextData.github has an unknown context type'],
    ['too many entries', { jobId: 'j', contextData: { github: { t: 2, d: Array.from({ length: 10_001 }, (_, i) => ({ k: `k${i}`, v: 'x' })) } } }, 'contextData.github is not a well-formed dictionary (a dictionary has more than 10000 entries)'],
    ['an owner that is not the repository\'s', { jobId: 'j', contextData: { github: contextTree({ repository: 'acme/app', repository_owner: 'mallory' }) } }, 'github.repository_owner is not the owner of github.repository'],
    ['a workflow_ref without @ref', { jobId: 'j', contextData: { github: contextTree({ workflow_ref: 'acme/app/.github/workflows/ci.yml' }) } }, 'github.workflow_ref is not "owner/name/path@ref"'],
    ['a ref with a newline', { jobId: 'j', contextData: { github: contextTree({ ref: 'refs/heads/a\nb' }) } }, 'github.ref holds control characters'],
    ['fork is a string', { jobId: 'j', contextData: { github: contextTree({ event_name: 'pull_request', event: { pull_request: { head: { repo: { fork: 'yes' } } } } }) } }, 'github.event.pull_request.head.repo.fork is not a boolean'],
  ])('%s: unreadable, with the reason and no values', (_name, message, problem) => {
    expect(readJobContext(message as Record<string, unknown>)).toEqual({ problem });
  });
});
