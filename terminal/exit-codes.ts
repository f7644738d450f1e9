import { ErrorCode, RpcError } from '../terminal-protocol/errors.js';
import type { Job } from '../terminal-protocol/job.js';

/**
 * What `swm` exits with. Scripts switch on these, so a value never changes meaning.
 * `swm wait` (and `swm submit --wait`) exit with the job's own code instead; see exitCodeForJob.
 */
export const ExitCode = {
  Ok: 0,
  /** The core reported an error, or something failed on this machine. */
  Failure: 1,
  /** The command line is wrong (unknown option, malformed job id, bad value). */
  Usage: 2,
  /** No such job, user or file (or it belongs to someone else). */
  NotFound: 3,
  /** Your certificate's role may not do this. */
  Forbidden: 4,
  /** The core cannot be reached, or the connection to it was lost. */
  Unreachable: 5,
  /** `swm wait --timeout` elapsed before the job ended (the value GNU timeout uses). */
  WaitTimeout: 124,
  /** The job was canceled (the value shells use for an interrupted command). */
  Canceled: 130,
} as const;

/** An error `swm` reports itself: its message goes to stderr as `swm: <message>`, the process exits with its code. */
export class CliError extends Error {
  override name = 'CliError';
  constructor(
    message: string,
    readonly exitCode: number = ExitCode.Failure,
  ) {
    super(message);
  }
}

export const usageError = (message: string): CliError => new CliError(message, ExitCode.Usage);

/** The exit code for an error the core returned. */
export function exitCodeForRpcError(code: number): number {
  switch (code) {
    case ErrorCode.NotFound:
      return ExitCode.NotFound;
    case ErrorCode.Forbidden:
      return ExitCode.Forbidden;
    case ErrorCode.InvalidParams:
      return ExitCode.Usage;
    default:
      return ExitCode.Failure;
  }
}

/** The exit code for anything a command throws. */
export function exitCodeForError(error: unknown): number {
  if (error instanceof CliError) return error.exitCode;
  if (error instanceof RpcError) return exitCodeForRpcError(error.code);
  return ExitCode.Failure;
}

/**
 * The exit code of `swm wait` for a job: the job's own exit code when it ran to an end, 128+N when signal N
 * killed it (as shells report), 130 when canceled, 1 for an error with no exit code (an infrastructure
 * failure), 0 when finished. Null while the job has not ended. Codes outside 1..255 cannot be an exit
 * status and become 1.
 */
export function exitCodeForJob(job: Pick<Job, 'state' | 'exitcode' | 'signal'>): number | null {
  switch (job.state) {
    case 'F':
      return ExitCode.Ok;
    case 'C':
      return ExitCode.Canceled;
    case 'E':
      if (job.signal !== null && job.signal > 0 && job.signal < 128) return 128 + job.signal;
      if (job.exitcode !== null && job.exitcode > 0 && job.exitcode < 256) return job.exitcode;
      return ExitCode.Failure;
    default:
      return null;
  }
}

/** The `Exit status` section of `swm wait --help` and `swm submit --help`. */
export const jobExitStatusHelp = `
Exit status (of swm wait, and of swm submit --wait):
  0        the job finished (state F)
  N        the job ended in error (state E) with exit code N
  128+N    the job was killed by signal N
  130      the job was canceled (state C)
  1        the job ended in error without an exit code (an infrastructure failure)
  124      --timeout elapsed before the job ended
  3, 4, 5  no such job, permission denied, cannot reach the core (with a message on stderr)`;
