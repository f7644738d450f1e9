/**
 * A local node's process. The gate starts one per node (in a network namespace of its own when it runs as
 * root) and hands it, over the IPC channel, the node's description and its listening SSH socket. The process
 * brings up its loopback, opens the node directory, then drops to the node's account for good: from then
 * on the SSH server, the SFTP server, the forwards and every command a client runs are the account's, and
 * the operating system, not a path check, keeps them out of the spool and of other nodes.
 *
 * It exits when the gate says stop, or when the gate goes away (the IPC channel closes): a restarted gate
 * starts its nodes again on the recorded ports.
 */
import { execFileSync } from 'node:child_process';
import { connect, type AddressInfo, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { destination, pino } from 'pino';
import { parseAuthorizedKey } from './host-key.js';
import { NodeDirectory } from './node-directory.js';
import { NodeServer, listenOn } from './node-server.js';
import { NodeSpec, type NodeCommand, type NodeReport } from './node-spec.js';
import { FORWARD_KEYS_FILE } from '../../terminal-protocol/forward-keys.js';
import { spliceStreams } from '../../terminal-protocol/streams.js';

const report = (message: NodeReport): void => {
  process.send?.(message);
};

/** Become the account: groups first, then the group, then the user; checked, since a half drop is worse than none. */
function dropTo(account: { uid: number; gid: number }): void {
  process.setgroups!([]);
  process.setgid!(account.gid);
  process.setuid!(account.uid);
  if (process.getuid!() !== account.uid || process.geteuid!() !== account.uid || process.getgid!() !== account.gid)
    throw new Error(`could not drop to uid ${account.uid}`);
  let regained = false;
  try {
    process.setuid!(0);
    regained = true;
  } catch {
    // expected: the drop is permanent
  }
  if (regained) throw new Error('the node process could become root again');
}

/**
 * What can be done before the node is known, done while the process waits as a spare: its loopback, the
 * logger, and a first (compiling) pass of the spec's validation. Cuts a partition's start by tens of ms.
 */
const PRIVATE_NETWORK = process.argv.includes('--private-network');
if (PRIVATE_NETWORK) execFileSync('ip', ['link', 'set', 'lo', 'up'], { stdio: 'ignore' });
const baseLogger = pino({ name: 'node', level: 'trace' }, destination(2));
NodeSpec.safeParse({});

async function start(raw: unknown, listener: Server | undefined): Promise<void> {
  const spec = NodeSpec.parse(raw);
  if (!listener) throw new Error('no listening socket was handed over');
  if (spec.privateNetwork !== PRIVATE_NETWORK) throw new Error('the node process was not started in the network namespace the node needs');
  const logger = baseLogger.child({ node: spec.node }, { level: spec.logLevel });
  const directory = await NodeDirectory.open(spec.directory);
  const authorizedKey = parseAuthorizedKey(spec.authorizedKey);
  // Where the partition's other nodes reach this one, in the network they share: the gate's port, at our own address.
  const port = (listener.address() as AddressInfo).port;
  const peers = spec.privateAddress
    ? await listenForPeers(spec.privateAddress, port).catch((error: NodeJS.ErrnoException) => {
        // Without a network of its own, the address is the machine's: someone may hold the port there.
        if (spec.privateNetwork) throw error;
        baseLogger.warn({ node: spec.node, address: spec.privateAddress, port, err: error.code ?? error.message }, 'peers cannot reach this node: its port is taken at its address');
        return null;
      })
    : null;
  if (spec.account) dropTo(spec.account);
  process.chdir(directory.root);
  const server = NodeServer.serve(
    listener,
    { directory, hostKey: spec.hostKey, authorizedKey, user: spec.user, env: spec.env, logger, peerKeysFile: join(directory.root, '.ssh', 'authorized_keys'), forwardKeysFile: join(directory.root, FORWARD_KEYS_FILE) },
    peers,
  );
  process.on('message', (command: NodeCommand, handle: unknown) => {
    if (command?.type === 'stop') void server.close().then(() => process.exit(0));
    else if (command?.type === 'publish' && handle) publish(handle as Server, command.port);
  });
  report({ type: 'ready', port: server.port });
}

/** Listen on the node's private address; a restarted node's predecessor may hold it for a moment yet. */
async function listenForPeers(address: string, port: number): Promise<Server> {
  const deadline = Date.now() + 5_000;
  for (;;) {
    try {
      return await listenOn(address, port);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE' || Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

/**
 * A port published on the machine's loopback: each connection is joined to the same port on the node's own
 * loopback, as a cloud VM's published port is reached at its address. While nothing listens there, the
 * connection is reset, as a VM's closed port refuses it: closed normally instead (after it was accepted),
 * it looks to an HTTP client like a server that hung up mid-request, and undici's fetch can then wait for
 * ever (the JupyterHub spawner test's flake).
 */
function publish(listener: Server, port: number): void {
  listener.on('connection', (outside: Socket) => {
    outside.pause();
    const inside = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    const refuse = () => {
      if (!outside.destroyed) outside.resetAndDestroy();
    };
    inside.once('error', refuse);
    // A client that gives up while the node connects: nothing to join.
    const giveUp = () => inside.destroy();
    outside.once('error', giveUp);
    outside.once('close', giveUp);
    inside.once('connect', () => {
      inside.off('error', refuse);
      outside.off('error', giveUp);
      outside.off('close', giveUp);
      outside.setNoDelay(true);
      inside.setNoDelay(true);
      spliceStreams(outside, inside);
      outside.resume();
    });
  });
}

process.on('disconnect', () => process.exit(0));
// Also when the gate is gone without the channel saying so (killed while this process was busy): its parent changes.
const gate = process.ppid;
setInterval(() => {
  if (process.ppid !== gate || !process.connected) process.exit(0);
}, 1_000).unref();
process.once('message', (message: unknown, handle: unknown) => {
  start(message, handle as Server | undefined).catch((error: unknown) => {
    report({ type: 'failed', reason: (error as Error)?.message ?? String(error) });
    process.exitCode = 1;
    process.disconnect?.();
  });
});
