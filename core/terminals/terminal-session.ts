import type { WebSocket } from 'ws';
import type { Identity } from '../../spool-bootstrap/pki.js';
import { RpcPeer } from '../../terminal-protocol/peer.js';
import { terminalMethods, type TerminalMethods } from '../../terminal-protocol/terminal-methods.js';
import type { MethodTable, NotificationTable } from '../../terminal-protocol/method.js';
import type { CoreServices } from '../services.js';
import { toWireJob, type JobRecord } from '../store/job-record.js';
import type { AdminHandlers } from './admin-handlers.js';
import { visibleJob } from './caller.js';
import type { CatalogHandlers } from './catalog-handlers.js';
import type { JobHandlers } from './job-handlers.js';
import { droppingSubscriber } from '../jobs/log-follower.js';
import { TerminalStreams } from '../transfers/terminal-streams.js';
import { JobExecs } from './job-execs.js';
import { logPosition } from '../jobs/job-logs.js';

export interface Handlers {
  jobs: JobHandlers;
  catalog: CatalogHandlers;
  admin: AdminHandlers;
}

const MAX_SUBSCRIPTIONS = 10_000;
/**
 * Bytes waiting on a terminal's socket beyond which job.log pushes to it are dropped rather than queued: a
 * slow terminal sees the gap in the offsets and reads it with job.logs.
 */
const MAX_QUEUED_LOG_BYTES = 1024 * 1024;

/** The terminal's address as the core sees it ("::ffff:10.0.0.5" → "10.0.0.5"): where `out` ports lead by default. */
export function terminalAddress(socket: WebSocket): string | undefined {
  const raw = (socket as unknown as { _socket?: { remoteAddress?: string } })._socket?.remoteAddress;
  return raw?.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/, '');
}

/**
 * One terminal connection: a JSON-RPC peer serving the terminal methods as the certificate's identity,
 * plus that connection's job subscriptions. Closing the socket drops them.
 */
export function openTerminalSession(socket: WebSocket, caller: Identity, services: CoreServices, handlers: Handlers): void {
  const subscriptions = new Map<string, { listener: (job: JobRecord) => void; unfollow: () => void }>();
  const log = services.logger.child({ terminal: caller.name, role: caller.role });
  const origin = { address: terminalAddress(socket) };
  // Bulk streams (uploads, downloads, forwarded connections) share the socket as binary frames.
  let streams: TerminalStreams | null = null;
  // Commands run inside jobs (swm exec), their output on streams of the same socket.
  let execs: JobExecs | null = null;

  const unsubscribe = (id: string) => {
    const subscription = subscriptions.get(id);
    if (!subscription) return;
    services.bus.off(`job:${id}`, subscription.listener);
    subscription.unfollow();
    subscriptions.delete(id);
  };

  const peer: RpcPeer<TerminalMethods, MethodTable, NotificationTable> = new RpcPeer(socket, {
    maxMessageBytes: services.config.core.maxMessageBytes,
    onViolation: (error) => log.warn({ code: error.code, err: error.message }, 'protocol violation'),
    serves: {
      methods: terminalMethods,
      role: caller.role,
      // One switch over the method table; each branch's params were validated by the peer against its schema.
      handler: (async (method: keyof TerminalMethods, params: any): Promise<unknown> => {
        const { jobs, catalog, admin } = handlers;
        switch (method) {
          case 'hello':
            return { version: services.version, user: caller.name, role: caller.role, coreId: services.config.core.id, uptimeSec: (Date.now() - services.startedAt) / 1000 };
          case 'status':
            return {
              version: services.version,
              coreId: services.config.core.id,
              uptimeSec: (Date.now() - services.startedAt) / 1000,
              gates: catalog.gates(),
              // Users count their own jobs, as they see only those; admins count everyone's.
              jobs: services.store.countsByState(caller.role === 'admin' ? undefined : caller.name),
              droppedLogLines: catalog.droppedLogLines(),
            };
          case 'job.submit':
            return jobs.submit(caller, params, origin);
          case 'job.plan':
            return jobs.plan(caller, params, origin);
          case 'job.input.write':
            return jobs.inputWrite(caller, params);
          case 'job.input.status':
            return jobs.inputStatus(caller, params);
          case 'job.input.open':
            return jobs.inputOpen(caller, params, streams!);
          case 'job.file.open':
            return jobs.fileOpen(caller, params, streams!);
          case 'job.forward.open':
            return jobs.forwardOpen(caller, params, streams!);
          case 'job.forward.direct':
            return jobs.forwardDirect(caller, params);
          case 'job.ports':
            return jobs.ports(caller, params);
          case 'job.exec.open':
            return execs!.open(visibleJob(services, caller, params.id), params);
          case 'job.exec.resize':
            return execs!.resize(params);
          case 'job.exec.signal':
            return execs!.signal(params);
          case 'job.input.commit':
            return jobs.inputCommit(caller, params);
          case 'job.list':
            return jobs.list(caller, params);
          case 'job.get':
            return jobs.get(caller, params);
          case 'job.history':
            return jobs.history(caller, params);
          case 'cost.report':
            return jobs.costReport(caller, params);
          case 'job.cancel':
            return jobs.cancel(caller, params);
          case 'job.requeue':
            return jobs.requeue(caller, params);
          case 'job.logs':
            return jobs.logs(caller, params);
          case 'job.log.position':
            return logPosition(services, visibleJob(services, caller, params.id), params.stream, Date.parse(params.since));
          case 'job.files':
            return jobs.files(caller, params);
          case 'job.file.read':
            return jobs.fileRead(caller, params);
          case 'job.subscribe': {
            const job = visibleJob(services, caller, params.id);
            if (!subscriptions.has(job.id) && subscriptions.size < MAX_SUBSCRIPTIONS) {
              const listener = (j: JobRecord) => peer.notify('job.event', toWireJob(j));
              services.bus.on(`job:${job.id}`, listener);
              // While the job runs, its output is pushed as job.log notifications (unless the terminal only waits).
              const unfollow = params.logs === false ? () => {} : handlers.jobs.followLogs(caller, job.id, logSink);
              subscriptions.set(job.id, { listener, unfollow });
            }
            return toWireJob(services.store.get(job.id) ?? job);
          }
          case 'job.unsubscribe':
            unsubscribe(params.id);
            return { ok: true as const };
          case 'remote.list':
            return catalog.remotes();
          case 'flavor.list':
            return catalog.flavors(params);
          case 'image.list':
            return catalog.images(params);
          case 'partition.list':
            return catalog.partitions(caller, params);
          case 'partition.delete':
            return catalog.deletePartition(caller, params);
          case 'admin.user.add':
            return admin.addUser(caller, params);
          case 'admin.user.revoke':
            return admin.revokeUser(caller, params);
        }
        throw new Error(`no handler for ${String(method)}`);
      }) as never,
    },
  });
  const logSink = droppingSubscriber((piece) => peer.notify('job.log', piece), () => peer.bufferedAmount, MAX_QUEUED_LOG_BYTES);
  streams = new TerminalStreams(peer, services, log);
  execs = new JobExecs(streams.mux, services, (exit) => peer.notify('job.exec.exit', exit), log);
  peer.on('binary', (data: Buffer) => streams!.receive(data));
  peer.on('handler-error', (error: Error, method: string) => log.error({ method, err: error.message, stack: error.stack }, 'handler failed'));
  peer.on('close', () => {
    for (const id of [...subscriptions.keys()]) unsubscribe(id);
    logSink.close();
    execs!.close();
    streams!.close();
  });
}
