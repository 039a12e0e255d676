/**
 * A child's exit, once its output has been read. Node emits 'exit' before the child's stdout
 * and stderr are drained, so a test that reads the last log lines right after 'exit' races
 * the pipe. Waits for both streams to end, at most `graceMs` after the exit: a grandchild
 * that inherited a stream must not hold the test forever.
 */
import type { ChildProcess } from 'node:child_process';
import { finished } from 'node:stream/promises';

export interface ChildExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export function exitAfterOutput(child: ChildProcess, graceMs = 10_000): Promise<ChildExit> {
  const outputRead = Promise.all(
    [child.stdout, child.stderr].map((stream) => (stream ? finished(stream).catch(() => undefined) : undefined)),
  );
  return new Promise<ChildExit>((resolve) => {
    child.once('exit', (code, signal) => {
      const timer = setTimeout(() => resolve({ code, signal }), graceMs);
      void outputRead.then(() => {
        clearTimeout(timer);
        resolve({ code, signal });
      });
    });
  });
}
