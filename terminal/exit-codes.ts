import { ErrorCode, RpcError } from '../terminal-protocol/errors.js';
import type { Job } from '../terminal-protocol/job.js';

/**
 * What `swm` exits with. Scripts switch on these, so a value never changes meaning.
 * `swm wait --exit-code` and `swm submit --wait` exit with the job's own status instead; see exitCodeForJob.
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
  /**
   * The job was stopped at its time limit (`#SWM duration`; reason TimeLimit). 193 is the first value above every
   * 128+N a signal can give (Linux signals go up to 64): no job killed by a signal, no shell's or GNU timeout's
   * own code (124-127), nor swm wait's --timeout (124) can be read as it. A job may still exit 193 itself.
   */
  TimeLimit: 193,
  /**
   * `swm exec` failed itself (the core unreachable, no such job, the job not running): as ssh, the one value
   * a remote command's own status is unlikely to take; every other status is the command's.
   */
  ExecFailure: 255,
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
 * killed it (as shells report), 130 when canceled, 193 when stopped at its time limit, 1 for an error with no exit code (an infrastructure
 * failure), 0 when finished. Null while the job has not ended. Codes outside 1..255 cannot be an exit
 * status and become 1.
 */
export function exitCodeForJob(job: Pick<Job, 'state' | 'exitcode' | 'signal' | 'reason'>): number | null {
  switch (job.state) {
    case 'F':
      return ExitCode.Ok;
    case 'C':
      return ExitCode.Canceled;
    case 'E':
      if (job.reason === 'TimeLimit') return ExitCode.TimeLimit;
      if (job.signal !== null && job.signal > 0 && job.signal < 128) return 128 + job.signal;
      if (job.exitcode !== null && job.exitcode > 0 && job.exitcode < 256) return job.exitcode;
      return ExitCode.Failure;
    default:
      return null;
  }
}

/**
 * The `Exit status` section of `swm wait --help` and `swm submit --help`. The scheme keeps a job's exit
 * status apart from swm's own: `swm wait` prints the job's status and exits 0 once the job has ended (as
 * `docker wait` does), so a non-zero exit always means swm failed; the job's status becomes swm's exit
 * code only when asked for (`swm wait --exit-code`, `swm submit --wait`).
 */
export const jobExitStatusHelp = `
Exit status:
  swm wait JOB               prints the job's exit status on stdout (how it ended on stderr) and exits 0
                             once the job has ended: a non-zero exit is always swm's own failure:
                             1 error, 2 usage, 3 no such job, 4 permission denied, 5 cannot reach the core,
                             124 --timeout elapsed before the job ended.
  swm wait --exit-code JOB   exit with the job's status instead (swm submit --wait does so too):
                             0 finished (F), N exit code N (E), 128+N killed by signal N, 130 canceled (C),
                             193 stopped at its time limit (E, reason TimeLimit: #SWM duration),
                             1 error without an exit code (an infrastructure failure). swm's own failures
                             keep their codes above and always print "swm: <message>" on stderr.`;
