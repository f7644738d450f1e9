import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { ErrorCode, RpcError } from '../../terminal-protocol/errors.js';
import type { ForwardedPort } from '../../terminal-protocol/terminal-methods.js';
import { nodeJobDir } from '../jobs/node-layout.js';
import { stepsWhere } from '../jobs/job-steps.js';
import type { NodeSession, ReverseConnection } from '../nodes/node-session.js';
import type { CoreServices } from '../services.js';
import type { JobRecord } from '../store/job-record.js';
import { coalesceWrites, spliceStreams } from '../../terminal-protocol/streams.js';
import { NODE_LOOPBACK, coversAll, formatPortsFile, parsePortsFile, probeFreePort, type NodePort } from './node-ports.js';

/** Steps during which a job's forwards exist: `out` ones from stage-in (the job may connect at once), all while it runs. */
const FORWARDING_STEPS: ReadonlySet<string> = new Set(stepsWhere('hasForwards'));
const REBIND_BACKOFF_MS = [250, 1_000, 2_000, 5_000];

/** Where the core listens for an `in` port of a job: loopback only (these connections carry no credentials). */
const CORE_LISTEN_HOST = '127.0.0.1';

interface Forwarding {
  job: JobRecord;
  ports: NodePort[];
  /** The session the `out` forwards are bound on, and what to undo when it goes. */
  session: NodeSession | null;
  boundOut: Set<number>;
  detach: Array<() => void>;
  /** Core-side listeners of `in` ports, by declared port. */
  listeners: Map<number, Server>;
  connections: Set<Duplex>;
  closed: boolean;
  ensuring: Promise<void> | null;
  rebindAttempts: number;
}

/** A job's host (as the node sees it) for its `out` ports: the submission address, host part only. */
export const submissionHost = (job: JobRecord): string | null => {
  const address = job.directives.submissionAddress?.trim();
  if (!address) return null;
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(address);
  if (bracketed) return bracketed[1]!;
  const hostPort = /^([^:]+):\d+$/.exec(address);
  return hostPort ? hostPort[1]! : address;
};

/**
 * The port forwards of running jobs (DESIGN.md §7 `nodes`: forwards), kept in memory and rebuilt from the
 * store and the nodes when the core starts:
 *
 *   in   terminal ──WebSocket stream──┐
 *        core-host:P (loopback) ───────┴─ core ──SSH direct-tcpip──▶ node 127.0.0.1:<node port> ── job
 *   out  job ──▶ node 127.0.0.1:<node port> ──SSH tcpip-forward──▶ core ──TCP──▶ submission address:<port>
 *
 * Forwards close when the job leaves its run step; one broken connection never affects the others.
 */
export class JobForwards {
  private readonly jobs = new Map<string, Forwarding>();
  /** Per node host, the tail of its port allocations: one at a time, so two jobs never get the same port. */
  private readonly allocating = new Map<string, Promise<unknown>>();
  private started = false;
  private readonly logger: Logger;
  private readonly onJobChange = (job: JobRecord) => this.onJob(job);

  constructor(private readonly services: CoreServices) {
    this.logger = services.logger.child({ component: 'forwards' });
  }

  /** Follow job changes; re-create the forwards of jobs that run already (after a core restart). */
  start(): void {
    if (this.started) return;
    this.started = true;
    this.services.bus.on('job', this.onJobChange);
    for (const job of this.services.store.active(['run'])) if (job.directives.ports.length) this.bringUp(job);
  }

  /** Stop following jobs and close every forward. */
  stop(): void {
    this.services.bus.off('job', this.onJobChange);
    this.started = false;
    for (const id of [...this.jobs.keys()]) this.close(id);
  }

  /** Set a job's forwards up now, retrying with backoff while it runs. */
  private bringUp(job: JobRecord): void {
    const forwarding = this.track(job);
    this.ensure(forwarding).catch((error: Error) => {
      this.logger.warn({ job: job.id, err: error.message }, 'could not set up port forwards yet');
      this.scheduleRebind(forwarding);
    });
  }

