import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { multistream, pino, symbols, type Level, type Logger, type StreamEntry } from 'pino';
import { PinoPretty } from 'pino-pretty';
import { LogDestination } from './log-destination.js';

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

/** The destination of record of each logger's stream (its file, else stderr): what `logHealth` reports. */
const recordOf = new WeakMap<object, LogDestination>();

/**
 * A pino logger writing JSON lines to `<logsDir>/<name>.log` (and to stderr when `echo` is set).
 * Job id and partition go on every line that concerns them, via `logger.child({ job, partition })`.
 * Logging never blocks and never stops the process: lines that cannot be written (a full disk) are dropped
 * and counted (`logHealth`), and writing resumes by itself (log-destination.ts).
 */
/**
 * What a person reads on the terminal (`swm-core --pretty`): time, level, the job and partition first, the
 * message, then the other fields. The log file keeps its JSON lines.
 */
const prettyStderr = () =>
  PinoPretty({
    destination: 2,
    sync: true,
    colorize: process.stderr.isTTY,
    translateTime: 'SYS:HH:MM:ss.l',
    ignore: 'pid,hostname,name,job,partition',
    messageFormat: '{if job}job {job} {end}{if partition}[{partition}] {end}{msg}',
  });

export function createLogger(name: string, options: { logsDir?: string; level?: string; echo?: boolean; pretty?: boolean } = {}): Logger {
  const level = options.level ?? process.env.SWM_LOG_LEVEL ?? 'info';
  const destinations: LogDestination[] = [];
  if (options.logsDir) {
    mkdirSync(options.logsDir, { recursive: true, mode: 0o700 });
    destinations.push(new LogDestination({ path: join(options.logsDir, `${name}.log`) }, name));
  }
  if (!options.pretty && (options.echo || !options.logsDir)) destinations.push(new LogDestination({ fd: 2 }, name));
  const entries = destinations.map((stream): StreamEntry => ({ level: level as Level, stream }));
  if (options.pretty) entries.push({ level: level as Level, stream: prettyStderr() });
  const streams = multistream(entries);
  // pino's multistream has no flush: without one, `logger.flush(cb)` would call back before anything is written.
  Object.assign(streams, {
    flush: (cb?: (error?: Error) => void) => {
      for (const destination of destinations) destination.flushSync();
      cb?.();
    },
  });
  recordOf.set(streams, destinations[0]!);
  return pino({ name, level, redact: { paths: REDACTED_KEYS, censor: '[redacted]' } }, streams);
}

/** How a logger made by `createLogger` (or a child of it) is doing: lines dropped since the process started. */
export function logHealth(logger: Logger): { droppedLines: number } {
  const stream = (logger as unknown as Record<symbol, object | undefined>)[symbols.streamSym];
  return { droppedLines: (stream && recordOf.get(stream)?.droppedLines) ?? 0 };
}
