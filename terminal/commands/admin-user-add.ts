import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { homePaths } from '../../spool-bootstrap/paths.js';
import { displayPath, withCore } from '../connect.js';
import { CliError, usageError } from '../exit-codes.js';
import { printResult } from '../format.js';
import { bundleOptionsOf, examples } from '../global-options.js';

interface AddOptions {
  admin?: boolean;
  monitor?: boolean;
  out: string;
  force?: boolean;
  json?: boolean;
}

export function registerAdminUserAdd(user: Command): void {
  user
    .command('add')
    .description("issue a certificate bundle for a new user (or admin) and write it to a directory")
    .argument('<name>', 'the user name (letters, digits, _ . -)')
    .requiredOption('-o, --out <dir>', 'directory to write the bundle to (the new user\'s SWM_HOME)')
    .option('--admin', 'make the user an admin')
    .option('--monitor', 'a certificate for a metrics scraper (Prometheus): it may read GET /metrics and nothing else')
    .option('--force', 'overwrite a bundle already in --out')
    .option('--json', 'print one JSON document (never the private key)')
    .addHelpText(
      'after',
      `
The bundle holds cert.pem, key.pem (mode 0600), ca.pem and config.json: the core's address, as your own
bundle names it.
Hand the directory to the user, who runs: SWM_HOME=<dir> swm status (or copies it to ~/.swm).
${examples('$ swm admin user add alice --out ./alice-bundle', '$ swm admin user add bob --admin --out /tmp/bob', '$ swm admin user add prometheus --monitor --out /etc/prometheus/skyport')}`,
    )
    .action(async (name: string, opts: AddOptions, command: Command) => {
      // Loaded here, not at start: it brings the PKI library, which no other command needs.
      const { USER_NAME_PATTERN, writeBundle } = await import('../../spool-bootstrap/users.js');
      if (!USER_NAME_PATTERN.test(name))
        throw usageError(`invalid user name "${name}": use letters, digits, "_", "." or "-", starting with a letter or "_"`);
      const paths = homePaths(resolve(opts.out));
      // Checked before asking the core: issuing a certificate nobody will receive is worse than none.
      if (!opts.force && [paths.cert, paths.key].some((p) => existsSync(p)))
        throw new CliError(`${displayPath(paths.root)} already holds a bundle; use --force to overwrite it`);
      await withCore(bundleOptionsOf(command), async (core, own) => {
        const answer = await core.call('admin.user.add', { name, ...(opts.admin ? { admin: true } : {}), ...(opts.monitor ? { monitor: true } : {}) });
        // The core as this terminal reaches it (a published port, a name the core does not know itself by).
        const issued = { ...answer, coreUrl: own.coreUrl };
        writeBundle(paths.root, issued);
        printResult(
          !!opts.json,
          { name: issued.name, role: issued.role, coreUrl: issued.coreUrl, out: paths.root, files: [paths.cert, paths.key, paths.ca, paths.config] },
          () => `issued a ${issued.role} certificate for ${issued.name} in ${displayPath(paths.root)}\n` +
            `the user runs: SWM_HOME=${displayPath(paths.root)} swm status\n`,
        );
      });
    });
}
