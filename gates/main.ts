#!/usr/bin/env node
import { rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import type { Logger } from 'pino';
import { loadCoreConfig } from '../spool-bootstrap/config.js';
import { writeFileAtomic } from '../spool-bootstrap/files.js';
import { createLogger } from '../spool-bootstrap/log.js';
import { defaultSpoolDir, spoolPaths, type SpoolPaths } from '../spool-bootstrap/paths.js';
import type { Gate } from './gate.js';
import { GATE_KINDS, createGate, type GateKind } from './registry.js';
import { PRODUCT_VERSION, serveGate, type GateServer } from './server.js';
import { watchSpool } from './spool-watch.js';

/** Exit codes: 0 clean stop, 1 failure, 2 bad usage. */
const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;

/** A gate whose spool is gone exits within this long even if its last log lines cannot be written. */
const GONE_EXIT_MS = 5_000;

/** Where a running gate says who it is: `{"pid":..,"port":..}`, removed on a clean stop. */
const gatePidfile = (spool: SpoolPaths, name: string): string => join(spool.gateState(name), 'gate.pid');

interface Arguments {
  kind: GateKind;
  name: string;
  spool: string;
}

function parseArguments(argv: string[]): Arguments {
  const program = new Command('swm-gate')
    .description('Serve one Sky Port gate (a cloud kind) to swm-core over mutual TLS.')
    .version(PRODUCT_VERSION)
    .addOption(new Option('--kind <kind>', 'gate kind').choices(GATE_KINDS).makeOptionMandatory())
    .requiredOption('--name <name>', 'the gate\'s name in the spool configuration (gates[].name)')
    .option('--spool <dir>', 'spool directory ($SWM_SPOOL, else ~/.swm/spool)')
    .exitOverride()
    .configureOutput({ writeErr: (text) => process.stderr.write(text) });
  try {
    program.parse(argv);
  } catch (error) {
    if (error instanceof CommanderError) process.exit(error.exitCode === 0 ? 0 : EXIT_USAGE);
    throw error;
  }
  const options = program.opts<{ kind: GateKind; name: string; spool?: string }>();
  return { kind: options.kind, name: options.name, spool: resolve(options.spool ?? defaultSpoolDir()) };
}

/** Why the gate could not start, in words that say what to do (the core shows its last stderr line). */
function startFailure(error: unknown, gate: { name: string; host: string; port: number }, configPath: string): string {
  const code = (error as NodeJS.ErrnoException)?.code;
  if (code === 'EADDRINUSE') {
    return `cannot listen on ${gate.host}:${gate.port}: the port is in use (another spool's gate or another program); give gate "${gate.name}" a free port in ${configPath}`;
  }
  if (code === 'EACCES') return `cannot listen on ${gate.host}:${gate.port}: permission denied (a port below 1024 needs privileges)`;
  return (error as Error)?.message ?? String(error);
}

async function main(): Promise<void> {
  // The core starts gates detached and may go away: a closed pipe or terminal must not end the gate.
  process.stdout.on('error', () => undefined);
  process.stderr.on('error', () => undefined);
  process.on('SIGHUP', () => undefined);

  const args = parseArguments(process.argv);
  const spool = spoolPaths(args.spool);
  const config = loadCoreConfig(spool.config);
  const entry = config.gates.find((g) => g.name === args.name);
  if (!entry) throw new Error(`${spool.config} has no gate named "${args.name}"`);
  if (entry.kind !== args.kind) throw new Error(`gate "${args.name}" is of kind ${entry.kind} in ${spool.config}, not ${args.kind}`);

  const logger = createLogger(`gate-${args.name}`, { logsDir: spool.logsDir, level: config.core.logLevel });
  const pidfile = gatePidfile(spool, args.name);
  let gate: Gate | null = null;
  let server: GateServer | null = null;
  let stopping = false;

  const stop = async (reason: string, code: number): Promise<never> => {
    if (!stopping) {
      stopping = true;
      logger.info({ reason }, 'gate stopping');
      try {
        await server?.close();
        await gate?.close();
      } catch (error) {
        logger.error({ err: error }, 'gate did not stop cleanly');
        code = EXIT_FAILURE;
      }
      rmSync(pidfile, { force: true });
      logger.info({ code }, 'gate stopped');
      await new Promise<void>((done) => logger.flush(() => done()));
      process.exit(code);
    }
    return new Promise<never>(() => undefined);
  };
  process.on('SIGTERM', () => void stop('SIGTERM', 0));
  process.on('SIGINT', () => void stop('SIGINT', 0));
  process.on('uncaughtException', (error) => {
    logger.fatal({ err: error }, 'uncaught exception');
    void stop('uncaught exception', EXIT_FAILURE);
  });

  // Recorded before the gate restores its partitions (which takes a while): a core restarted meanwhile adopts
  // this process instead of launching a second gate that would act on the same state. gate.pid itself means
  // "listening", so the starting gate has a file of its own.
  const startingFile = join(spool.gateState(args.name), 'gate.starting');
  writeFileAtomic(startingFile, JSON.stringify({ pid: process.pid }) + '\n', 0o600);
  try {
    gate = await createGate(args.kind, { name: args.name, coreId: config.core.id, spool, options: entry.options, logger });
    server = await serveGate(gate, {
      spool,
      name: args.name,
      host: entry.host,
      port: entry.port,
      logger,
      maxMessageBytes: config.core.maxMessageBytes,
      limits: config.core,
    });
  } catch (error) {
    const reason = startFailure(error, entry, spool.config);
    logger.fatal({ err: error, reason }, 'gate failed to start');
    process.stderr.write(`swm-gate: ${reason}\n`);
    rmSync(startingFile, { force: true });
    await gate?.close().catch(() => undefined);
    await new Promise<void>((done) => logger.flush(() => done()));
    process.exit(EXIT_FAILURE);
  }
  writeFileAtomic(pidfile, JSON.stringify({ pid: process.pid, port: server.port }) + '\n', 0o600);
  rmSync(startingFile, { force: true });
  logger.info({ kind: args.kind, pid: process.pid, port: server.port }, 'gate ready');
  watchSpool(spool, (reason) => {
    if (stopping) return;
    stopping = true;
    logger.error({ reason }, `${reason}: the gate exits`);
    process.stderr.write(`swm-gate: ${reason}; exiting\n`);
    // No clean stop: closing the gate saves its state, which would bring a piece of the removed spool back.
    setTimeout(() => process.exit(EXIT_FAILURE), GONE_EXIT_MS);
    logger.flush(() => process.exit(EXIT_FAILURE));
  });
}

main().catch((error: unknown) => {
  process.stderr.write(`swm-gate: ${(error as Error)?.message ?? String(error)}\n`);
  process.exit(EXIT_FAILURE);
});
