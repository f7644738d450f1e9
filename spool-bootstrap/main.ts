#!/usr/bin/env node
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { isIP } from 'node:net';
import { defaultRemote, type CoreConfig } from './config.js';
import {
  UsageError,
  answersFromEnv,
  askForMissing,
  completeWithDefaults,
  defaultAnswers,
  mergeAnswers,
  parseName,
  parsePort,
  parseUid,
  parseUser,
  type KnownAnswers,
  type SetupAnswers,
} from './prompt.js';
import { SpoolExistsError, coreUrlOf, createSpool, spoolExists, type CreatedSpool } from './setup.js';

/** Exit codes: what a script calling swm-setup can rely on. */
const EXIT_OK = 0;
const EXIT_REFUSED = 1;
const EXIT_USAGE = 2;

interface Flags {
  spool?: string;
  home?: string;
  user?: string;
  uid?: string;
  port?: string;
  host?: string;
  listen?: string;
  location?: string;
  yes?: boolean;
  force?: boolean;
  coreUrl?: string;
  nextSteps: boolean;
}

/** A wss:// URL for the admin's bundle. */
function parseCoreUrl(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new InvalidArgumentError(`"${value}" is not a URL (e.g. wss://localhost:9443)`);
  }
  if (url.protocol !== 'wss:') throw new InvalidArgumentError(`"${value}": the core speaks wss:// (TLS) only`);
  return value.replace(/\/$/, '');
}

/** An IP address to listen on (a host name would resolve to one address among several, silently). */
function parseListenAddress(value: string): string {
  if (isIP(value) === 0) throw new InvalidArgumentError(`"${value}" is not an IP address (e.g. 127.0.0.1, 0.0.0.0, ::)`);
  return value;
}

const program = new Command('swm-setup')
  .description(
    "Create a Sky Port spool (certificate authority, core and gate certificates, configuration) and the first admin's certificate bundle.",
  )
  .option('--spool <dir>', 'the spool to create (env SWM_SPOOL, default ~/.swm/spool)')
  .option('--home <dir>', "where the admin's bundle goes (env SWM_HOME, default ~/.swm)")
  .option('--user <name>', 'the first admin (env SKYPORT_USER, default $USER)')
  .option('--uid <n>', 'owner of the bundle files (env SKYPORT_USER_ID, default the current uid)')
  .option('--port <n>', 'port swm-core listens on for terminals; the gates take the free ports after it (default: 8443, or the first free block of ports after it)')
  .option('--host <name>', 'host name terminals use to reach the core (default localhost)')
  .option('--listen <address>', 'the address swm-core listens on for terminals: 127.0.0.1 for this machine only, 0.0.0.0 (the default) or :: for every interface, or one interface\'s address', parseListenAddress)
  .option('--core-url <url>', "the core's address in the admin's bundle, when terminals reach it elsewhere than where it listens (a container's published port; env SKYPORT_CORE_URL; default wss://HOST:PORT)", parseCoreUrl)
  .option('--no-next-steps', 'do not print the next steps (a wrapper, such as the release container, prints its own)')
  .option('--location <name>', 'Azure region of the azure remote (env SKYPORT_REMOTE_LOCATION, default eastus2)')
  .option('--yes', 'ask nothing: what is not given takes its default')
  .option('--force', 'recreate an existing spool, removing its content (env SKYPORT_RECREATE=yes)')
  .addHelpText(
    'after',
    '\nValues come from the environment, then the flags; on a terminal, swm-setup asks for the rest.\n' +
      'Exit codes: 0 created, 1 refused (a spool exists) or failed, 2 usage error.\n\n' +
      'Example:\n  swm-setup --user alice --yes\n  swm-core &      # the core, and the gates it manages\n  swm status',
  )
  .exitOverride()
  .configureOutput({ outputError: (text, write) => write(text) });

const answersFromFlags = (flags: Flags): KnownAnswers => ({
  spoolDir: flags.spool,
  homeDir: flags.home,
  user: flags.user === undefined ? undefined : parseUser(flags.user),
  uid: flags.uid === undefined ? undefined : parseUid(flags.uid),
  port: flags.port === undefined ? undefined : parsePort(flags.port),
  host: flags.host === undefined ? undefined : parseName(flags.host),
  location: flags.location === undefined ? undefined : parseName(flags.location),
  force: flags.force ? true : undefined,
});

