import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger };

/**
 * Paths that may hold secrets if a careless caller logs a whole object. Logs carry ids,
 * never message bodies or tokens; redaction is the second line of defence.
 */
export const REDACTED_PATHS = [
  'token',
  '*.token',
  'secret',
  '*.secret',
  'password',
  '*.password',
  'privateKey',
  '*.privateKey',
  'authorization',
  '*.authorization',
  'headers.authorization',
  'body',
  '*.body',
  'jobMessage',
  '*.jobMessage',
  'plaintext',
  '*.plaintext',
  'dataKey',
  '*.dataKey',
  'jitConfig',
  '*.jitConfig',
  'encoded_jit_config',
  '*.encoded_jit_config',
];

export interface LoggerOptions {
  name: string;
  level?: string;
  destination?: DestinationStream;
}

/** Structured JSON logs: one event name per record (`event`), data in fields. */
export function createLogger(options: LoggerOptions): Logger {
  return pino(
    {
      name: options.name,
      level: options.level ?? 'info',
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    options.destination ?? pino.destination({ fd: 2, sync: true }),
  );
}
