import type { SFTPWrapper } from 'ssh2';
import type { PartitionNode } from '../../terminal-protocol/common.js';
import { shellQuote, type NodeSession } from './node-session.js';

/**
 * SSH from node to node, so that MPI, torch.distributed, DeepSpeed or Ray start across a partition as they do
 * under SkyPilot or Slurm. At connect, the core puts in each node's ~/.ssh:
 *
 *   id_ed25519, id_ed25519.pub   the partition's inter-node key (core/nodes/partition-keys.ts: interNodeKeys)
 *   authorized_keys              + the inter-node public key (appended once; the partition key stays)
 *   known_hosts                  every node's host key, as the core verified it against the pinned fingerprint,
 *                                under the address and port peers use: no first-use trust
 *   config                       one Host entry per node (its address and name: port, user), and for all of
 *                                them the key, that known_hosts, StrictHostKeyChecking yes, BatchMode yes
 *
 * Peers reach a node at its private address (else its public one) on its SSH port. Paths in `config` are
 * absolute (the node's $HOME), because the local gate's `ssh` reads it with `-F` (OpenSSH looks for ~/.ssh in
 * the account's passwd entry, not $HOME). Everything is rewritten at each connect: idempotent.
 */

/** One node as its peers reach it. */
export interface Peer {
  name: string;
  address: string;
  port: number;
  user: string;
  /** The host public key the node presented to the core (verified), OpenSSH `type base64`. */
  hostKey: string;
}

export const peerOf = (node: PartitionNode, hostKey: string): Peer => ({
  name: node.name,
  address: node.privateIp || node.publicIp || node.name,
  port: node.sshPort,
  user: node.sshUser,
  hostKey,
});

/** How known_hosts names a host on a port (OpenSSH: the bare address on 22, `[address]:port` otherwise). Pure. */
export const knownHostName = (address: string, port: number): string => (port === 22 ? address : `[${address}]:${port}`);

/** known_hosts for a partition's nodes. Pure. */
export const knownHostsText = (peers: readonly Peer[]): string => peers.map((p) => `${knownHostName(p.address, p.port)} ${p.hostKey}\n`).join('');

/** Host names OpenSSH's config can carry: no blanks, no pattern characters, nothing to quote. */
const configSafe = (value: string): boolean => /^[A-Za-z0-9._:@%+-]+$/.test(value);

/** ~/.ssh/config for a partition's nodes; `home` is the node's $HOME (absolute). Pure. */
export function sshConfigText(peers: readonly Peer[], home: string, partition: string): string {
  const lines = [`# Sky Port: the nodes of partition ${partition.replace(/[\r\n]/g, ' ')} (written by swm-core at each job's connect)`];
  for (const p of peers) {
    if (!configSafe(p.address) || !configSafe(p.user)) continue;
    const names = [p.address, ...(configSafe(p.name) && p.name !== p.address ? [p.name] : [])];
    lines.push(`Host ${names.join(' ')}`, `  HostName ${p.address}`, `  Port ${p.port}`, `  User ${p.user}`);
  }
  const quoted = (path: string) => `"${path.replace(/"/g, '')}"`;
  lines.push(
    'Host *',
    `  IdentityFile ${quoted(`${home}/.ssh/id_ed25519`)}`,
    '  IdentitiesOnly yes',
    `  UserKnownHostsFile ${quoted(`${home}/.ssh/known_hosts`)}`,
    '  StrictHostKeyChecking yes',
    '  UpdateHostKeys no',
    '  BatchMode yes',
    '  LogLevel ERROR',
  );
  return lines.join('\n') + '\n';
}

const writeFile = (sftp: SFTPWrapper, path: string, content: string, mode: number): Promise<void> =>
  new Promise((resolve, reject) => sftp.writeFile(path, content, { mode }, (e) => (e ? reject(e) : resolve())));

/**
 * Make `session`'s node reach every peer over SSH: the files above, written over SFTP (a private key never
 * goes on a command line, where other processes could read it).
 */
export async function linkNode(
  session: NodeSession,
  peers: readonly Peer[],
  keys: { privateKey: string; publicKey: string },
  partition: string,
  signal?: AbortSignal,
): Promise<void> {
  const publicKey = keys.publicKey.trim();
  const home = (
    await session.run(
      `umask 077 && mkdir -p "$HOME/.ssh" && chmod 700 "$HOME/.ssh" && cd "$HOME/.ssh" && ` +
        `{ grep -qxF ${shellQuote(publicKey)} authorized_keys 2>/dev/null || printf '%s\\n' ${shellQuote(publicKey)} >> authorized_keys; } && ` +
        `chmod 600 authorized_keys && rm -f id_ed25519 && printf '%s' "$HOME"`,
      signal,
    )
  ).trim();
  if (!home.startsWith('/')) throw new Error(`node ${session.node.name} reports no home directory`);
  const sftp = await session.sftp();
  const dir = `${home}/.ssh`;
  await Promise.all([
    writeFile(sftp, `${dir}/id_ed25519`, keys.privateKey.endsWith('\n') ? keys.privateKey : `${keys.privateKey}\n`, 0o600),
    writeFile(sftp, `${dir}/id_ed25519.pub`, `${publicKey}\n`, 0o644),
    writeFile(sftp, `${dir}/known_hosts`, knownHostsText(peers), 0o644),
    writeFile(sftp, `${dir}/config`, sshConfigText(peers, home, partition), 0o600),
  ]);
  // Whatever the SFTP server's umask made of them: OpenSSH refuses a private key or a config others can read.
  await session.run(`cd "$HOME/.ssh" && chmod 600 id_ed25519 config && chmod 644 id_ed25519.pub known_hosts`, signal);
}
