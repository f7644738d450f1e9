import type { CoreServices } from '../services.js';
import type { JobRecord } from '../store/job-record.js';
import type { DurableMachine } from '../supervision/durable-actor.js';
import { deadlineOf, transition, type JobEvent } from './job-steps.js';
import { stepEffects } from './steps/index.js';
import { keepAttempt } from './job-history.js';

/**
 * A job as a durable state machine (DESIGN.md §7): decisions from the pure `transition` (job-steps.ts), each
 * step's effect from steps/, the time limit as the deadline of `run`. The generic durable actor
 * (supervision/durable-actor.ts) persists every change before it performs the new step.
 */
export function jobMachine(initial: JobRecord, services: CoreServices, onCommitted: (job: JobRecord, moved: boolean) => void): DurableMachine<JobRecord, JobEvent> {
  const logger = services.logger.child({ job: initial.id });
  return {
    id: initial.id,
    logger,
    transition,
    stateOf: (job) => job.step,
    effectOf: (job) => {
      const effect = stepEffects[job.step];
      if (!effect) return undefined;
      return ({ signal, emit, logger: log }) =>
        effect({ job, services, signal, emit, logger: job.partitionName ? log.child({ partition: job.partitionName }) : log });
    },
    deadlineOf: (job) => {
      const at = deadlineOf(job);
      return at === null ? null : { at, event: { type: 'time-limit' } };
    },
    failed: (_step, reason) => ({ type: 'step-failed', reason }),
    load: () => services.store.get(initial.id),
    save: (job) => services.store.save(job),
    committed: (next, previous) => {
      if (next.attempts > previous.attempts) {
        try {
          keepAttempt(services, previous);
        } catch (error) {
          logger.warn({ err: (error as Error)?.message }, "could not keep the previous attempt's results aside");
        }
      }
      services.bus.publish(next);
      if (next.step !== previous.step || next.state !== previous.state)
        logger.info({ step: next.step, state: next.state, details: next.stateDetails, ...(next.partitionName ? { partition: next.partitionName } : {}) }, 'job moved');
      onCommitted(next, next.step !== previous.step && (next.step === 'done' || next.step === 'queue'));
    },
  };
}
