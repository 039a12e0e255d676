import { pino, type Logger } from 'pino';

export interface CapturedLogs {
  logger: Logger;
  records: { event?: string; level?: number; [key: string]: unknown }[];
  events: () => (string | undefined)[];
}

/** A pino logger whose JSON records land in an array, with the product's redaction rules. */
export function captureLogger(): CapturedLogs {
  const records: CapturedLogs['records'] = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => void records.push(JSON.parse(line) as CapturedLogs['records'][number]) });
  return { logger, records, events: () => records.map((record) => record.event) };
}
