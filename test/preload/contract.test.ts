import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  builtPreloadArtifacts,
  PRELOAD_ROOT_ENV,
  PRELOAD_SLOT_DIR_ENV,
  preloadArtifactsIn,
  preloadEnvironment,
  REDIRECTED_FILE_NAMES,
} from '../../src/preload/contract.js';
import { isCbactionsError } from '../../src/util/errors.js';
import { REPO_ROOT, requireTool } from './helpers.js';

describe('preload contract', () => {
  it('names the variables and files the C library uses', () => {
    expect(PRELOAD_ROOT_ENV).toBe('CBACTIONS_PRELOAD_ROOT');
    expect(PRELOAD_SLOT_DIR_ENV).toBe('CBACTIONS_PRELOAD_SLOT_DIR');
    expect([...REDIRECTED_FILE_NAMES].sort()).toEqual(
      ['.credentials', '.credentials_migrated', '.credentials_rsaparams', '.credentials_rsaparams_migrated', '.env', '.path', '.runner', '.runner_migrated'],
    );
  });

  it('builds a listener environment: our library first, io_uring off for libuv', () => {
    expect(preloadEnvironment({ preloadPath: '/opt/cbactions/preload.so', runnerRoot: '/actions-runner', slotDir: '/var/lib/cbactions/slots/1' })).toEqual({
      LD_PRELOAD: '/opt/cbactions/preload.so',
      CBACTIONS_PRELOAD_ROOT: '/actions-runner',
      CBACTIONS_PRELOAD_SLOT_DIR: '/var/lib/cbactions/slots/1',
      UV_USE_IO_URING: '0',
    });
    expect(preloadEnvironment({ preloadPath: '/p.so', runnerRoot: '/r', slotDir: '/s', inheritedLdPreload: ' /usr/lib/other.so ' }).LD_PRELOAD).toBe('/p.so /usr/lib/other.so');
  });

  it.each([
    [{ preloadPath: 'preload.so', runnerRoot: '/r', slotDir: '/s' }, /preloadPath must be an absolute path/],
    [{ preloadPath: '/p.so', runnerRoot: 'r', slotDir: '/s' }, /runnerRoot must be an absolute path/],
    [{ preloadPath: '/p.so', runnerRoot: '/r', slotDir: 's' }, /slotDir must be an absolute path/],
    [{ preloadPath: '/my dir/p.so', runnerRoot: '/r', slotDir: '/s' }, /space or colon/],
    [{ preloadPath: '/a:b/p.so', runnerRoot: '/r', slotDir: '/s' }, /space or colon/],
  ])('rejects %o', (options, message) => {
    let thrown: unknown;
    try {
      preloadEnvironment(options);
    } catch (error) {
      thrown = error;
    }
    expect(isCbactionsError(thrown, 'PRELOAD_INVALID_PATH')).toBe(true);
    expect((thrown as Error).message).toMatch(message);
  });

  it('locates the build output in <package>/dist/preload', () => {
    expect(builtPreloadArtifacts()).toEqual({
      preloadPath: join(REPO_ROOT, 'dist', 'preload', 'preload.so'),
      probePath: join(REPO_ROOT, 'dist', 'preload', 'preload-probe'),
      launcherPath: join(REPO_ROOT, 'dist', 'preload', 'listener-launcher'),
      workerShimPath: join(REPO_ROOT, 'dist', 'preload', 'worker-shim'),
    });
    expect(preloadArtifactsIn('/x')).toEqual({ preloadPath: '/x/preload.so', probePath: '/x/preload-probe', launcherPath: '/x/listener-launcher', workerShimPath: '/x/worker-shim' });
  });
});

describe('test prerequisites', () => {
  it('a missing compiler fails the preload tests with a message saying what to install', () => {
    expect(() => requireTool('cbactions-no-such-compiler')).toThrow(/need "cbactions-no-such-compiler" on PATH .* install it/);
  });
});
