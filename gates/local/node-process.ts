import { spawn, type ChildProcess } from 'node:child_process';
import type { AddressInfo, Server } from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { listenOn } from './node-server.js';
import type { NodeCommand, NodeReport, NodeSpec } from './node-spec.js';

const NODE_MAIN = fileURLToPath(new URL('./node-main.js', import.meta.url));
/** How long a node process gets to start, and to stop before it is killed. */
const START_LIMIT_MS = 15_000;
const STOP_LIMIT_MS = 2_000;

/** Lines a node process writes to stderr (pino JSON) go on in the gate's log, under the node's name. */
function relayLog(child: ChildProcess, target: { logger: Logger }): void {
  const lines = createInterface({ input: child.stderr! });
  lines.on('line', (line) => {
    const logger = target.logger;
    try {
      const { level, msg, time: _time, pid: _pid, hostname: _host, name: _name, ...fields } = JSON.parse(line) as Record<string, unknown>;
      const method = PINO_LEVELS[level as number] ?? 'info';
      logger[method](fields, String(msg ?? ''));
    } catch {
      if (line.trim()) logger.warn({ output: line.slice(0, 2_000) }, 'node process wrote');
    }
  });
}
const PINO_LEVELS: Record<number, 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal'> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' };

/** How long a recorded port may stay taken: the node process of a gate that was just killed is on its way out. */
const RECORDED_PORT_GRACE_MS = 5_000;

/** Listen on a node's port; a recorded port still held (by the previous gate's node, exiting) is tried again for a while. */
async function listenAgain(host: string, port: number): Promise<Server> {
  const deadline = Date.now() + RECORDED_PORT_GRACE_MS;
  for (;;) {
    try {
      return await listenOn(host, port);
    } catch (error) {
      if (port === 0 || (error as NodeJS.ErrnoException).code !== 'EADDRINUSE' || Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

/**
 * Bind each published port on the machine's loopback and hand it to the node process. A port another
 * process holds is logged and left out: the job is still reached through the core's forwards.
 */
async function publishPorts(child: ChildProcess, ports: readonly number[], host: string, logger: Logger): Promise<void> {
  for (const port of ports) {
    const listener = await listenOn(host, port).catch((error: NodeJS.ErrnoException) => {
      logger.warn({ port, err: error.code ?? error.message }, 'port not published on the machine: it is taken');
      return null;
    });
    if (!listener) continue;
    listener.on('connection', (socket) => socket.destroy());
    await new Promise<void>((resolve, reject) => child.send({ type: 'publish', port } satisfies NodeCommand, listener, (error) => (error ? reject(error) : resolve())));
    listener.close();
  }
}

/** A node process started ahead of need: loaded and waiting for its node's description. */
interface Spare {
  child: ChildProcess;
  log: { logger: Logger };
}

/**
 * Starts node processes, keeping a few spares loaded ahead (starting Node.js and loading the SSH server
 * takes most of a partition's creation time), so that a partition is served within milliseconds of its
 * request. Spares are made after the first request only, so an idle gate holds none; they exit with the gate.
 */
export class NodeLauncher {
  private readonly spares: Spare[] = [];
  private closed = false;

  constructor(
    private readonly privateNetwork: boolean,
    private readonly logger: Logger,
    private readonly spareCount = 2,
  ) {}

  /**
   * A started process for a node, whose log lines go to `logger`: a spare (in a network namespace of its own
   * when the gate isolates), or, to join an existing namespace (`netns`, a path such as /run/netns/<name>:
   * the partition's other nodes), one started now in it.
   */
  take(logger: Logger, netns: string | null = null): Spare {
    const spare = netns ? this.spawn(netns) : (this.spares.shift() ?? this.spawn());
    spare.log.logger = logger;
    setImmediate(() => this.replenish());
    return spare;
  }

  close(): void {
    this.closed = true;
    for (const spare of this.spares.splice(0)) spare.child.kill('SIGKILL');
  }

  private replenish(): void {
    while (!this.closed && this.spares.length < this.spareCount) this.spares.push(this.spawn());
  }

  private spawn(netns: string | null = null): Spare {
    const [command, args] = netns
      ? ['nsenter', [`--net=${netns}`, '--', process.execPath, NODE_MAIN, '--private-network']]
      : this.privateNetwork
        ? ['unshare', ['--net', '--', process.execPath, NODE_MAIN, '--private-network']]
        : [process.execPath, [NODE_MAIN]];
    const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe', 'ipc'], env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } });
    const spare: Spare = { child, log: { logger: this.logger } };
    relayLog(child, spare.log);
    child.once('exit', () => {
      const at = this.spares.indexOf(spare);
      if (at >= 0) this.spares.splice(at, 1);
    });
    child.once('error', (error) => this.logger.error({ err: error }, 'node process could not be started'));
    return spare;
  }
}

/**
 * A node's process, seen from the gate. The gate binds the node's SSH port itself (so that a taken port is
 * a clear start error), starts the process (as root in a new network namespace when the gate isolates, so
 * that the node's loopback is its own: a job cannot reach the core's, the gate's or another node's ports),
 * and hands it the listener; the process drops to the node's account before it serves anyone.
 */
export class NodeProcess {
  private exited: Promise<void>;
  private closing = false;

  private constructor(
    private readonly child: ChildProcess,
    readonly port: number,
  ) {
    this.exited = new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve();
      else child.once('exit', () => resolve());
    });
  }

  /** The node process's pid (unshare and nsenter exec it: the pid is the node's own). */
  get pid(): number | undefined {
    return this.child.pid;
  }

  static async start(spec: NodeSpec, where: { host: string; port: number; netns?: string | null }, launcher: NodeLauncher, logger: Logger): Promise<NodeProcess> {
    const listener = await listenAgain(where.host, where.port);
    // Until the node process has it, a connection that reaches the gate is closed rather than left hanging.
    listener.on('connection', (socket) => socket.destroy());
    const port = (listener.address() as AddressInfo).port;
    const { child } = launcher.take(logger, where.netns ?? null);
    try {
      const report = await new Promise<NodeReport>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`node process did not start within ${START_LIMIT_MS / 1000} s`)), START_LIMIT_MS);
        child.once('message', (message: NodeReport) => {
          clearTimeout(timer);
          resolve(message);
        });
        child.once('error', (error) => {
          clearTimeout(timer);
          reject(error);
        });
        child.once('exit', (code, signal) => {
          clearTimeout(timer);
          reject(new Error(`node process exited at start (${signal ?? `code ${code}`})`));
        });
        child.send(spec, listener, (error) => {
          if (error) reject(error);
        });
      });
      if (report.type === 'failed') throw new Error(report.reason);
      await publishPorts(child, spec.publishedPorts, where.host, logger);
    } catch (error) {
      child.kill('SIGKILL');
      throw error;
    } finally {
      // The node process holds its own copy of the socket now.
      listener.close();
    }
    return new NodeProcess(child, port);
  }

  /** Ask the process to stop (ending its SSH connections); kill it if it does not. Commands it started go on. */
  /** Called once if the process ends without being asked to (killed, crashed): its node no longer serves. */
  onUnexpectedExit(listener: (how: string) => void): void {
    this.child.once('exit', (code, signal) => {
      if (!this.closing) listener(signal ?? `exit code ${code}`);
    });
  }

  async close(): Promise<void> {
    this.closing = true;
    if (this.child.connected) this.child.send({ type: 'stop' } satisfies NodeCommand, () => undefined);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), STOP_LIMIT_MS);
    await this.exited;
    clearTimeout(timer);
  }
}
