import { describe, expect, it } from 'vitest';
import { decodeJitConfig, encodeJitConfig, enforceRunnerSettings, JitErrorCode, parseRunnerFile, prepareJitFiles } from '../../src/mux/jit-config.js';
import { isCbactionsError } from '../../src/util/errors.js';

const b64 = (value: string | Buffer) => Buffer.from(value).toString('base64');
const runner = { agentId: 17, agentName: 'cbt-host-linux-0-abcdef', poolId: 1, serverUrl: 'https://broker', workFolder: '_work', useV2Flow: true };

/** As GitHub returns it: base64 of JSON of base64 file contents (RUNNER-PROTOCOL §5). */
function githubJit(runnerSettings: Record<string, unknown> = runner): string {
  return b64(JSON.stringify({ '.runner': b64(JSON.stringify(runnerSettings)), '.credentials': b64('{"scheme":"OAuth","data":{"clientId":"c"}}'), '.credentials_rsaparams': b64('{"d":"secret"}') }));
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (error) {
    return isCbactionsError(error) ? error.code : 'not a CbactionsError';
  }
  return undefined;
}

describe('JIT config', () => {
  it('decodes to the three files, bytes intact', () => {
    const files = decodeJitConfig(githubJit());
    expect([...files.keys()].sort()).toEqual(['.credentials', '.credentials_rsaparams', '.runner']);
    expect(files.get('.credentials_rsaparams')?.toString()).toBe('{"d":"secret"}');
    expect(encodeJitConfig(files)).toBe(githubJit());
  });

  it('enforces disableUpdate and ephemeral in .runner, keeping every other field', () => {
    const prepared = prepareJitFiles(githubJit({ ...runner, disableUpdate: false }));
    const settings = JSON.parse(prepared.files.get('.runner')?.toString('utf8') ?? '') as Record<string, unknown>;
    expect(settings).toEqual({ ...runner, disableUpdate: true, ephemeral: true });
    expect(prepared.changed.sort()).toEqual(['disableUpdate', 'ephemeral']);
    expect(prepared.settings).toMatchObject({ agentId: 17, agentName: runner.agentName, disableUpdate: true, ephemeral: true });
  });

  it('reports nothing changed when the server already set both', () => {
    expect(prepareJitFiles(githubJit({ ...runner, disableUpdate: true, ephemeral: true })).changed).toEqual([]);
  });

  it('reads .runner written by the runner itself (UTF-8 BOM) and writes it back without one', () => {
    const withBom = Buffer.from(`\uFEFF${JSON.stringify({ ...runner, ephemeral: true })}`, 'utf8');
    expect(parseRunnerFile(withBom).agentId).toBe(17);
    const enforced = enforceRunnerSettings(withBom);
    expect(enforced.bytes[0]).toBe('{'.charCodeAt(0));
    expect(enforced.changed).toEqual(['disableUpdate']);
  });

  it('rejects malformed configs with an explicit code', () => {
    expect(codeOf(() => decodeJitConfig('not base64!'))).toBe(JitErrorCode.Malformed);
    expect(codeOf(() => decodeJitConfig(b64('not json')))).toBe(JitErrorCode.Malformed);
    expect(codeOf(() => decodeJitConfig(b64('[1,2]')))).toBe(JitErrorCode.Malformed);
    expect(codeOf(() => decodeJitConfig(b64(JSON.stringify({ '.runner': 5, '.credentials': b64('x') }))))).toBe(JitErrorCode.Malformed);
    expect(codeOf(() => decodeJitConfig(b64(JSON.stringify({ '.runner': b64('{}') }))))).toBe(JitErrorCode.Malformed);
  });

  it('refuses file names that would escape the slot directory', () => {
    for (const name of ['../.runner', '/etc/passwd', '..', 'a/b']) {
      expect(codeOf(() => decodeJitConfig(b64(JSON.stringify({ '.runner': b64('{}'), '.credentials': b64('{}'), [name]: b64('x') }))))).toBe(JitErrorCode.Malformed);
    }
  });

  it('rejects a .runner without agentId or agentName', () => {
    expect(codeOf(() => prepareJitFiles(githubJit({ agentName: 'x' })))).toBe(JitErrorCode.RunnerFile);
    expect(codeOf(() => prepareJitFiles(githubJit({ agentId: 3 })))).toBe(JitErrorCode.RunnerFile);
    expect(codeOf(() => parseRunnerFile(Buffer.from('{')))).toBe(JitErrorCode.RunnerFile);
  });
});
