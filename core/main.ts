#!/usr/bin/env node
import { Command } from 'commander';
import { ConfigError } from '../spool-bootstrap/config.js';
import { defaultSpoolDir } from '../spool-bootstrap/paths.js';
import { restRoutes } from './rest/rest-api.js';
import { startCore } from './system.js';
import { VERSION } from './version.js';

const program = new Command('swm-core')
  .description('Sky Port workload manager daemon: runs jobs on cloud partitions from submit to teardown.')
  .version(VERSION)
  .option('--spool <dir>', 'spool directory (default: $SWM_SPOOL or ~/.swm/spool)')
  .option('--stop-gates-on-exit', 'also stop managed gates on SIGTERM/SIGINT (by default they keep running and are adopted at the next start)')
  .addHelpText('after', '\nExample:\n  swm-setup --yes && swm-core\n');

const options = program.parse().opts<{ spool?: string; stopGatesOnExit?: boolean }>();

try {
  const core = await startCore({ spoolDir: options.spool ?? defaultSpoolDir(), httpRoutes: restRoutes });
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
