/** `cbactions status [--url URL] [--json]`: asks a running mux for `/status`. */
import { ExitCode } from '../protocol/exit-codes.js';
import { describeError } from '../util/errors.js';
import type { MuxStatus } from './status-model.js';
import { formatStatus } from './status-table.js';

export const DEFAULT_STATUS_URL = 'http://127.0.0.1:8080';

export interface StatusCommandIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  fetchImpl?: typeof fetch;
}

export async function runStatusCommand(options: { url?: string; json?: boolean }, io: StatusCommandIo): Promise<number> {
  const base = (options.url ?? DEFAULT_STATUS_URL).replace(/\/+$/, '');
  let status: MuxStatus;
  try {
    const response = await (io.fetchImpl ?? fetch)(`${base}/status`, { signal: AbortSignal.timeout(10_000) });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    status = (await response.json()) as MuxStatus;
  } catch (error) {
    io.stderr(`cbactions status: cannot read ${base}/status: ${describeError(error)} (is the mux running? pass --url http://HOST:PORT)\n`);
    return ExitCode.InfrastructureFailure;
  }
  io.stdout(options.json ? `${JSON.stringify(status, null, 2)}\n` : formatStatus(status));
  return ExitCode.Ok;
}
