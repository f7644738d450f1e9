import type { Identity } from '../../spool-bootstrap/pki.js';
import { ErrorCode, RpcError } from '../../terminal-protocol/errors.js';
import type { CoreServices } from '../services.js';
import type { JobRecord } from '../store/job-record.js';

/** Users see and act on their own jobs only; admins on all. Someone else's job is "not found", like a missing one. */
export const canSee = (caller: Identity, job: JobRecord): boolean => caller.role === 'admin' || job.owner === caller.name;

export function visibleJob(services: CoreServices, caller: Identity, id: string): JobRecord {
  const job = services.store.get(id);
  if (!job || !canSee(caller, job)) throw new RpcError(ErrorCode.NotFound, `job ${id} not found`);
  return job;
}
