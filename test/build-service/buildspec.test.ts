import { describe, expect, it } from 'vitest';
import { parseBuildspec } from '../../src/build-service/buildspec.js';
import { isCbactionsError } from '../../src/util/errors.js';

function problem(text: string): string {
  try {
    parseBuildspec(text, 'test.yml');
  } catch (error) {
    if (isCbactionsError(error, 'BUILDSPEC_INVALID')) return error.message;
    throw error;
  }
  throw new Error('expected the buildspec to be refused');
}

describe('parseBuildspec', () => {
  it('reads env and the four phases, with defaults', () => {
    const spec = parseBuildspec(
      `version: 0.2
env:
  shell: bash
  variables:
    NUMBER: 3
    FLAG: true
  exported-variables: [A, B]
  git-credential-helper: yes
phases:
  install:
    runtime-versions:
      nodejs: 20
    commands:
      - echo one
      - 42
  build:
    on-failure: CONTINUE
    commands:
      - |
        echo multi
        echo line
    finally:
      - echo done
  post_build:
artifacts:
  files: ['**/*']
`,
      'test.yml',
    );
    expect(spec.shell).toBe('bash');
    expect(spec.variables).toEqual({ NUMBER: '3', FLAG: 'true' });
    expect(spec.exportedVariables).toEqual(['A', 'B']);
    expect(spec.phases.install).toEqual({ commands: ['echo one', '42'], finally: [], onFailure: undefined });
    expect(spec.phases.build).toEqual({ commands: ['echo multi\necho line\n'], finally: ['echo done'], onFailure: 'CONTINUE' });
    expect(spec.phases.pre_build).toBeUndefined();
    expect(spec.phases.post_build).toBeUndefined();
  });

  it('defaults to /bin/sh and no variables', () => {
    const spec = parseBuildspec('version: "0.2"\nphases:\n  build:\n    commands: [true]\n', 'x');
    expect(spec).toEqual({ shell: '/bin/sh', variables: {}, exportedVariables: [], phases: { build: { commands: ['true'], finally: [], onFailure: undefined } } });
  });

  it('names what is wrong or unsupported', () => {
    expect(problem('version: 0.1\nphases: {}\n')).toMatch(/version: only buildspec version 0\.2/);
    expect(problem('phases: {}\n')).toMatch(/version/);
    expect(problem('version: 0.2\nphases:\n  compile:\n    commands: [make]\n')).toMatch(/phases\.compile: unknown phase/);
    expect(problem('version: 0.2\nphases:\n  build:\n    commands:\n      - echo: x\n')).toMatch(/phases\.build\.commands\[0\]: expected a command string/);
    expect(problem('version: 0.2\nenv:\n  shell: zsh\nphases: {}\n')).toMatch(/env\.shell: expected bash or \/bin\/sh/);
    expect(problem('version: 0.2\nenv:\n  secrets-manager:\n    X: s:k\nphases: {}\n')).toMatch(/secrets-manager is not supported by the local build service/);
    expect(problem('version: 0.2\nphases:\n  build:\n    run-as: nobody\n    commands: [id]\n')).toMatch(/run-as is not supported/);
    expect(problem('version: 0.2\nphases:\n  build:\n    on-failure: RETRY-3\n    commands: [id]\n')).toMatch(/on-failure: expected ABORT or CONTINUE/);
    expect(problem('version: 0.2\nphases:\n  build:\n    commands: [\n')).toMatch(/not valid YAML/);
    expect(problem('- just\n- a list\n')).toMatch(/not a buildspec/);
  });
});
