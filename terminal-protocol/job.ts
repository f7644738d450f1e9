import { z } from 'zod';

/** Job states, single letters as in the original Sky Port. */
export const JobState = z.enum(['Q', 'W', 'T', 'R', 'F', 'E', 'C']);
export type JobState = z.infer<typeof JobState>;

export const jobStateNames: Record<JobState, string> = {
  Q: 'queued',
  W: 'waiting',
  T: 'transferring',
  R: 'running',
  F: 'finished',
  E: 'error',
  C: 'canceled',
};

export const finalStates: ReadonlySet<JobState> = new Set(['F', 'E', 'C']);
export const isFinal = (s: JobState): boolean => finalStates.has(s);

export const Resource = z.object({ name: z.string(), count: z.number() });
export type Resource = z.infer<typeof Resource>;

/**
 * A job as terminals see it. Field names are those of the original Sky Port REST API
 * (SKYPORT-REFERENCE.md) so that one shape serves both the WebSocket and the REST faces.
 */
export const Job = z.object({
  id: z.uuid(),
  name: z.string(),
  owner: z.string(),
  state: JobState,
  state_details: z.string(),
  submit_time: z.string(),
  start_time: z.string().nullable(),
  end_time: z.string().nullable(),
  /** Requested time limit in seconds (0 = none). */
  duration: z.number().int().nonnegative(),
  exitcode: z.number().int().nullable(),
  signal: z.number().int().nullable(),
  node_names: z.array(z.string()),
  node_ips: z.array(z.string()),
  remote_id: z.string().nullable(),
  flavor_id: z.string().nullable(),
  request: z.array(Resource),
  resources: z.array(Resource),
  comment: z.string(),
  priority: z.number().int(),
  ports: z.array(z.string()),
  /** `#SWM account` (absent from cores before it). */
  account: z.string().nullable().optional(),
  /** The array the job is a task of: the array's id, shared by its tasks (null: not a task). */
  array_id: z.string().nullable().optional(),
  /** The task's index in its array (its SWM_ARRAY_TASK_ID). */
  array_index: z.number().int().nullable().optional(),
  /** `#SWM depends` clauses, `afterok:ID[:ID...]`. */
  depends: z.array(z.string()).optional(),
  /**
   * Why, as a code: while queued, why the job waits (Slurm's REASON: `Priority`, `Resources`, `Dependency`,
   * `QuotaUser`, `Budget`, ...); once ended, the code of the end when it has one (`TimeLimit`, `Budget`,
   * `DependencyNeverSatisfied`).
   */
  reason: z.string().nullable().optional(),
  /** A queued job's place in line on its remote (1: next); null: not known. */
  position: z.number().int().nullable().optional(),
  /** What the job has cost so far (flavor price × nodes × time it held its partition); null: not known. */
  cost_amount: z.number().nullable().optional(),
  /** The currency of `cost_amount` (the flavor's). */
  cost_currency: z.string().nullable().optional(),
  /** Requeues so far (earlier attempts' logs are kept). */
  attempts: z.number().int().optional(),
});
export type Job = z.infer<typeof Job>;
