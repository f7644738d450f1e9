import type { Command } from 'commander';
import { withCore } from '../connect.js';
import { printResult } from '../format.js';
import { bundleOptionsOf, examples } from '../global-options.js';

export function registerAdminUserRevoke(user: Command): void {
  user
    .command('revoke')
    .description("revoke every certificate of a user; their open connections are closed")
    .argument('<name>', 'the user name')
    .option('--json', 'print one JSON document')
    .addHelpText('after', examples('$ swm admin user revoke alice'))
    .action(async (name: string, opts: { json?: boolean }, command: Command) => {
      await withCore(bundleOptionsOf(command), async (core) => {
        const revoked = await core.call('admin.user.revoke', { name });
        const n = revoked.serials.length;
        printResult(!!opts.json, revoked, () =>
          n === 0
            ? `${revoked.name} had no certificate left to revoke\n`
            : `revoked ${n} certificate${n === 1 ? '' : 's'} of ${revoked.name}: ${revoked.serials.join(', ')}\n`,
        );
      });
    });
}
