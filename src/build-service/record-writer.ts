import { rename, writeFile } from 'node:fs/promises';
import type { Logger } from '../util/logger.js';
import { describeError } from '../util/errors.js';

/**
 * Writes each build's record.json after it changes, coalescing bursts of changes into one
 * write per file at a time (write to a temporary name, then rename: readers never see half
 * a file). `flush()` resolves once everything changed so far is on disk.
 */
export class RecordWriter {
  private readonly pending = new Map<string, () => unknown>();
  private readonly inFlight = new Map<string, Promise<void>>();

  constructor(private readonly logger: Logger) {}

  /** Schedules a write of `snapshot()` to `path`; the snapshot is taken when the write starts. */
  schedule(path: string, snapshot: () => unknown): void {
    this.pending.set(path, snapshot);
    if (!this.inFlight.has(path)) this.start(path);
  }

  private start(path: string): void {
    const run = (async () => {
      for (;;) {
        const snapshot = this.pending.get(path);
        if (!snapshot) break;
        this.pending.delete(path);
        // Yield once so that a burst of changes in one tick becomes one write.
        await new Promise((resolve) => setImmediate(resolve));
        const latest = this.pending.get(path) ?? snapshot;
        this.pending.delete(path);
        try {
          await writeFile(`${path}.tmp`, `${JSON.stringify(latest(), null, 2)}\n`, { mode: 0o600 });
          await rename(`${path}.tmp`, path);
        } catch (error) {
          this.logger.error({ event: 'build-service.record-write-failed', path, error: describeError(error) }, 'cannot write build record');
        }
      }
    })();
    this.inFlight.set(path, run);
    void run.finally(() => {
      this.inFlight.delete(path);
      if (this.pending.has(path)) this.start(path);
    });
  }

  async flush(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.all([...this.inFlight.values()]);
  }
}