function describe(created: CreatedSpool, answers: SetupAnswers, nextSteps = true): string {
  const { spool, home, config } = created;
  const remotes = config.remotes.map((r) => {
    const gate = config.gates.find((g) => g.name === r.gate);
    const notes = [r === defaultRemote(config) ? 'default' : '', r.location ?? '', gate && !gate.managed ? 'gate not started until configured' : '']
      .filter(Boolean)
      .join(', ');
    return `${r.name}${notes ? ` (${notes})` : ''}`;
  });
  const summary = [
    `Created the Sky Port spool in ${spool.root}`,
    `  configuration   ${spool.config} (core id ${config.core.id})`,
    `  authority       ${spool.ca.cert}`,
    `  certificates    core; gates ${config.gates.map((g) => g.name).join(', ')}; admin ${answers.user}`,
    `  remotes         ${remotes.join('; ')}`,
    `  ports           core ${config.core.port}; gates ${config.gates.map((g) => `${g.name} ${g.port}`).join(', ')}`,
    `  admin bundle    ${home.root} (cert.pem, key.pem, ca.pem, config.json: ${created.coreUrl})`,
    '',
  ];
  const next = [
    'Next steps:',
    `  1. start the core:     SWM_SPOOL=${spool.root} swm-core`,
    `  2. check it answers:   SWM_HOME=${home.root} swm status`,
    '  To run jobs on Azure, configure its credentials and mark the azure gate managed: see gates/azure/README.md',
    '',
  ];
  return [...summary, ...(nextSteps ? next : [])].join('\n');
}

async function main(argv: string[]): Promise<number> {
  let flags: Flags;
  let known: KnownAnswers;
  try {
    flags = program.parse(argv).opts<Flags>();
    known = mergeAnswers(answersFromEnv(process.env), answersFromFlags(flags));
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    if (error instanceof UsageError) {
      process.stderr.write(`swm-setup: ${error.message}\n`);
      return EXIT_USAGE;
    }
    throw error;
  }

  const defaults = defaultAnswers(process.env);
  const existing = spoolExists(known.spoolDir ?? defaults.spoolDir);
  let answers: SetupAnswers;
  try {
    answers =
      process.stdin.isTTY && !flags.yes
        ? await askForMissing(known, defaults, existing, { input: process.stdin, output: process.stdout })
        : completeWithDefaults(known, defaults);
  } catch (error) {
    process.stderr.write(`swm-setup: ${(error as Error).message}\n`);
    return EXIT_USAGE;
  }
  if (existing && !answers.force) {
    process.stderr.write(`swm-setup: a spool already exists in ${answers.spoolDir}; nothing was changed (recreate it with --force)\n`);
    return EXIT_REFUSED;
  }

  let coreUrl: string | undefined;
  try {
    coreUrl = flags.coreUrl ?? (process.env.SKYPORT_CORE_URL ? parseCoreUrl(process.env.SKYPORT_CORE_URL) : undefined);
  } catch (error) {
    process.stderr.write(`swm-setup: SKYPORT_CORE_URL ${(error as Error).message}\n`);
    return EXIT_USAGE;
  }
  try {
    const created = await createSpool({
      spoolDir: answers.spoolDir,
      homeDir: answers.homeDir,
      user: answers.user,
      uid: answers.uid,
      host: answers.host,
      // Only a port the user chose is kept as it is; otherwise setup finds a block of free ones.
      port: known.port,
      remoteLocation: answers.location,
      force: answers.force,
      ...(coreUrl ? { coreUrl } : {}),
      ...(flags.listen ? { configure: (config: CoreConfig) => void (config.core.listen = flags.listen!) } : {}),
    });
    process.stdout.write(describe(created, answers, flags.nextSteps));
    return EXIT_OK;
  } catch (error) {
    const message = error instanceof SpoolExistsError ? error.message : `cannot create the spool: ${(error as Error).message}`;
    process.stderr.write(`swm-setup: ${message}\n`);
    return EXIT_REFUSED;
  }
}

main(process.argv).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`swm-setup: ${(error as Error).stack ?? String(error)}\n`);
    process.exitCode = EXIT_REFUSED;
  },
);
