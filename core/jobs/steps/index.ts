import type { JobStep } from '../../store/job-record.js';
import { connectStep } from './connect.js';
import { partitionStep } from './partition.js';
import { runStep } from './run.js';
import { stageInStep } from './stage-in.js';
import { stageOutStep } from './stage-out.js';
import { retryingOnNodeLoss } from './node-retry.js';
import type { StepEffect } from './step-context.js';
import { teardownStep } from './teardown.js';

/** The effect of each step that has one; `inputs`, `queue` and `done` wait for others to act. */
export const stepEffects: Partial<Record<JobStep, StepEffect>> = {
  partition: partitionStep,
  connect: retryingOnNodeLoss(connectStep),
  'stage-in': retryingOnNodeLoss(stageInStep),
  run: retryingOnNodeLoss(runStep),
  'stage-out': retryingOnNodeLoss(stageOutStep),
  teardown: teardownStep,
};
