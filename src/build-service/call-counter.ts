/** Per-operation counts of CodeBuild API calls, as `GET /_local/calls` shows them. */
export interface CallCounts {
  operations: Record<string, { calls: number; throttled: number }>;
  total: { calls: number; throttled: number };
}

export class CallCounter {
  private operations = new Map<string, { calls: number; throttled: number }>();

  record(operation: string, throttled: boolean): void {
    const entry = this.operations.get(operation) ?? { calls: 0, throttled: 0 };
    entry.calls += 1;
    if (throttled) entry.throttled += 1;
    this.operations.set(operation, entry);
  }

  reset(): void {
    this.operations.clear();
  }

  snapshot(): CallCounts {
    const operations: CallCounts['operations'] = {};
    const total = { calls: 0, throttled: 0 };
    for (const [name, entry] of [...this.operations].sort(([a], [b]) => a.localeCompare(b))) {
      operations[name] = { ...entry };
      total.calls += entry.calls;
      total.throttled += entry.throttled;
    }
    return { operations, total };
  }
}
