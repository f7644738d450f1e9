import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { CoreConfig, RemoteConfig } from '../spool-bootstrap/config.js';
import type { SpoolPaths } from '../spool-bootstrap/paths.js';
import { ErrorCode, RpcError } from '../terminal-protocol/errors.js';
import type { GateClient } from './gates/gate-client.js';
import type { GateProcess } from './gates/gate-process.js';
import type { JobForwards } from './forwarding/job-forwards.js';
import type { InputDigests } from './jobs/job-inputs.js';
import type { CoreMetrics } from './metrics/core-metrics.js';
import type { SchedulingPreview } from './scheduler/scheduler-actor.js';
import type { QueuedRow } from './store/job-store.js';
import type { HashWorker } from './transfers/hash-worker.js';
import type { NodePool } from './nodes/node-pool.js';
import type { Partitions } from './partitions/partitions.js';
import type { JobRecord, PendingView } from './store/job-record.js';
import type { JobStore } from './store/job-store.js';

/** Job changes, published after they are committed: terminals' subscriptions and the scheduler listen here. */
export class JobBus extends EventEmitter {
  constructor() {
    super();
    this.setMaxListeners(0);
  }
  publish(job: JobRecord): void {
    this.emit('job', job);
    this.emit(`job:${job.id}`, job);
  }
}

/** What the core's actors share: configuration, the store, gate clients, node connections, the job bus. */
export interface CoreServices {
  version: string;
  startedAt: number;
  config: CoreConfig;
  spool: SpoolPaths;
  logger: Logger;
  store: JobStore;
  gates: Map<string, GateClient>;
  /** Managed gate processes, by gate name. */
  gateProcesses?: Map<string, GateProcess>;
  nodes: NodePool;
  /** The partitions branch of the supervision tree. */
  partitions: Partitions;
  /** Port forwards of running jobs. */
  forwards: JobForwards;
  /** SHA-256 of streamed files, off the event loop. */
  hashes: HashWorker;
  /** Digests of inputs verified as they streamed in (commit need not read them again). */
  inputDigests: InputDigests;
  /** What GET /metrics shows. */
  metrics: CoreMetrics;
  bus: JobBus;
  /** Ask the scheduler to run (coalesced). */
  kickScheduler: () => void;
  /** Why a queued job waits and its place in line, as the scheduler's last pass saw it (null: not known). */
  pendingOf?: (jobId: string) => PendingView | null;
  /** What the scheduler would do now with a job not submitted (swm submit --dry-run). */
  previewPlacement?: (candidate: Omit<QueuedRow, 'seq' | 'reason' | 'stateDetails'>) => SchedulingPreview;
}

export function remoteConfig(services: CoreServices, name: string): RemoteConfig {
  const remote = services.config.remotes.find((r) => r.name === name);
  if (!remote) throw new RpcError(ErrorCode.Unschedulable, `unknown remote "${name}"`);
  return remote;
}

export function gateOf(services: CoreServices, remoteName: string): GateClient {
  const remote = remoteConfig(services, remoteName);
  const gate = services.gates.get(remote.gate);
  if (!gate) throw new RpcError(ErrorCode.Unavailable, `remote "${remoteName}" has no gate client`);
  return gate;
}
