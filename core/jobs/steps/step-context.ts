import type { Logger } from 'pino';
import type { CoreServices } from '../../services.js';
import type { JobRecord } from '../../store/job-record.js';
import type { JobEvent } from '../job-steps.js';

/** What a step's effect gets: the job as recorded, the core's services, a way to report progress, an abort. */
export interface StepContext {
  job: JobRecord;
  services: CoreServices;
  logger: Logger;
  signal: AbortSignal;
  /** Report an intermediate event (progress, partition requested, started) without ending the step. */
  emit: (event: JobEvent) => void;
}

/** A step's effect: idempotent, resolves with the event that ends the step; throws to fail the job. */
export type StepEffect = (context: StepContext) => Promise<JobEvent>;

/** An effect no longer wanted (the job moved on, the actor reset): not a failure of the step. */
export { EffectAborted as StepAborted } from '../../supervision/durable-actor.js';
import { EffectAborted as StepAborted } from '../../supervision/durable-actor.js';

export const throwIfAborted = (signal: AbortSignal): void => {
  if (signal.aborted) throw new StepAborted('step aborted');
};

/** Sleep that an abort cuts short. */
export { pause } from '../../supervision/durable-actor.js';
