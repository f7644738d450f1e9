import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { destination, multistream, pino, type Level, type Logger, type StreamEntry } from 'pino';

/** Keys whose values never reach a log line, whatever object they sit in. */
export const REDACTED_KEYS = [
  '*.key',
  '*.keyPem',
  '*.privateKey',
  '*.secret',
  '*.clientSecret',
  '*.password',
  '*.token',
  '*.accessToken',
  '*.customData',
  '*.authorization',
  '*.headers.authorization',
];

/**
 * A pino logger writing JSON lines to `<logsDir>/<name>.log` (and to stderr when `echo` is set).
 * Job id and partition go on every line that concerns them, via `logger.child({ job, partition })`.
 */
export function createLogger(name: string, options: { logsDir?: string; level?: string; echo?: boolean } = {}): Logger {
  const level = options.level ?? process.env.SWM_LOG_LEVEL ?? 'info';
  const streams: StreamEntry[] = [];
  if (options.logsDir) {
    mkdirSync(options.logsDir, { recursive: true, mode: 0o700 });
    streams.push({ level: level as Level, stream: destination({ dest: join(options.logsDir, `${name}.log`), mkdir: true, sync: false }) });
  }
  if (options.echo || !options.logsDir) streams.push({ level: level as Level, stream: destination(2) });
  return pino({ name, level, redact: { paths: REDACTED_KEYS, censor: '[redacted]' } }, multistream(streams));
}
