import type { Job, JobState } from '../../terminal-protocol/job.js';
import type { InputFile } from '../../terminal-protocol/terminal-methods.js';
import type { Directives } from '../jobs/job-script.js';

/**
 * The step a job is at (DESIGN.md §7). Each is recorded before it is taken, so that a restarted core
 * resumes a job by performing its recorded step again; every step is idempotent.
 */
export type JobStep =
  | 'inputs' // waiting for the terminal to upload declared inputs
  | 'queue' // waiting for the scheduler
  | 'partition' // asking the gate for a partition and waiting until it is up
  | 'connect' // SSH to the nodes, verify host keys, detect the runtime
  | 'stage-in'
  | 'run'
  | 'stage-out'
  | 'teardown' // delete the partition; then the job takes `outcome`
  | 'done';

/** How a job ends, decided before teardown and applied after it. */
export interface Outcome {
  state: Extract<JobState, 'F' | 'E' | 'C' | 'Q'>;
  details: string;
}

export type Runtime = 'podman' | 'docker' | 'process';

export interface JobRecord {
  id: string;
  owner: string;
  name: string;
  state: JobState;
  stateDetails: string;
  step: JobStep;
  script: string;
  directives: Directives;
  inputs: InputFile[];
  priority: number;
  submitTime: string;
  startTime: string | null;
  endTime: string | null;
  exitcode: number | null;
  signal: number | null;
  remote: string | null;
  flavor: string | null;
  nodeNames: string[];
  nodeIps: string[];
  partitionName: string | null;
  partitionId: string | null;
  runtime: Runtime | null;
  outcome: Outcome | null;
  /** When the job's process started (epoch ms), for the time limit. */
  runStartedMs: number | null;
}

/** What a job holds before it first runs: a new job starts with it, a requeued one goes back to it. */
export const notYetRun = (): Pick<
  JobRecord,
  | 'startTime' | 'endTime' | 'exitcode' | 'signal' | 'remote' | 'flavor' | 'nodeNames' | 'nodeIps'
  | 'partitionName' | 'partitionId' | 'runtime' | 'outcome' | 'runStartedMs'
> => ({
  startTime: null,
  endTime: null,
  exitcode: null,
  signal: null,
  remote: null,
  flavor: null,
  nodeNames: [],
  nodeIps: [],
  partitionName: null,
  partitionId: null,
  runtime: null,
  outcome: null,
  runStartedMs: null,
});

/** The wire shape (field names of the original Sky Port REST API). */
export function toWireJob(job: JobRecord): Job {
  const d = job.directives;
  const request = [
    { name: 'node', count: d.nodes },
    ...(d.gpus ? [{ name: 'gpus', count: d.gpus }] : []),
    ...(d.flavor ? [{ name: 'flavor', count: 1 }] : []),
  ];
  return {
    id: job.id,
    name: job.name,
    owner: job.owner,
    state: job.state,
    state_details: job.stateDetails,
    submit_time: job.submitTime,
    start_time: job.startTime,
    end_time: job.endTime,
    duration: d.durationSec,
    exitcode: job.exitcode,
    signal: job.signal,
    node_names: job.nodeNames,
    node_ips: job.nodeIps,
    remote_id: job.remote,
    flavor_id: job.flavor,
    request,
    resources: job.remote ? [{ name: 'node', count: d.nodes }] : [],
    comment: d.comment ?? '',
    priority: job.priority,
    ports: d.ports.map((p) => `${p.port}/${p.protocol}/${p.direction}`),
  };
}
