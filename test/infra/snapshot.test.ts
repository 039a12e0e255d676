import { describe, expect, it } from 'vitest';
import { BUILDSPEC, configInput, nagFindings, synth } from './helpers.js';

/** Asset hashes follow the built bundle and the Dockerfiles; the buildspec has its own test. */
function stable(template: Record<string, unknown>): string {
  return JSON.stringify(template, null, 2)
    .replace(/[0-9a-f]{64}/g, '<asset-hash>')
    .replace(JSON.stringify(BUILDSPEC), '"<buildspec.yml>"');
}

describe('synthesized template of the default deployment', () => {
  it('matches the committed snapshot', async () => {
    const { json, annotations } = synth(configInput());
    expect(nagFindings(annotations)).toEqual([]);
    const text = stable(json);
    expect(text).not.toMatch(/[0-9a-f]{64}/);
    await expect(`${text}\n`).toMatchFileSnapshot('__snapshots__/default-stack.template.json');
  });
});
