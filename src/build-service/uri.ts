import { invalidInput } from './aws-error.js';

/**
 * decodeURIComponent that refuses a malformed `%` escape (`%zz`, a lone `%`, invalid
 * UTF-8) with a 400 naming `what`, instead of the URIError that would end as a 500.
 */
export function decodeComponent(text: string, what: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    const shown = text.length > 64 ? `${text.slice(0, 64)}…` : text;
    throw invalidInput(`${what} "${shown}" has a malformed % escape (expected %XX hexadecimal escapes of UTF-8 bytes)`);
  }
}
