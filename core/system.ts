import { start, stop, type Ref } from 'nact';
import type { Logger } from 'pino';
import { loadCoreConfig } from '../spool-bootstrap/config.js';
import { listenMtls, type MtlsListener } from '../spool-bootstrap/listener.js';
import { createLogger } from '../spool-bootstrap/log.js';
import { spoolPaths, type SpoolPaths } from '../spool-bootstrap/paths.js';
import { Revocations } from '../spool-bootstrap/revocations.js';
import { GateClient } from './gates/gate-client.js';
import { GateProcess } from './gates/gate-process.js';
import { JobForwards } from './forwarding/job-forwards.js';
import { InputDeadline } from './jobs/input-deadline.js';
import { InputDigests } from './jobs/job-inputs.js';
import { CoreMetrics } from './metrics/core-metrics.js';
import { Jobs } from './jobs/jobs.js';
import { HashWorker } from './transfers/hash-worker.js';
import { NodePool } from './nodes/node-pool.js';
import type { PartitionEffectOptions } from './partitions/partition-effects.js';
import { Partitions } from './partitions/partitions.js';
import { PartitionLeases } from './partitions/partition-leases.js';
import { Preemptions } from './partitions/preemptions.js';
import { Reaper } from './reaper.js';
import { spawnScheduler } from './scheduler/scheduler-actor.js';
import { JobRetention } from './jobs/job-history.js';
import { JobBus, type CoreServices } from './services.js';
import { JobStore } from './store/job-store.js';
import { AdminHandlers } from './terminals/admin-handlers.js';
import { CatalogHandlers } from './terminals/catalog-handlers.js';
import { JobHandlers } from './terminals/job-handlers.js';
import { openTerminalSession } from './terminals/terminal-session.js';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Identity } from '../spool-bootstrap/pki.js';
import { VERSION } from './version.js';

export interface CoreSystem {
  services: CoreServices;
  jobs: Jobs;
  partitions: Partitions;
  reaper: Reaper;
  listener: MtlsListener;
  port: number;
  stop: (options?: { stopGates?: boolean }) => Promise<void>;
}

export interface StartOptions {
  spoolDir: string;
  logger?: Logger;
  /** Extra HTTPS routes on the terminal port (the REST API). */
  httpRoutes?: (services: CoreServices, jobs: JobHandlers, catalog: CatalogHandlers) => (req: IncomingMessage, res: ServerResponse, caller: Identity) => void;
  /** Print the log on stderr for a person too (swm-core --pretty). */
  pretty?: boolean;
  /** How partitions wait after a passing failure (tests shorten it). */
  partitionEffects?: PartitionEffectOptions;
}

/**
 * The composition root: builds every component swm-core runs, in dependency order, and stops them in the
 * reverse order. The supervision tree (core/README.md):
 *
 *   root ─┬─ jobs        supervisor: one durable actor per job in the middle of a step
 *         ├─ partitions  supervisor: one durable actor per partition not deleted
 *         └─ scheduler   pure plan on every event
 *   beside it: store, gate processes and clients, node pool, forwards, reaper, terminal server
 */
