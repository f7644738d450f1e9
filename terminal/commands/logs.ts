import type { Command } from 'commander';
import { withCore } from '../connect.js';
import { printJson } from '../format.js';
import { bundleOptionsOf, examples } from '../global-options.js';
import { nonNegativeInteger, parseSince } from '../job-arguments.js';
import { note } from '../format.js';
import { JOB_ARGUMENT, resolveJob } from '../job-reference.js';
import { followJob } from '../job-follow.js';
import { LogCursor, lastLines, type LogSink, type LogStream } from '../log-stream.js';

interface LogsOptions {
  stderr?: boolean;
  follow?: boolean;
  tail?: number;
  since?: string;
  json?: boolean;
}

/** Collects a log in memory (for --tail and --json), as bytes so that no character is cut in two. */
class LogBuffer implements LogSink {
  private readonly chunks: Buffer[] = [];
  write(data: Buffer): void {
    this.chunks.push(data);
  }
  text(): string {
    return Buffer.concat(this.chunks).toString('utf8');
  }
}

/** `-f --json`: one JSON line per piece of output as it arrives. */
const jsonLines = (id: string, stream: LogStream): LogSink => ({
  write: (data: Buffer) => process.stdout.write(`${JSON.stringify({ id, stream, data: data.toString('utf8') })}\n`),
});

export function registerLogs(program: Command): void {
  program
    .command('logs')
    .description("print a job's output (stdout, or stderr with --stderr)")
    .argument('<job>', JOB_ARGUMENT)
    .option('-e, --stderr', 'the standard error stream instead of standard output')
    .option('-f, --follow', 'keep printing as the job writes, until it ends')
    .option('-n, --tail <lines>', 'only the last N lines written so far (with -f: then what follows)', nonNegativeInteger)
    .option('--since <time>', 'only what was written since then: a time ago (90m, 12h, 7d) or a date and time (2026-05-01T08:00)', (v: string) => parseSince(v))
    .option('--json', 'print one JSON document {id, stream, data, final}; with -f, one JSON line {id, stream, data} per piece of output')
    .addHelpText(
      'after',
      `
Output carries no time stamps of its own: for --since, the node notes how far each log has grown every
5 seconds while the job runs, and the output starts at the last note before that time (so it may begin up
to 5 seconds early, never late). --since and --tail together: the last N lines of what was written since.
${examples(
  '$ swm logs 3f2b8c1e',
  '$ swm logs -f train',
  '$ swm logs --tail 20 "$id"',
  '$ swm logs --since 10m -f train',
  '$ swm logs -f --tail 0 "$id"',
  '$ swm logs --stderr "$id" > errors.txt',
  '$ swm logs "$id" --json | jq -r .data',
)}`,
    )
    .action(async (jobText: string, opts: LogsOptions, command: Command) => {
      const stream: LogStream = opts.stderr ? 'stderr' : 'stdout';
      const json = !!opts.json;
      await withCore(
        bundleOptionsOf(command),
        async (core) => {
          const id = await resolveJob(core, jobText);
          // What exists now: straight to stdout, unless it must be cut (--tail) or wrapped (--json).
          const whole = opts.tail === undefined && !json;
          const buffer = new LogBuffer();
          let from = 0;
          if (opts.since !== undefined) {
            const position = await core.call('job.log.position', { id, stream, since: opts.since });
            if (position.precisionSec === null) note(`job ${id} kept no log clock (it ran before this version of Sky Port): printing all of its ${stream}`);
            from = position.offset;
          }
          const cursor = new LogCursor(stream, whole ? process.stdout : buffer, from);
          const final = await cursor.readAvailable(core, id);
          if (!whole) {
            const text = opts.tail === undefined ? buffer.text() : lastLines(buffer.text(), opts.tail);
            if (!json) process.stdout.write(text);
            else if (opts.follow) {
              if (text) jsonLines(id, stream).write(Buffer.from(text, 'utf8'));
            } else printJson({ id, stream, data: text, final });
          }
          if (opts.follow && !final)
            await followJob(core, id, { streams: { [stream]: json ? jsonLines(id, stream) : process.stdout }, from: { [stream]: cursor.next } });
        },
        { reconnect: !!opts.follow },
      );
    });
}
