import type { TerminalClient } from '../terminal-protocol/client.js';
import { ErrorCode, RpcError } from '../terminal-protocol/errors.js';
import type { CoreBundle } from './connect.js';
import { formatBytes, note } from './format.js';
import type { LocalInput } from './local-inputs.js';
import { PendingUploads, uploadKey } from './pending-uploads.js';
import { uploadInputs, type UploadResult } from './upload.js';

export interface Submission {
  script: string;
  name?: string;
  inputs: readonly LocalInput[];
  progress: boolean;
  /** Say on stderr that the job exists before its upload (not with --json: the document says it all). */
  announce?: boolean;
}

export interface Submitted {
  id: string;
  warnings: string[];
  /** True when this run continued the upload of a job an interrupted run had submitted. */
  resumed: boolean;
  upload: UploadResult | null;
  /** An array's tasks (the id is then the array's). */
  tasks?: string[];
}

/** A job an earlier run submitted with the same script and inputs, if the core still awaits its inputs. */
async function resumableJob(core: TerminalClient, pending: PendingUploads, key: string, inputs: readonly LocalInput[]): Promise<string | null> {
  const id = pending.recall(key);
  if (!id) return null;
  try {
    const status = await core.call('job.input.status', { id });
    const expected = new Map(inputs.map((i) => [i.path, i.size]));
    const same = status.files.length === inputs.length && status.files.every((f) => expected.get(f.path) === f.size);
    if (same) return id;
  } catch (error) {
    if (!(error instanceof RpcError) || (error.code !== ErrorCode.NotFound && error.code !== ErrorCode.Conflict)) throw error;
  }
  pending.forget(key);
  return null;
}

/**
 * job.submit with the inputs declared (size, SHA-256), then job.input.status / job.input.write to upload
 * them and job.input.commit to release the job to the scheduler. Until the commit, the job is remembered
 * so that the same command run again resumes the upload rather than submitting a second job.
 */
export async function submitJob(core: TerminalClient, bundle: CoreBundle, submission: Submission): Promise<Submitted> {
  const { script, name, inputs } = submission;
  const pending = new PendingUploads(bundle.home);
  const key = uploadKey({ coreUrl: bundle.coreUrl, script, name, inputs });
  let id = inputs.length > 0 ? await resumableJob(core, pending, key, inputs) : null;
  const resumed = id !== null;
  let warnings: string[] = [];
  let awaitingInputs = resumed;
  let tasks: string[] | undefined;
  if (id) note(`resuming the upload of job ${id}, submitted earlier with the same script and inputs`);
  else {
    const answer = await core.call('job.submit', {
      script,
      ...(name ? { name } : {}),
      ...(inputs.length ? { inputs: inputs.map(({ path, size, sha256 }) => ({ path, size, sha256 })) } : {}),
    });
    id = answer.id;
    warnings = answer.warnings;
    awaitingInputs = answer.awaitingInputs;
    tasks = answer.tasks;
    if (awaitingInputs && inputs.length > 0) pending.remember(key, id);
  }
  if (!awaitingInputs) return { id, warnings, resumed, upload: null, ...(tasks ? { tasks } : {}) };
  const bytes = inputs.reduce((n, i) => n + i.size, 0);
  // Ctrl-C during the upload: the job stays, waiting for the rest; say so, and how to go on or give up.
  const interrupted = () => {
    note(
      `interrupted: job ${id} keeps waiting for its input files (the core cancels it if they never all arrive: a day by default);\n` +
        `  resume the upload: run the same command again\n  or give the job up:  swm cancel ${id}`,
    );
    process.exit(130);
  };
  // Listening before the job id is printed: a Ctrl-C at the sight of it must find the handler.
  process.once('SIGINT', interrupted);
  if (!resumed && submission.announce) note(`job ${id} submitted; uploading ${inputs.length} input file${inputs.length === 1 ? '' : 's'} (${formatBytes(bytes)})`);
  const upload = await uploadInputs(core, id, inputs, { progress: submission.progress })
    .catch((error: unknown) => {
      note(`the upload of job ${id} stopped; run the same command again to resume it`);
      throw error;
    })
    .finally(() => process.off('SIGINT', interrupted));
  try {
    await core.call('job.input.commit', { id });
  } catch (error) {
    // A commit the core refuses for good (a checksum mismatch, a job canceled meanwhile) is not resumable.
    if (error instanceof RpcError && error.code !== ErrorCode.Unavailable && error.code !== ErrorCode.Timeout) pending.forget(key);
    throw error;
  }
  pending.forget(key);
  return { id, warnings, resumed, upload };
}
