#!/usr/bin/env node
import { Command } from 'commander';
import type { Logger } from 'pino';
import { ConfigError } from '../spool-bootstrap/config.js';
import { defaultSpoolDir } from '../spool-bootstrap/paths.js';
import { restRoutes } from './rest/rest-api.js';
import { startCore } from './system.js';
import { VERSION } from './version.js';

const program = new Command('swm-core')
  .description('Sky Port workload manager daemon: runs jobs on cloud partitions from submit to teardown.')
  .version(VERSION)
  .option('--spool <dir>', 'spool directory (default: $SWM_SPOOL or ~/.swm/spool)')
  .option('--pretty', 'also print the log on stderr for a person to read (the spool keeps JSON lines in logs/core.log)')
  .option('--stop-gates-on-exit', 'also stop managed gates on SIGTERM/SIGINT (by default they keep running and are adopted at the next start)')
  .addHelpText('after', '\nExample:\n  swm-setup --yes && swm-core\n');

const options = program.parse().opts<{ spool?: string; stopGatesOnExit?: boolean; pretty?: boolean }>();

/** The exit status after an error nothing handled (EX_SOFTWARE). */
const EXIT_INTERNAL_ERROR = 70;
/** How long the last words may take to reach the log before the core exits anyway. */
const LAST_WORDS_MS = 1_000;
let logger: Logger | null = null;
let dying = false;

/**
 * The last resort: an exception or a rejection that nothing handled leaves the core in a state nobody knows,
 * so it says what happened (stderr and its log) and exits non-zero instead of running on. Its supervisor (the
 * release container, systemd) starts it again; the store and the nodes' own files make that safe.
 */
const lastResort = (what: string) => (error: unknown) => {
  if (dying) return;
  dying = true;
  const text = error instanceof Error ? (error.stack ?? error.message) : String(error);
  process.stderr.write(`swm-core: ${what}, exiting: ${text}\n`);
  const exit = () => process.exit(EXIT_INTERNAL_ERROR);
  if (!logger) exit();
  setTimeout(exit, LAST_WORDS_MS);
  try {
    logger!.fatal({ err: error }, `${what}: exiting`);
    logger!.flush(exit);
  } catch {
    exit();
  }
};
process.on('uncaughtException', lastResort('uncaught exception'));
process.on('unhandledRejection', lastResort('unhandled rejection'));

try {
  const spoolDir = options.spool ?? defaultSpoolDir();
  const core = await startCore({ spoolDir, httpRoutes: restRoutes, ...(options.pretty ? { pretty: true } : {}) });
  logger = core.services.logger;
  process.stderr.write(`swm-core ${VERSION} listening on port ${core.port} (spool ${core.services.spool.root})\n`);
  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`swm-core: ${signal}, stopping\n`);
    await core.stop({ stopGates: options.stopGatesOnExit });
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
} catch (error) {
  if (error instanceof ConfigError) process.stderr.write(`swm-core: ${error.message}\n`);
  else process.stderr.write(`swm-core: cannot start: ${(error as Error).message}\n`);
  process.exit(1);
}
