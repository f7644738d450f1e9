import { start, stop, type Ref } from 'nact';
import type { Logger } from 'pino';
import { loadCoreConfig } from '../spool-bootstrap/config.js';
import { listenMtls, type MtlsListener } from '../spool-bootstrap/listener.js';
import { createLogger } from '../spool-bootstrap/log.js';
import { spoolPaths, type SpoolPaths } from '../spool-bootstrap/paths.js';
import { Revocations } from '../spool-bootstrap/revocations.js';
import { GateClient } from './gates/gate-client.js';
import { GateProcess } from './gates/gate-process.js';
import { Jobs } from './jobs/jobs.js';
import { NodePool } from './nodes/node-pool.js';
import { Reaper } from './reaper.js';
import { spawnScheduler } from './scheduler/scheduler-actor.js';
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
}

/**
 * Builds swm-core's supervision tree (DESIGN.md §7):
 *
 *   root ── store (group-committed SQLite)
 *        ├─ gates      managed gate processes + one client per gate
 *        ├─ jobs       one actor per active job, respawned from the store
 *        ├─ scheduler  pure plan on every event
 *        ├─ reaper     deletes partitions no live job owns
 *        └─ terminals  mTLS HTTPS + WSS, one session per connection
 */
export async function startCore(options: StartOptions): Promise<CoreSystem> {
  const spool: SpoolPaths = spoolPaths(options.spoolDir);
  const config = loadCoreConfig(spool.config);
  const logger = options.logger ?? createLogger('core', { logsDir: spool.logsDir, level: config.core.logLevel });
  const store = new JobStore(spool.db);
  const root = start() as Ref<unknown>;

  const gateProcesses = new Map<string, GateProcess>();
  for (const g of config.gates.filter((g) => g.managed)) {
    const p = new GateProcess(g, spool, logger);
    gateProcesses.set(g.name, p);
    p.start();
  }
  const gates = new Map(config.gates.map((g) => [g.name, new GateClient(g, spool, logger)]));

  let kick = () => {};
  const services: CoreServices = {
    version: VERSION,
    startedAt: Date.now(),
    config,
    spool,
    logger,
    store,
    gates,
    gateProcesses,
    nodes: new NodePool(spool),
    bus: new JobBus(),
    kickScheduler: () => kick(),
  };
  const jobs = new Jobs(root, services);
  const scheduler = spawnScheduler(root, services, jobs);
  kick = scheduler.kick;
  for (const gate of gates.values()) {
    gate.on('ready', () => kick());
    gate.start();
  }
  const resumed = jobs.resumeAll();
  const reaper = new Reaper(services);
  reaper.start();

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
      if (identity.role === 'core' || identity.role === 'gate') {
        socket.close(4003, 'terminals only');
        return;
      }
      openTerminalSession(socket, identity, services, handlers);
    },
    onRequest: options.httpRoutes?.(services, jobHandlers, catalog),
    onRefused: (reason, remote) => logger.warn({ remote, reason }, 'connection refused'),
  });
  kick();
  logger.info({ port: listener.port, resumed, version: VERSION, spool: spool.root }, 'swm-core started');

  return {
    services,
    jobs,
    reaper,
    listener,
    port: listener.port,
    stop: async ({ stopGates = false } = {}) => {
      scheduler.stop();
      reaper.stop();
      await listener!.close();
      await Promise.all([...gates.values()].map((g) => g.close()));
      for (const p of gateProcesses.values()) p.stop(stopGates);
      services.nodes.closeAll();
      await store.flush();
      stop(root as never);
      store.close();
      logger.info('swm-core stopped');
    },
  };
}
