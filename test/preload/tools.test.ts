/**
 * Programs we did not write, under LD_PRELOAD: coreutils and the shell (what config.sh,
 * run.sh and operators use), Node (cbactions' own worker runs under the listener's
 * LD_PRELOAD), and six processes sharing one root at once.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildOnce, cleanupAll, makeScratch, under, underAsync, type Built } from './helpers.js';

let built: Built;
beforeAll(() => {
  built = buildOnce();
});
afterAll(cleanupAll);

const DECOY = 'shared-root-decoy\n';

function setup() {
  const scratch = makeScratch();
  const slot = scratch.slot('a');
  writeFileSync(join(scratch.root, '.runner'), DECOY);
  const sh = (script: string, ...args: string[]) => under({ root: scratch.root, slot }, '/bin/sh', ['-c', script, 'sh', scratch.root, ...args]);
  return { scratch, slot, root: scratch.root, sh };
}

describe('coreutils and the shell under preload.so', () => {
  it('shell redirection "echo x > <root>/.runner" writes the slot file', () => {
    const { slot, root, sh } = setup();
    sh('echo x > "$1/.runner"');
    expect(readFileSync(join(slot, '.runner'), 'utf8')).toBe('x\n');
    sh('echo y >> "$1/.runner"');
    expect(readFileSync(join(slot, '.runner'), 'utf8')).toBe('x\ny\n');
    expect(readFileSync(join(root, '.runner'), 'utf8')).toBe(DECOY);
    expect(sh('test -f "$1/.env" && echo yes || echo no').stdout).toBe('no');
    expect(sh('test -f "$1/.runner" && echo yes || echo no').stdout).toBe('yes');
  });

  it('bash redirection too', () => {
    const { slot, root } = setup();
    under({ root, slot }, 'bash', ['-c', 'printf "%s" bash-wrote > "$1/.env"', 'bash', root]);
    expect(readFileSync(join(slot, '.env'), 'utf8')).toBe('bash-wrote');
    expect(existsSync(join(root, '.env'))).toBe(false);
  });

  it('cat reads the slot file, ls -l and stat report its size', () => {
    const { slot, sh } = setup();
    writeFileSync(join(slot, '.runner'), 'twelve bytes');
    expect(sh('cat "$1/.runner"').stdout).toBe('twelve bytes');
    expect(sh('ls -l "$1/.runner"').stdout).toMatch(/^-\S+\s+\d+\s+\S+\s+\S+\s+12\s/);
    expect(sh('stat -c %s "$1/.runner"').stdout).toBe('12');
    expect(sh('stat -c %s "$1/bin/../.runner"').stdout).toBe('12');
    expect(sh('cd "$1/bin" && cat ../.runner').stdout).toBe('twelve bytes');
  });

  it('cp into and out of the root uses the slot file', () => {
    const { slot, root, scratch, sh } = setup();
    const source = join(scratch.base, 'creds.json');
    writeFileSync(source, '{"scheme":"OAuth"}');
    sh('cp "$2" "$1/.credentials"', source);
    expect(readFileSync(join(slot, '.credentials'), 'utf8')).toBe('{"scheme":"OAuth"}');
    expect(existsSync(join(root, '.credentials'))).toBe(false);
    const copy = join(scratch.base, 'copy');
    sh('cp "$1/.credentials" "$2"', copy);
    expect(readFileSync(copy, 'utf8')).toBe('{"scheme":"OAuth"}');
  });

  it('rm removes the slot file and leaves the root file; a second rm reports ENOENT', () => {
    const { slot, root, sh } = setup();
    writeFileSync(join(slot, '.runner'), 'gone soon');
    sh('rm "$1/.runner"');
    expect(existsSync(join(slot, '.runner'))).toBe(false);
    expect(readFileSync(join(root, '.runner'), 'utf8')).toBe(DECOY);
    const again = under({ root, slot }, '/bin/sh', ['-c', 'rm "$1/.runner"', 'sh', root], true);
    expect(again.status).not.toBe(0);
    expect(again.stderr).toContain('No such file or directory');
  });

  it('mv of a temp file onto <root>/.runner lands in the slot', () => {
    const { slot, root, sh } = setup();
    sh('printf new > "$1/.runner.new" && mv "$1/.runner.new" "$1/.runner"');
    expect(readFileSync(join(slot, '.runner'), 'utf8')).toBe('new');
    expect(readFileSync(join(root, '.runner'), 'utf8')).toBe(DECOY);
    expect(existsSync(join(root, '.runner.new'))).toBe(false);
  });
});

describe('six processes, six slots, one root', () => {
  it.each([
    ['new-ABI', () => built.fsOpsNew],
    ['old-ABI', () => built.fsOpsOld],
  ])('each %s process only ever sees its own .runner while all run at once', async (_abi, binary) => {
    const scratch = makeScratch();
    const runner = join(scratch.root, '.runner');
    const ids = ['slot-1', 'slot-2', 'slot-3', 'slot-4', 'slot-5', 'slot-6'];
    const results = await Promise.all(
      ids.map((id) => underAsync({ root: scratch.root, slot: scratch.slot(id) }, binary(), ['hammer', runner, `runner-${id}`, '300'])),
    );
    for (const [index, result] of results.entries()) {
      expect(result, ids[index]).toEqual({ status: 0, stdout: 'ok', stderr: '' });
    }
    for (const id of ids) {
      expect(readFileSync(join(scratch.base, 'slots', id, '.runner'), 'utf8')).toBe(`runner-${id}`);
    }
    expect(existsSync(runner)).toBe(false);
  });

  it('six shells writing and reading concurrently each read back their own content', async () => {
    const scratch = makeScratch();
    const ids = ['a', 'b', 'c', 'd', 'e', 'f'];
    const script = 'i=0; while [ $i -lt 40 ]; do echo "$2" > "$1/.credentials"; read got < "$1/.credentials"; [ "$got" = "$2" ] || { echo "saw $got"; exit 1; }; i=$((i+1)); done; echo ok';
    const results = await Promise.all(ids.map((id) => underAsync({ root: scratch.root, slot: scratch.slot(id) }, '/bin/sh', ['-c', script, 'sh', scratch.root, `creds-${id}`])));
    for (const result of results) {
      expect(result.stdout).toBe('ok');
    }
    for (const id of ids) {
      expect(readFileSync(join(scratch.base, 'slots', id, '.credentials'), 'utf8')).toBe(`creds-${id}\n`);
    }
    expect(existsSync(join(scratch.root, '.credentials'))).toBe(false);
  });
});

describe('Node.js under preload.so', () => {
  // Node's bundled libuv: open64/openat for files, syscall(SYS_statx) for stat, access for
  // existsSync, unlink; async calls go through the threadpool (UV_USE_IO_URING=0).
  const script = `
    const fs = require('node:fs');
    const [root, slot] = process.argv.slice(1);
    const file = root + '/.runner';
    const out = {};
    out.existsBefore = fs.existsSync(file);
    fs.writeFileSync(file, '{"agentName":"from-node"}');
    out.slotDirect = fs.readFileSync(slot + '/.runner', 'utf8');
    out.read = fs.readFileSync(file, 'utf8');
    out.exists = fs.existsSync(file);
    out.size = fs.statSync(file).size;
    out.lsize = fs.lstatSync(file).size;
    out.isFile = fs.statSync(root + '/bin/../.runner').isFile();
    fs.accessSync(file);
    fs.promises.readFile(file, 'utf8').then(async (asyncRead) => {
      out.asyncRead = asyncRead;
      out.asyncSize = (await fs.promises.stat(file)).size;
      await fs.promises.writeFile(root + '/.credentials', 'async-creds');
      out.asyncCreds = fs.readFileSync(slot + '/.credentials', 'utf8');
      fs.unlinkSync(file);
      out.existsAfter = fs.existsSync(file);
      try { fs.statSync(file); out.statAfter = 'found'; } catch (error) { out.statAfter = error.code; }
      out.configSh = fs.readFileSync(root + '/config.sh', 'utf8').length > 0;
      process.stdout.write(JSON.stringify(out));
    });
  `;

  it('readFileSync/writeFileSync/existsSync/statSync/unlinkSync (and fs.promises) use the slot file', () => {
    const { slot, root } = setup();
    const result = under({ root, slot }, process.execPath, ['-e', script, root, slot]);
    expect(JSON.parse(result.stdout)).toEqual({
      existsBefore: false,
      slotDirect: '{"agentName":"from-node"}',
      read: '{"agentName":"from-node"}',
      exists: true,
      size: 25,
      lsize: 25,
      isFile: true,
      asyncRead: '{"agentName":"from-node"}',
      asyncSize: 25,
      asyncCreds: 'async-creds',
      existsAfter: false,
      statAfter: 'ENOENT',
      configSh: true,
    });
    expect(readFileSync(join(root, '.runner'), 'utf8')).toBe(DECOY);
    expect(existsSync(join(slot, '.runner'))).toBe(false);
    expect(readFileSync(join(slot, '.credentials'), 'utf8')).toBe('async-creds');
    expect(existsSync(join(root, '.credentials'))).toBe(false);
  });
});
