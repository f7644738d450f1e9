import { InvalidArgumentError, type Command } from 'commander';
import { withCore } from '../connect.js';
import { CliError, ExitCode } from '../exit-codes.js';
import { note } from '../format.js';
import { bundleOptionsOf, examples } from '../global-options.js';
import { openInBrowser } from '../dashboard/open-browser.js';
import { readOnly } from '../dashboard/read-only-core.js';
import { DASHBOARD_HOST, DashboardServer } from '../dashboard/server.js';

interface DashboardOptions {
  port?: number;
  open?: boolean;
  all?: boolean;
}

function localPort(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || n > 65535) throw new InvalidArgumentError('expected a TCP port, 0 (any free port) to 65535');
  return n;
}

/** Resolves on Ctrl-C or SIGTERM. */
const untilStopped = (): Promise<void> =>
  new Promise((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });

export function registerDashboard(program: Command): void {
  program
    .command('dashboard')
    .description('serve a read-only web dashboard of your jobs, partitions and gates on this machine')
    .option('-p, --port <port>', 'the local port to listen on (default 0: any free port)', localPort)
    .option('--open', 'open it in your browser as well')
    .option('-a, --all', "everyone's jobs (admins only)")
    .addHelpText(
      'after',
      `
The dashboard listens on ${DASHBOARD_HOST} only and prints its address, which carries a random access token
(as Jupyter does): open that address; the browser keeps the token in a cookie for this dashboard only.
Requests without it, and requests naming another host (DNS rebinding), are refused. Nothing to import into
the browser: the dashboard reaches the core with your own certificate, so it shows exactly what swm shows
you (admins: with --all, everyone's jobs). It only reads: no button submits, cancels or deletes.

It shows your jobs (filter, state, details, remote, nodes, an estimated cost, age) with the live output of
the one you click, partitions, gates and their health, and the queue depth and throughput of the last hour.
It runs until Ctrl-C; a lost connection to the core is re-established by itself.
${examples('$ swm dashboard', '$ swm dashboard --port 8765 --open', '$ swm dashboard --all   # admins: everyone\'s jobs')}`,
    )
    .action(async (opts: DashboardOptions, command: Command) => {
      await withCore(
        bundleOptionsOf(command),
        async (client, bundle) => {
          const core = readOnly(client);
          const hello = await core.call('hello');
          if (opts.all && hello.role !== 'admin') throw new CliError(`--all: only admins see everyone's jobs (you are ${hello.user}, ${hello.role})`, ExitCode.Forbidden);
          const dashboard = await DashboardServer.start({ core, coreUrl: bundle.coreUrl, port: opts.port ?? 0, all: !!opts.all });
          // The address alone on stdout, for scripts; the explanation on stderr.
          process.stdout.write(`${dashboard.url}\n`);
          note(`dashboard of ${opts.all ? "everyone's" : `${hello.user}'s`} jobs on http://${DASHBOARD_HOST}:${dashboard.port}/: open the address above (it holds your access token); Ctrl-C to stop`);
          let removeOpener: (() => void) | null = null;
          if (opts.open)
            removeOpener = await openInBrowser(dashboard.url).catch((error: Error) => {
              note(`cannot open a browser (${error.message}): open the address yourself`);
              return null;
            });
          const lost = () => note(`lost the connection to the core at ${bundle.coreUrl}; reconnecting (the page says so meanwhile)`);
          const restored = () => note('connection to the core restored');
          client.on('disconnected', lost);
          client.on('connected', restored);
          try {
            await untilStopped();
          } finally {
            client.off('disconnected', lost);
            client.off('connected', restored);
            await dashboard.stop();
            removeOpener?.();
          }
        },
        { reconnect: true },
      );
    });
}
