import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { Command } from 'commander';
import type { TerminalClient } from '../../terminal-protocol/client.js';
import type { Job } from '../../terminal-protocol/job.js';
import { MuxStream, coalesceWrites, spliceStreams, streamsOf } from '../../terminal-protocol/streams.js';
import { withCore } from '../connect.js';
import { DirectPaths } from '../direct-forward.js';
import { CliError, ExitCode } from '../exit-codes.js';
import { note } from '../format.js';
import { bundleOptionsOf, examples } from '../global-options.js';
import { JOB_ARGUMENT, resolveJob } from '../job-reference.js';

const ENDED = new Set(['F', 'E', 'C']);

function parsePort(value: string, what: string, allowZero = false): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || n > 65535 || (n === 0 && !allowZero)) throw new CliError(`${what} "${value}" is not a TCP port`, ExitCode.Usage);
  return n;
}

/** Listen on the local address; a port already taken is a clear error, not a stack trace. */
function listen(server: Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) =>
      reject(new CliError(error.code === 'EADDRINUSE' ? `local port ${host}:${port} is in use: choose another with --local` : `cannot listen on ${host}:${port}: ${error.message}`)),
    );
    server.listen(port, host, () => resolve((server.address() as AddressInfo).port));
  });
}

/**
 * Each local connection goes straight to the job's head node over SSH where this machine can reach it (the direct
 * path, a channel of one SSH connection), else becomes one stream on the terminal's WebSocket (job.forward.open),
 * which the core carries on over SSH to the job's port. A connection that fails (nothing listens in the job yet)
 * is closed alone; the others go on.
 */
function forwardConnection(core: TerminalClient, id: string, port: number, socket: Socket, direct: DirectPaths | null): void {
  socket.pause();
  socket.setNoDelay(true);
  coalesceWrites(socket);
  socket.once('error', () => socket.destroy());
  const viaNode = direct ? direct.get().then((path) => path?.channel() ?? null) : Promise.resolve(null);
  viaNode.then(
    (channel) => {
      if (!channel) return relay(core, id, port, socket);
      if (socket.destroyed) return void channel.close();
      spliceStreams(socket, channel);
      socket.resume();
    },
    // The node refused the channel (nothing listens yet, the path dropped): through the core, which says why.
    () => relay(core, id, port, socket),
  );
}

/** One local connection carried by the core (job.forward.open). */
function relay(core: TerminalClient, id: string, port: number, socket: Socket): void {
  if (socket.destroyed) return;
  core.call('job.forward.open', { id, port }).then(
    (opened) => {
      if (socket.destroyed) return;
      const stream = new MuxStream(streamsOf(core), opened.stream, opened.window);
      spliceStreams(socket, stream);
      socket.resume();
    },
    (error: Error) => {
      note(`connection from ${socket.remoteAddress}:${socket.remotePort} refused: ${error.message}`);
      socket.destroy();
    },
  );
}

export function registerForward(program: Command): void {
  program
    .command('forward')
    .description("reach a running job's port from this machine (a local port forwarded to it)")
    .argument('<job>', JOB_ARGUMENT)
    .argument('<port>', 'the job\'s port, declared in its script as "#SWM ports PORT/tcp/in"')
    .option('-l, --local <port>', 'the local port to listen on (default: the same number; 0: any free port)')
    .option('--bind <address>', 'the local address to listen on', '127.0.0.1')
    .option('--json', 'print one JSON line with the local address once listening, then one each time connections change path (node or core)')
    .option('--via-core', "carry every connection through the core, even where the job's node can be reached directly")
    .addHelpText(
      'after',
      `
Where this machine can reach the job's node (the same host, the same network), connections go straight to it
over SSH, with a key the core makes for this forward alone (good for this port only, until the job ends) and
the node's pinned host key; elsewhere, or with --via-core, they travel over your connection to the core and on
over SSH to the node. Runs until the job ends or you press Ctrl-C. Inside the job, a plain process finds the port it should
listen on in $SWM_PORT_<port> (the port itself unless another job on the same host holds it).
${examples('$ swm forward "$id" 8888', '$ swm forward "$id" 8888 --local 18888 &  # then open http://localhost:18888')}`,
    )
    .action(async (idText: string, portText: string, opts: { local?: string; bind: string; json?: boolean; viaCore?: boolean }, command: Command) => {
      const port = parsePort(portText, 'port');
      const localPort = opts.local !== undefined ? parsePort(opts.local, '--local', true) : port;
      await withCore(
        bundleOptionsOf(command),
        async (core, bundle) => {
          const id = await resolveJob(core, idText);
          const job = await core.call('job.get', { id });
          if (!job.ports.includes(`${port}/tcp/in`))
            throw new CliError(`job ${id} declares no port ${port}/tcp/in${job.ports.length ? ` (its ports: ${job.ports.join(', ')})` : ''}`, ExitCode.NotFound);
          if (ENDED.has(job.state)) throw new CliError(`job ${id} has ended (${job.state}): its ports are closed`);

          const direct = opts.viaCore
            ? null
            : new DirectPaths(core, id, port, bundle.coreUrl, (path, reason) => {
                // With --json, a line per change of path after the first line (which says where it listens).
                if (opts.json) process.stdout.write(`${JSON.stringify(path ? { path: 'node', node: `${path.grant.host}:${path.grant.port}` } : { path: 'core', reason })}\n`);
                else if (path) note(`connections go straight to the job's node (${path.grant.host}:${path.grant.port}, SSH)`);
                else note(`connections go through the core (${reason})`);
              });
          const connections = new Set<Socket>();
          // Half-open: a client that finishes sending (shutdown) still gets the job's answer.
          const server = createServer({ allowHalfOpen: true }, (socket) => {
            connections.add(socket);
            socket.once('close', () => connections.delete(socket));
            forwardConnection(core, id, port, socket, direct);
          });
          const bound = await listen(server, localPort, opts.bind);
          const local = `${opts.bind}:${bound}`;
          // One line, at once: a script waits for it to know the forward is up.
          if (opts.json) process.stdout.write(`${JSON.stringify({ id, port, local })}\n`);
          else note(`forwarding ${local} to port ${port} of job ${id}${job.state === 'R' ? '' : ` (the job is ${job.state}: connections are refused until it runs)`}; Ctrl-C to stop`);

          const ended = await new Promise<Job | null>((resolve) => {
            const onNotification = (name: string, event: Job) => {
              if (name === 'job.event' && event.id === id && ENDED.has(event.state)) resolve(event);
            };
            const subscribe = () =>
              core.call('job.subscribe', { id }).then(
                (current) => ENDED.has(current.state) && resolve(current),
                () => undefined,
              );
            core.on('notification', onNotification);
            core.on('connected', subscribe);
            void subscribe();
            const stop = () => resolve(null);
            process.once('SIGINT', stop);
            process.once('SIGTERM', stop);
          });
          server.close();
          direct?.close();
          for (const socket of connections) socket.destroy();
          if (ended && !opts.json) note(`job ${id} ended (${ended.state}): forwarding stopped`);
        },
        { reconnect: true },
      );
    });
}