  /**
   * During stage-in: choose the node port of every declared port (or take those recorded on the node by an
   * earlier attempt), record them in .swm/ports, and bind the `out` forwards so the job can use them from
   * its first instruction. Returns the ports for the job's runner.
   */
  async prepare(job: JobRecord, session: NodeSession): Promise<NodePort[]> {
    const declared = job.directives.ports;
    if (declared.length === 0) return [];
    const recorded = await this.readPortsFile(job, session);
    const ports = recorded && coversAll(declared, recorded) ? recorded : await this.allocate(job, session);
    const forwarding = this.track(job, ports);
    await this.ensure(forwarding);
    return ports;
  }

  /**
   * Choose and record the node ports of a job, one job at a time per node host: a port is free for the
   * first job that probes it, and taken (by this core's records) for the next one.
   */
  private allocate(job: JobRecord, session: NodeSession): Promise<NodePort[]> {
    const host = session.node.publicIp ?? session.node.privateIp ?? session.node.name;
    const previous = this.allocating.get(host) ?? Promise.resolve();
    const turn = previous.catch(() => undefined).then(async () => {
      const taken = this.portsTakenOn(session);
      const ports: NodePort[] = [];
      for (const d of job.directives.ports) {
        const nodePort = await probeFreePort(session, d.port, new Set([...taken, ...ports.map((p) => p.nodePort)]));
        ports.push({ port: d.port, direction: d.direction, nodePort });
      }
      await this.writePortsFile(job, session, ports);
      // Recorded before the next allocation on this host starts.
      this.track(job, ports);
      return ports;
    });
    this.allocating.set(host, turn);
    void turn.finally(() => {
      if (this.allocating.get(host) === turn) this.allocating.delete(host);
    }).catch(() => undefined);
    return turn;
  }

  /** Where one of a running job's `in` ports listens on its head node (its forwards brought up first). */
  async inNodePort(job: JobRecord, port: number): Promise<number> {
    if (!job.directives.ports.some((p) => p.port === port && p.direction === 'in'))
      throw new RpcError(ErrorCode.NotFound, `job ${job.id} declares no port ${port}/tcp/in`);
    if (job.step !== 'run') throw new RpcError(ErrorCode.Conflict, `job ${job.id} is not running (state ${job.state}): its ports are closed`);
    const forwarding = this.track(job);
    await this.ensure(forwarding);
    const nodePort = forwarding.ports.find((p) => p.port === port && p.direction === 'in')?.nodePort;
    if (nodePort === undefined) throw new RpcError(ErrorCode.Unavailable, `job ${job.id}: port ${port} is not set up on its node yet`);
    return nodePort;
  }

  /** A connection from the job's head node to one of its `in` ports (for `swm forward` and the core-side listener). */
  async connectIn(job: JobRecord, port: number): Promise<Duplex> {
    const nodePort = await this.inNodePort(job, port);
    const forwarding = this.track(job);
    const session = await this.services.nodes.head(job.partitionName!);
    let channel: Duplex;
    try {
      channel = await session.forwardOut(NODE_LOOPBACK, nodePort);
    } catch (error) {
      throw new RpcError(ErrorCode.Unavailable, `nothing accepts connections on port ${port} of job ${job.id} (node port ${nodePort}): ${(error as Error).message}`);
    }
    if (forwarding.closed) {
      channel.destroy();
      throw new RpcError(ErrorCode.Conflict, `job ${job.id} stopped running`);
    }
    forwarding.connections.add(channel);
    channel.once('close', () => forwarding.connections.delete(channel));
    return channel;
  }

  /** What `job.ports` and the REST API report. */
  ports(job: JobRecord): ForwardedPort[] {
    const forwarding = this.jobs.get(job.id);
    const target = submissionHost(job);
    return job.directives.ports.map((p) => {
      const known = forwarding?.ports.find((n) => n.port === p.port && n.direction === p.direction);
      const listener = forwarding?.listeners.get(p.port);
      const address = listener?.address() as AddressInfo | null | undefined;
      return {
        port: p.port,
        direction: p.direction,
        nodePort: known?.nodePort ?? null,
        coreListen: p.direction === 'in' && address ? `${CORE_LISTEN_HOST}:${address.port}` : null,
        target: p.direction === 'out' && target ? `${target}:${p.port}` : null,
      };
    });
  }

