import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { writeFileAtomic } from '../../spool-bootstrap/files.js';
import { homePaths } from '../../spool-bootstrap/paths.js';
import { displayPath, withCore } from '../connect.js';
import { CliError } from '../exit-codes.js';
import { printResult } from '../format.js';
import { bundleOptionsOf, examples } from '../global-options.js';

interface AddOptions {
  admin?: boolean;
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
    .option('--force', 'overwrite a bundle already in --out')
    .option('--json', 'print one JSON document (never the private key)')
    .addHelpText(
      'after',
      `
The bundle holds cert.pem, key.pem (mode 0600), ca.pem and config.json (the core's address).
Hand the directory to the user, who runs: SWM_HOME=<dir> swm status (or copies it to ~/.swm).
${examples('$ swm admin user add alice --out ./alice-bundle', '$ swm admin user add bob --admin --out /tmp/bob')}`,
    )
    .action(async (name: string, opts: AddOptions, command: Command) => {
      const paths = homePaths(resolve(opts.out));
      // Checked before asking the core: issuing a certificate nobody will receive is worse than none.
      if (!opts.force && [paths.cert, paths.key].some((p) => existsSync(p)))
        throw new CliError(`${displayPath(paths.root)} already holds a bundle; use --force to overwrite it`);
      await withCore(bundleOptionsOf(command), async (core) => {
        const issued = await core.call('admin.user.add', { name, ...(opts.admin ? { admin: true } : {}) });
        writeFileAtomic(paths.key, issued.keyPem, 0o600);
        writeFileAtomic(paths.cert, issued.certPem, 0o644);
        writeFileAtomic(paths.ca, issued.caPem, 0o644);
        writeFileAtomic(paths.config, `${JSON.stringify({ coreUrl: issued.coreUrl, user: issued.name }, null, 2)}\n`, 0o644);
        printResult(
          !!opts.json,
          { name: issued.name, role: issued.role, coreUrl: issued.coreUrl, out: paths.root, files: [paths.cert, paths.key, paths.ca, paths.config] },
          () => `issued a ${issued.role} certificate for ${issued.name} in ${displayPath(paths.root)}\n` +
            `the user runs: SWM_HOME=${displayPath(paths.root)} swm status\n`,
        );
      });
    });
}