export async function startCore(options: StartOptions): Promise<CoreSystem> {
  const spool: SpoolPaths = spoolPaths(options.spoolDir);
  const config = loadCoreConfig(spool.config);
  const logger = options.logger ?? createLogger('core', { logsDir: spool.logsDir, level: config.core.logLevel, pretty: options.pretty });
  const store = new JobStore(spool.db);

  const gateProcesses = new Map<string, GateProcess>();
  for (const g of config.gates.filter((g) => g.managed)) {
    const p = new GateProcess(g, spool, logger);
    gateProcesses.set(g.name, p);
    p.start();
  }
  const gates = new Map(config.gates.map((g) => [g.name, new GateClient(g, spool, logger)]));

  let kick = () => {};
  let pendingOf: CoreServices['pendingOf'] = () => null;
  let previewPlacement: CoreServices['previewPlacement'];
  const services = {
    version: VERSION,
    startedAt: Date.now(),
    config,
    spool,
    logger,
    store,
    gates,
    gateProcesses,
    // A partition's nodes are worked through the node agent unless its remote says otherwise.
    nodes: new NodePool(spool, (name) => config.remotes.find((r) => r.name === services.partitions.get(name)?.remote)?.nodeAgent !== false),
    hashes: new HashWorker(),
    inputDigests: new InputDigests(),
    bus: new JobBus(),
    kickScheduler: () => kick(),
    pendingOf: (id: string) => pendingOf!(id),
    previewPlacement: (candidate: Parameters<NonNullable<CoreServices['previewPlacement']>>[0]) => previewPlacement!(candidate),
  } as Omit<CoreServices, 'partitions' | 'forwards' | 'metrics'> as CoreServices;
  const root = start() as Ref<unknown>;
  services.partitions = new Partitions(root, services, options.partitionEffects);
  services.forwards = new JobForwards(services);
  services.metrics = new CoreMetrics(services);
  services.metrics.start();
  const jobs = new Jobs(root, services);
  const scheduler = spawnScheduler(root, services, jobs);
  kick = scheduler.kick;
  pendingOf = scheduler.pendingOf;
  previewPlacement = scheduler.preview;
  for (const gate of gates.values()) {
    gate.on('ready', () => kick());
    gate.start();
  }
  services.partitions.charges.repair();
  const partitionCount = services.partitions.start();
  const resumed = jobs.resumeAll();
  services.forwards.start();
  const reaper = new Reaper(services);
  reaper.start();
  const inputDeadline = new InputDeadline(services, jobs);
  inputDeadline.start();
  // Spot nodes taken back by the cloud: their jobs are queued again.
  const preemptions = new Preemptions(services, jobs);
  preemptions.start();
  // Cloud partitions expire unless this core renews their lease.
  const leases = new PartitionLeases(services);
  leases.start();
  const retention = new JobRetention(services);
  retention.start();

  const revocations = new Revocations(spool.revoked);
  const jobHandlers = new JobHandlers(services, jobs);
  const catalog = new CatalogHandlers(services);
  let listener: MtlsListener | null = null;
  const admin = new AdminHandlers(services, revocations, (serials) => listener?.disconnect(serials));
  const handlers = { jobs: jobHandlers, catalog, admin };
  listener = await listenMtls({
    caCertPath: spool.ca.cert,
    server: spool.core,
    host: config.core.listen,
    port: config.core.port,
    revocations,
    maxMessageBytes: config.core.maxMessageBytes,
    limits: config.core,
    onSocket: (socket, identity) => {
      if (identity.role === 'core' || identity.role === 'gate' || identity.role === 'monitor') {
        socket.close(4003, 'terminals only');
        return;
      }
      openTerminalSession(socket, identity, services, handlers);
    },
    onRequest: options.httpRoutes?.(services, jobHandlers, catalog),
    onRefused: (reason, remote) => logger.warn({ remote, reason }, 'connection refused'),
  });
  kick();
  logger.info({ port: listener.port, resumed, partitions: partitionCount, version: VERSION, spool: spool.root }, 'swm-core started');

  return {
    services,
    jobs,
    partitions: services.partitions,
    reaper,
    listener,
    port: listener.port,
    stop: async ({ stopGates = false } = {}) => {
      scheduler.stop();
      reaper.stop();
      inputDeadline.stop();
      preemptions.stop();
      leases.stop();
      retention.stop();
      await listener!.close();
      await services.partitions.deleteIdle();
      jobHandlers.close();
      services.forwards.stop();
      jobs.stop();
      services.partitions.stop();
      await Promise.all([...gates.values()].map((g) => g.close()));
      for (const p of gateProcesses.values()) p.stop(stopGates);
      services.nodes.closeAll();
      await services.hashes.stop();
      services.metrics.stop();
      await store.flush();
      stop(root as never);
      store.close();
      logger.info('swm-core stopped');
    },
  };
}
