import { appendFileSync } from 'node:fs';

/**
 * A build's "CloudWatch log": the commands' own output plus the agent's `[Container]`
 * lines, in the format CodeBuild writes them, so a person reading it knows where they are.
 * Appends with O_APPEND, interleaving safely with the commands writing the same file.
 */
export class BuildLog {
  constructor(
    readonly path: string,
    private readonly now: () => number,
  ) {}

  container(message: string): void {
    appendFileSync(this.path, `[Container] ${formatTimestamp(this.now())} ${message}\n`);
  }
}

/** `2026/11/27 19:18:52.717000`, UTC, as the CodeBuild agent prints it. */
export function formatTimestamp(ms: number): string {
  const d = new Date(ms);
  const pad = (n: number, width = 2) => String(n).padStart(width, '0');
  return `${d.getUTCFullYear()}/${pad(d.getUTCMonth() + 1)}/${pad(d.getUTCDate())} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}.${pad(d.getUTCMilliseconds(), 3)}000`;
}