  /** Close every forward of a job (listeners, reverse forwards, live connections). */
  close(jobId: string): void {
    const forwarding = this.jobs.get(jobId);
    if (!forwarding) return;
    this.jobs.delete(jobId);
    forwarding.closed = true;
    for (const listener of forwarding.listeners.values()) listener.close();
    forwarding.listeners.clear();
    for (const undo of forwarding.detach) undo();
    forwarding.detach = [];
    const session = forwarding.session;
    if (session?.isOpen) for (const port of forwarding.boundOut) void session.unforwardIn(NODE_LOOPBACK, port).catch(() => undefined);
    forwarding.boundOut.clear();
    for (const connection of forwarding.connections) connection.destroy();
    forwarding.connections.clear();
    this.logger.info({ job: jobId }, 'port forwards closed');
  }

  closeAll(): void {
    for (const id of [...this.jobs.keys()]) this.close(id);
  }

  private onJob(job: JobRecord): void {
    if (job.directives.ports.length === 0) return;
    const forwarding = this.jobs.get(job.id);
    if (!FORWARDING_STEPS.has(job.step)) {
      if (forwarding) this.close(job.id);
      return;
    }
    if (forwarding) forwarding.job = job;
    if (job.step === 'run') this.bringUp(job);
  }

  private track(job: JobRecord, ports?: NodePort[]): Forwarding {
    let forwarding = this.jobs.get(job.id);
    if (!forwarding) {
      forwarding = {
        job,
        ports: ports ?? [],
        session: null,
        boundOut: new Set(),
        detach: [],
        listeners: new Map(),
        connections: new Set(),
        closed: false,
        ensuring: null,
        rebindAttempts: 0,
      };
      this.jobs.set(job.id, forwarding);
    } else {
      forwarding.job = job;
      if (ports) forwarding.ports = ports;
    }
    return forwarding;
  }

  /** Bring a job's forwards up on its current head-node session (idempotent; coalesces concurrent calls). */
  private ensure(forwarding: Forwarding): Promise<void> {
    forwarding.ensuring ??= this.establish(forwarding).finally(() => (forwarding.ensuring = null));
    return forwarding.ensuring;
  }

  private async establish(forwarding: Forwarding): Promise<void> {
    if (forwarding.closed) return;
    const { job } = forwarding;
    const session = await this.services.nodes.head(job.partitionName!);
    if (forwarding.closed) return;
    if (forwarding.ports.length === 0) {
      const recorded = await this.readPortsFile(job, session);
      if (!recorded) throw new Error(`job ${job.id}: no .swm/ports on its node`);
      forwarding.ports = recorded;
    }
    if (forwarding.session !== session) this.attachSession(forwarding, session);
    for (const p of forwarding.ports) {
      if (p.direction !== 'out' || forwarding.boundOut.has(p.nodePort)) continue;
      try {
        await session.forwardIn(NODE_LOOPBACK, p.nodePort);
        forwarding.boundOut.add(p.nodePort);
      } catch (error) {
        this.logger.warn({ job: job.id, port: p.port, nodePort: p.nodePort, err: (error as Error).message }, 'could not bind an out port on the node');
      }
    }
    if (job.step === 'run') for (const p of forwarding.ports) if (p.direction === 'in' && !forwarding.listeners.has(p.port)) await this.listenOnCore(forwarding, p);
  }

  private attachSession(forwarding: Forwarding, session: NodeSession): void {
    for (const undo of forwarding.detach) undo();
    forwarding.session = session;
    forwarding.boundOut = new Set();
    forwarding.detach = [
      session.onReverseConnection((connection) => this.onReverse(forwarding, connection)),
      session.onClose(() => this.sessionLost(forwarding, session)),
    ];
  }

  /** The head-node connection dropped (the run step reconnects): bind the `out` forwards again on the next one. */
  private sessionLost(forwarding: Forwarding, session: NodeSession): void {
    if (forwarding.closed || forwarding.session !== session) return;
    forwarding.session = null;
    forwarding.boundOut.clear();
    this.scheduleRebind(forwarding);
  }

  private scheduleRebind(forwarding: Forwarding): void {
    const current = this.services.store.get(forwarding.job.id);
    if (forwarding.closed || !current || !FORWARDING_STEPS.has(current.step)) {
      this.close(forwarding.job.id);
      return;
    }
    const delay = REBIND_BACKOFF_MS[Math.min(forwarding.rebindAttempts++, REBIND_BACKOFF_MS.length - 1)]!;
    setTimeout(() => {
      if (forwarding.closed) return;
      this.ensure(forwarding).then(
        () => (forwarding.rebindAttempts = 0),
        (error: Error) => {
          this.logger.warn({ job: forwarding.job.id, err: error.message }, 'port forwards not restored yet');
          this.scheduleRebind(forwarding);
        },
      );
    }, delay).unref();
  }

