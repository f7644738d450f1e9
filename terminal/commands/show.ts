import type { Command } from 'commander';
import { withCore } from '../connect.js';
import { describeJob, formatTime, printResult, renderPairs, renderTable } from '../format.js';
import { bundleOptionsOf, examples } from '../global-options.js';
import { JOB_ARGUMENT, resolveJob } from '../job-reference.js';

type JobEvent = { at: string; step: string; state: string; details: string };

/** The timeline of `swm show`: each change of the job's step or state, with its time. */
const timeline = (events: readonly JobEvent[]): string =>
  renderTable(
    [
      { header: 'TIME', value: (e: JobEvent) => formatTime(e.at) },
      { header: 'ST', value: (e: JobEvent) => e.state },
      { header: 'STEP', value: (e: JobEvent) => e.step },
      { header: 'DETAILS', value: (e: JobEvent) => e.details },
    ],
    events,
  );

export function registerShow(program: Command): void {
  program
    .command('show')
    .description('show every detail of one job, why it waits, and the timeline of its steps')
    .argument('<job>', JOB_ARGUMENT)
    .option('--json', 'print the job as one JSON document (the fields of the Sky Port REST API, and its timeline as "events")')
    .addHelpText('after', examples('$ swm show 3f2b8c1e', '$ swm show train', '$ swm show "$id" --json | jq -r .state'))
    .action(async (idText: string, opts: { json?: boolean }, command: Command) => {
      await withCore(bundleOptionsOf(command), async (core) => {
        const id = await resolveJob(core, idText);
        const job = await core.call('job.get', { id });
        const { events } = await core.call('job.history', { id });
        printResult(!!opts.json, { ...job, events }, () => `${renderPairs(describeJob(job))}\n${events.length ? timeline(events) : ''}`);
      });
    });
}
