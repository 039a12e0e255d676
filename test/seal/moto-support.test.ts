import { describe, expect, it } from 'vitest';
import { startMoto } from '../support/moto.js';

describe('test/support/moto', () => {
  it('fails loudly, with the fix, when moto_server is not installed', async () => {
    await expect(startMoto({ command: 'moto_server-not-installed-here' })).rejects.toThrow(/not installed.*pip install/s);
  });
});
