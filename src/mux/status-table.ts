/** `cbactions status` output: the mux's `/status` as a plain-text table. */
import type { MuxStatus } from './status-model.js';

function table(header: string[], rows: string[][]): string {
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => (row[column] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, column) => cell.padEnd(widths[column] ?? 0))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

export function formatStatus(status: MuxStatus): string {
  const out: string[] = [];
  const protection = status.taskProtection.available ? (status.taskProtection.enabled ? 'held' : 'not held') : 'unavailable (not on ECS)';
  out.push(`host ${status.host}  started ${status.startedAt}${status.draining ? '  DRAINING' : ''}`);
  out.push(`isolation ${status.isolation.kind} (${status.isolation.reason})`);
  out.push(`registration ${status.registration}  task protection ${protection}`);
  out.push('');
  out.push(
    table(
      ['POOL', 'LABELS', 'SLOTS', 'BUSY', 'IDLE', 'STARTING', 'PREPARED', 'IDLE TARGET', 'MAX', 'STATE'],
      status.pools.map((pool) => {
        const capacity = pool.capacity;
        const count = (value: number | undefined) => (value === undefined ? '-' : String(value));
        return [
          pool.name,
          pool.labels.join(','),
          String(pool.slots),
          count(capacity?.busy),
          count(capacity?.idle),
          count(capacity?.starting),
          capacity ? `${capacity.prepared}/${capacity.preparedTarget}` : '-',
          count(capacity?.idleTarget),
          count(capacity?.max),
          pool.stopped ? `STOPPED: ${pool.stopped.reason}` : 'running',
        ];
      }),
    ),
  );
  out.push('');
  out.push(
    table(
      ['SLOT', 'STATE', 'RUNNER', 'JOB', 'BUILD', 'RESTARTS', 'LAST EXIT'],
      status.slots.map((slot) => [
        slot.id,
        slot.state === 'backing-off' && slot.backoffMs !== null ? `backing-off (${slot.backoffMs} ms)` : slot.state,
        slot.runnerName ?? '-',
        slot.job ?? '-',
        slot.buildId ?? '-',
        String(slot.restarts),
        slot.lastExit ? (slot.lastExit.code !== null ? String(slot.lastExit.code) : (slot.lastExit.signal ?? '?')) : '-',
      ]),
    ),
  );
  return `${out.join('\n')}\n`;
}