  private onReverse(forwarding: Forwarding, connection: ReverseConnection): void {
    const declared = forwarding.ports.find((p) => p.direction === 'out' && p.nodePort === connection.bindPort);
    if (!declared || forwarding.closed) return connection.reject();
    const host = submissionHost(forwarding.job);
    if (!host) {
      this.logger.warn({ job: forwarding.job.id, port: declared.port }, 'out port used, but the job has no submission address');
      return connection.reject();
    }
    const socket: Socket = connect({ host, port: declared.port, allowHalfOpen: true });
    socket.once('error', (error) => {
      if (!socket.connecting) return;
      this.logger.info({ job: forwarding.job.id, target: `${host}:${declared.port}`, err: error.message }, 'out port: target refused');
      connection.reject();
    });
    socket.once('connect', () => {
      let channel: Duplex;
      try {
        channel = connection.accept();
      } catch {
        socket.destroy();
        return;
      }
      this.trackConnection(forwarding, socket, channel);
    });
  }

  private async listenOnCore(forwarding: Forwarding, p: NodePort): Promise<void> {
    const server = createServer({ allowHalfOpen: true }, (socket) => {
      socket.pause();
      this.connectIn(forwarding.job, p.port).then(
        (channel) => {
          this.trackConnection(forwarding, socket, channel);
          socket.resume();
        },
        (error: Error) => {
          this.logger.info({ job: forwarding.job.id, port: p.port, err: error.message }, 'core-side forward refused');
          socket.destroy();
        },
      );
    });
    forwarding.listeners.set(p.port, server);
    await new Promise<void>((resolve) => {
      server.once('error', (error) => {
        this.logger.warn({ job: forwarding.job.id, port: p.port, err: error.message }, 'core-side listener failed');
        forwarding.listeners.delete(p.port);
        resolve();
      });
      server.listen(0, CORE_LISTEN_HOST, () => resolve());
    });
    if (forwarding.closed) server.close();
    else this.logger.info({ job: forwarding.job.id, port: p.port, listen: `${CORE_LISTEN_HOST}:${(server.address() as AddressInfo).port}` }, 'in port reachable from the core host');
  }

  private trackConnection(forwarding: Forwarding, socket: Socket, channel: Duplex): void {
    if (forwarding.closed) {
      socket.destroy();
      channel.destroy();
      return;
    }
    socket.setNoDelay(true);
    coalesceWrites(socket);
    forwarding.connections.add(socket);
    forwarding.connections.add(channel);
    spliceStreams(socket, channel, () => {
      forwarding.connections.delete(socket);
      forwarding.connections.delete(channel);
    });
  }

  /** Node ports this core handed out on the host of `session` (the local gate puts many jobs on one host). */
  private portsTakenOn(session: NodeSession): Set<number> {
    const host = session.node.publicIp ?? session.node.privateIp;
    const taken = new Set<number>();
    for (const f of this.jobs.values()) {
      const node = this.services.nodes.pinned(f.job.partitionName ?? '')?.find((n) => n.role === 'head');
      if ((node?.publicIp ?? node?.privateIp) === host) for (const p of f.ports) taken.add(p.nodePort);
    }
    return taken;
  }

  private async readPortsFile(job: JobRecord, session: NodeSession): Promise<NodePort[] | null> {
    const sftp = await session.sftp();
    return new Promise((resolve) =>
      sftp.readFile(`${nodeJobDir(job.id)}/.swm/ports`, (error, data) => resolve(error ? null : parsePortsFile(data.toString('utf8')))),
    );
  }

  private async writePortsFile(job: JobRecord, session: NodeSession, ports: NodePort[]): Promise<void> {
    const sftp = await session.sftp();
    await new Promise<void>((resolve, reject) =>
      sftp.writeFile(`${nodeJobDir(job.id)}/.swm/ports`, formatPortsFile(ports), { mode: 0o644 }, (error) => (error ? reject(error) : resolve())),
    );
  }
}

/** The core's port forwards (made in the composition root, core/system.ts). */
export const forwardsOf = (services: CoreServices): JobForwards => services.forwards;
