/**
 * The one error type cbactions throws on purpose. `code` is stable: callers branch on it,
 * never on the message. The message is for a person and names what to fix.
 */
export class CbactionsError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CbactionsError';
    this.code = code;
  }
}

export function isCbactionsError(error: unknown, code?: string): error is CbactionsError {
  return error instanceof CbactionsError && (code === undefined || error.code === code);
}

/** A short, single-line description of any thrown value, safe to print (no stack). */
export function describeError(error: unknown): string {
  if (error instanceof Error) {
    const name = (error as { code?: unknown }).code ?? error.name;
    return `${String(name)}: ${error.message}`.replace(/\s+/g, ' ').trim();
  }
  return String(error).replace(/\s+/g, ' ').trim();
}
