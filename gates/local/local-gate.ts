import { createHash, randomUUID } from 'node:crypto';
import { execFile } from 'node:child_process';
import { accessSync, constants as fsConstants, existsSync } from 'node:fs';
import { chmod, chown, mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { delimiter, join } from 'node:path';
import { promisify } from 'node:util';
import type { Logger } from 'pino';
import { writeFileAtomicAsync } from '../../spool-bootstrap/files.js';
import type { Flavor, Image, Partition } from '../../terminal-protocol/common.js';
import { ErrorCode, RpcError, notFound } from '../../terminal-protocol/errors.js';
import type { PartitionRequest } from '../../terminal-protocol/gate-methods.js';
import type { Gate, GateContext } from '../gate.js';
import { generateHostKey, hostKeyFingerprint, parseAuthorizedKey } from './host-key.js';
import { NodeAccounts, canIsolate, type NodeAccount } from './node-accounts.js';
import { seedImages } from './node-images.js';
import { NodeLauncher, NodeProcess } from './node-process.js';
import { parseLocalGateOptions, type LocalGateOptions } from './options.js';
import { LocalGateStore, type PartitionRecord } from './state.js';

const LOOPBACK = '127.0.0.1';
const run = promisify(execFile);

/**
 * A node's own address, where the partition's other nodes reach it: 127.0.0.2 for the head, 127.0.0.3 for
 * the next, ... (all of 127.0.0.0/8 is the loopback). A node listens there, on the port of the gate's
 * listener, in its partition's network namespace (a gate that does not isolate: on the machine's). Pure.
 */
export function privateAddress(index: number): string {
  const n = index + 2;
  return `127.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`;
}

/** The network namespaces of partitions (`ip netns`), shared by a partition's nodes. */
const NETNS_DIR = '/run/netns';

const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex');
/** The prefix of the network namespaces of one gate's partitions (of the 12 hex naming its nodes root). Pure. */
const netnsPrefix = (gateHex: string): string => `swm-${gateHex.slice(0, 8)}-`;

/** The name of a multi-node partition's network namespace: unique per gate, partition and creation. Pure. */
export const netnsName = (stateRoot: string, record: { id: string; name: string }): string =>
  `${netnsPrefix(sha256(stateRoot))}${sha256(`${stateRoot}\0${record.name}\0${record.id}`).slice(0, 12)}`;

/** Delete the network namespaces of a gate (its prefix) except those kept. Best effort. */
async function sweepNamespaces(prefix: string, keep: ReadonlySet<string>, logger: Logger): Promise<void> {
  for (const name of await readdir(NETNS_DIR).catch(() => [] as string[])) {
    if (!name.startsWith(prefix) || keep.has(name)) continue;
    await run('ip', ['netns', 'delete', name]).then(
      () => logger.info({ netns: name }, 'removed a network namespace no partition uses'),
      () => undefined,
    );
  }
}

/** An executable of that name on PATH, or null. */
function onPath(name: string): string | null {
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(delimiter)) {
    const path = join(dir, name);
    try {
      accessSync(path, fsConstants.X_OK);
      return path;
    } catch {
      // not here
    }
  }
  return null;
}

/**
 * `ssh` and `scp` for the nodes, first on their PATH: OpenSSH finds ~/.ssh through the account's passwd entry,
 * not $HOME (the node directory, where the core put the partition's SSH keys and configuration,
 * core/nodes/inter-node-ssh.ts), so these point it at $HOME/.ssh/config. Pure.
 */
export function sshWrapper(program: string): string {
  return `#!/bin/sh
# Sky Port: OpenSSH reads ~/.ssh from the account's passwd entry, not from $HOME (the node directory).
if [ -r "$HOME/.ssh/config" ]; then exec ${program} -F "$HOME/.ssh/config" "$@"; fi
exec ${program} "$@"
`;
}

/** Node names of a partition: `<partition>-0` is the head. Pure. */
export const nodeNames = (partition: string, count: number): string[] => Array.from({ length: count }, (_, i) => `${partition}-${i}`);

/** What the wire shows of a partition record. Pure. */
export function partitionView(record: PartitionRecord, gateUser: string): Partition {
  const sshUser = record.account ?? gateUser;
  const serving = record.status === 'up';
  return {
    id: record.id,
    name: record.name,
    status: record.status,
    jobId: record.jobId,
    nodes: serving
      ? record.nodes.map((node, i) => ({
          name: node.name,
          role: i === 0 ? 'head' : 'compute',
          publicIp: LOOPBACK,
          privateIp: privateAddress(i),
          sshPort: node.port!,
          sshUser,
          hostKeyFingerprint: node.hostKeyFingerprint,
        }))
      : [],
    ...(record.error ? { error: record.error } : {}),
  };
}

const loginName = (): string => {
  try {
    return userInfo().username;
  } catch {
    return process.env.USER ?? 'root';
  }
};

/** How often a node process may end on its own before its partition is failed. */
const NODE_RESTARTS = 5;
const NODE_RESTART_WINDOW_MS = 60_000;

/** Where isolated nodes live: outside the spool, whose directories their accounts cannot pass through. */
const ISOLATED_NODES_ROOT = '/var/lib/skyport/nodes';

/** Names the state directory of the gate a nodes root belongs to, so that the root of a removed spool is found. */
const OWNER_FILE = '.owner';

/**
 * Remove the node directories of gates whose spool is gone (removed with partitions still on it): whatever
 * processes their accounts ran were killed when another gate took the accounts over. Best effort.
 */
async function sweepAbandonedNodes(own: string, logger: Logger): Promise<void> {
  for (const name of await readdir(ISOLATED_NODES_ROOT).catch(() => [] as string[])) {
    const root = join(ISOLATED_NODES_ROOT, name);
    if (root === own) continue;
    const owner = await readFile(join(root, OWNER_FILE), 'utf8').catch(() => null);
    // Only a root that names its owner, and whose owner is gone, is abandoned; anything else is left alone.
    if (!owner || existsSync(owner)) continue;
    await rm(root, { recursive: true, force: true }).catch(() => undefined);
    await sweepNamespaces(netnsPrefix(name), new Set(), logger);
    logger.info({ nodes: root, owner }, 'removed the node directories of a gate whose spool is gone');
  }
}

/**
 * The directory holding a gate's node directories: under the gate's state when it cannot isolate, else
 * `/var/lib/skyport/nodes/<12 hex of the state directory>` (one per gate of each spool on the machine).
 */
export function localNodesRoot(stateRoot: string, isolate = canIsolate()): string {
  return isolate ? join(ISOLATED_NODES_ROOT, createHash('sha256').update(stateRoot).digest('hex').slice(0, 12)) : join(stateRoot, 'partitions');
}

/**
 * The environment of commands on a node: a login-like minimum (HOME, set per session, is the node
 * directory) and PATH from the gate. Nodes with an account keep their container state in the partition's
 * account directory and their runtime state in the account's runtime directory; their containers use the
 * node's network, which is a namespace of its own (SWM_CONTAINER_NETWORK tells the job runner so).
 */
function nodeEnvironment(user: string, accountHome: string | null, runtimeDir: string | null, binDir: string | null): Record<string, string> {
  const path = process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin';
  const env: Record<string, string> = {
    PATH: binDir ? `${binDir}${delimiter}${path}` : path,
    USER: user,
    LOGNAME: user,
    SHELL: '/bin/sh',
  };
  for (const name of ['LANG', 'TZ']) if (process.env[name]) env[name] = process.env[name]!;
  if (accountHome && runtimeDir) {
    env.XDG_DATA_HOME = join(accountHome, 'share');
    env.XDG_CONFIG_HOME = join(accountHome, 'config');
    env.XDG_RUNTIME_DIR = runtimeDir;
    env.SWM_CONTAINER_NETWORK = 'host';
  } else {
    for (const name of ['XDG_RUNTIME_DIR', 'XDG_DATA_HOME', 'XDG_CONFIG_HOME', 'CONTAINER_HOST', 'DOCKER_HOST']) if (process.env[name]) env[name] = process.env[name]!;
  }
  return env;
}

/**
 * The `local` gate (DESIGN.md §8): a partition is N sandbox nodes on this machine, each a directory plus
 * an SSH server on a loopback port. State survives a restart: nodes come back on the same ports with the
 * same host keys.
 */
export class LocalGate implements Gate {
  readonly kind = 'local';
  private readonly records = new Map<string, PartitionRecord>();
  private readonly servers = new Map<string, NodeProcess[]>();
  /** Per partition, the tail of its serialised operations (start, delete). */
  private readonly operations = new Map<string, Promise<void>>();
  private readonly listeners: Array<(partition: Partition) => void> = [];
  private readonly store: LocalGateStore;
  private readonly sshUser = loginName();
  /** The nodes' OS accounts; null when the gate cannot isolate them (it does not run as root). */
  private readonly accounts: NodeAccounts | null;
  private readonly launcher: NodeLauncher;
  /** Per partition, when its node processes last ended on their own. */
  private readonly nodeRestarts = new Map<string, number[]>();
  private closed = false;

  constructor(
    private readonly context: GateContext,
    private readonly options: LocalGateOptions,
    private readonly logger: Logger,
  ) {
    const stateRoot = context.spool.gateState(context.name);
    const isolate = canIsolate();
    this.accounts = isolate ? new NodeAccounts(stateRoot, logger) : null;
    this.store = new LocalGateStore(stateRoot, localNodesRoot(stateRoot, isolate));
    this.launcher = new NodeLauncher(isolate, logger);
    if (!isolate)
      logger.warn(
        { user: this.sshUser },
        'the local gate does not run as root: node commands run as the gate\'s own user, with no isolation from the spool',
      );
  }

  /** Load the state and bring back every partition that was creating or up. */
  async restore(): Promise<void> {
    for (const record of this.store.load()) this.records.set(record.id, record);
    if (this.accounts) {
      await sweepAbandonedNodes(this.store.nodesRoot, this.logger);
      // Namespaces of partitions this gate no longer records (deleted while it was down, a crash in between).
      const kept = new Set([...this.records.values()].map((r) => netnsName(this.store.root, r)));
      await sweepNamespaces(netnsPrefix(sha256(this.store.root)), kept, this.logger);
    }
    await this.accounts?.releaseUnrecorded(new Set([...this.records.values()].flatMap((r) => (r.account ? [r.account] : []))));
    const resumed: Promise<void>[] = [];
    for (const record of this.records.values()) {
      // Another core's partitions (the spool's core id changed) are kept as they are, never served.
      if (!this.ownedByThisCore(record)) continue;
      if (record.status === 'creating' || record.status === 'up') resumed.push(this.serialize(record.id, () => this.startNodes(record)));
      else if (record.status === 'deleting') resumed.push(this.serialize(record.id, () => this.removePartition(record)));
    }
    await Promise.all(resumed);
  }

  onEvent(listener: (partition: Partition) => void): void {
    this.listeners.push(listener);
  }

  async create(request: PartitionRequest): Promise<{ id: string; status: 'creating' | 'up' }> {
    this.assertOpen();
    const existing = [...this.records.values()].find((r) => r.name === request.name);
    if (existing) return this.existingCreate(existing);
    if (!this.options.flavors.some((f) => f.name === request.flavor))
      throw new RpcError(ErrorCode.Unschedulable, `gate ${this.context.name} has no flavor "${request.flavor}"`);
    // Refused here, before anything is recorded; node processes parse it again for themselves.
    parseAuthorizedKey(request.sshPublicKey);
    const names = nodeNames(request.name, request.nodeCount);
    const hostKeys = names.map((_, i) => {
      const given = request.hostKeys?.[i];
      if (given === undefined) return generateHostKey();
      try {
        return { privateKey: given, fingerprint: hostKeyFingerprint(given) };
      } catch (error) {
        throw new RpcError(ErrorCode.InvalidParams, `hostKeys.${i}: ${(error as Error).message}`);
      }
    });
    const record: PartitionRecord = {
      id: randomUUID(),
      name: request.name,
      status: 'creating',
      jobId: request.jobId,
      owner: request.owner,
      flavor: request.flavor,
      image: request.image,
      ports: request.ports,
      sshPublicKey: request.sshPublicKey,
      ...(request.containerImages?.length ? { containerImages: request.containerImages } : {}),
      tags: { ...request.tags, job: request.jobId, partition: request.name, core: this.context.coreId },
      createdAt: new Date().toISOString(),
      nodes: names.map((name, i) => ({ name, port: null, hostKeyFingerprint: hostKeys[i]!.fingerprint })),
    };
    // Recorded in memory before the first await, so that a concurrent create of the same name finds it.
    this.records.set(record.id, record);
    try {
      await this.store.writeHostKeys(record.name, names.map((node, i) => ({ node, privateKey: hostKeys[i]!.privateKey })));
      await this.persist();
    } catch (error) {
      this.records.delete(record.id);
      throw error;
    }
    this.logger.info({ partition: record.name, job: record.jobId, nodes: names.length }, 'partition creating');
    this.serialize(record.id, () => this.startNodes(record)).catch((error: unknown) =>
      this.logger.error({ err: error, partition: record.name }, 'partition start failed'),
    );
    return { id: record.id, status: 'creating' };
  }

  async get(ref: { id: string } | { name: string }): Promise<Partition> {
    const record = 'id' in ref ? this.records.get(ref.id) : [...this.records.values()].find((r) => r.name === ref.name);
    if (!record || !this.ownedByThisCore(record)) throw notFound(`partition ${'id' in ref ? ref.id : ref.name}`);
    return this.view(record);
  }

  async list(): Promise<Partition[]> {
    return [...this.records.values()].filter((r) => this.ownedByThisCore(r)).map((r) => this.view(r));
  }

  /** Copy container images into the account's store of an up partition (a partition reused by another image). */
  async prepare(id: string, containerImages: string[]): Promise<void> {
    this.assertOpen();
    const record = this.records.get(id) ?? [...this.records.values()].find((r) => r.name === id);
    if (!record || !this.ownedByThisCore(record)) throw notFound(`partition ${id}`);
    if (record.status !== 'up') throw new RpcError(ErrorCode.Conflict, `partition ${record.name} is ${record.status}, not up`);
    const missing = containerImages.filter((image) => !record.containerImages?.includes(image));
    if (!missing.length) return;
    await this.serialize(record.id, async () => {
      const account = await this.accountFor(record);
      // Without accounts of their own, nodes use the machine's image store, where the images are.
      if (account) {
        const accountHome = join(this.store.partitionDir(record.name), '.account');
        const runtimeDir = await this.accounts!.prepareRuntimeDir(account);
        const env = nodeEnvironment(account.name, accountHome, runtimeDir, null);
        await seedImages(missing, account, { ...env, HOME: accountHome }, accountHome, this.logger.child({ partition: record.name }));
      }
      record.containerImages = [...(record.containerImages ?? []), ...missing];
      await this.persist();
    });
  }

  async delete(id: string): Promise<{ id: string; status: 'deleting' | 'deleted' }> {
    this.assertOpen();
    const record = this.records.get(id);
    if (!record) return { id, status: 'deleted' };
    if (!this.ownedByThisCore(record))
      throw new RpcError(ErrorCode.Forbidden, `partition ${record.name} is tagged for another core; this gate deletes only what it created for ${this.context.coreId}`);
    await this.serialize(id, () => this.removePartition(record));
    return { id, status: 'deleted' };
  }

  async flavors(): Promise<Flavor[]> {
    return this.options.flavors.map((f) => ({
      name: f.name,
      remote: this.context.name,
      cpus: f.cpus,
      gpus: f.gpus,
      memMiB: f.memMiB,
      diskMiB: f.diskMiB,
      pricePerHour: f.pricePerHour,
    }));
  }

  async images(): Promise<Image[]> {
    return [];
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.allSettled([...this.operations.values()]);
    const servers = [...this.servers.values()].flat();
    this.servers.clear();
    await Promise.all(servers.map((s) => s.close()));
    this.launcher.close();
    await this.persist().catch(() => undefined);
  }

  private existingCreate(record: PartitionRecord): { id: string; status: 'creating' | 'up' } {
    if (!this.ownedByThisCore(record)) throw new RpcError(ErrorCode.Conflict, `partition name ${record.name} is taken by another core`);
    if (record.status === 'deleting') throw new RpcError(ErrorCode.Conflict, `partition ${record.name} is being deleted`);
    // A caller repeating its create waits for an event: repeat the last one for a partition that ended.
    if (record.status === 'failed') queueMicrotask(() => this.emit(record));
    return { id: record.id, status: record.status === 'up' ? 'up' : 'creating' };
  }

  private ownedByThisCore(record: PartitionRecord): boolean {
    return record.tags.core === this.context.coreId;
  }

  private view(record: PartitionRecord): Partition {
    return partitionView(record, this.sshUser);
  }

  private emit(record: PartitionRecord, status?: Partition['status']): void {
    const partition = { ...this.view(record), ...(status ? { status } : {}) };
    for (const listener of this.listeners) {
      try {
        listener(partition);
      } catch (error) {
        this.logger.error({ err: error }, 'partition event listener failed');
      }
    }
  }

  private persist(): Promise<void> {
    return this.store.save(() => this.records.values());
  }

  private assertOpen(): void {
    if (this.closed) throw new RpcError(ErrorCode.Unavailable, `gate ${this.context.name} is closing`);
  }

  /** Run operations on one partition one after the other (a delete waits for the start it overtakes). */
  private serialize(id: string, operation: () => Promise<void>): Promise<void> {
    const previous = this.operations.get(id) ?? Promise.resolve();
    const next = previous.then(operation, operation);
    const tail = next.catch(() => undefined);
    this.operations.set(id, tail);
    void tail.then(() => {
      if (this.operations.get(id) === tail) this.operations.delete(id);
    });
    return next;
  }

  /** Listen on every node (recorded ports first), then report up, or failed with the reason. */
  private async startNodes(record: PartitionRecord): Promise<void> {
    try {
      await this.listenOnNodes(record);
    } catch (error) {
      this.fail(record, (error as Error)?.message ?? String(error));
    }
  }

  private async listenOnNodes(record: PartitionRecord): Promise<void> {
    const log = this.logger.child({ partition: record.name, job: record.jobId });
    const firstStart = record.status === 'creating';
    const account = await this.accountFor(record);
    const accountHome = join(this.store.partitionDir(record.name), '.account');
    const runtimeDir = account ? await this.accounts!.prepareRuntimeDir(account) : null;
    await this.prepareDirectories(record, account, accountHome);
    const binDir = await this.prepareSshWrappers(record, account, accountHome, log);
    const env = nodeEnvironment(account?.name ?? this.sshUser, account ? accountHome : null, runtimeDir, binDir);
    if (account && firstStart && record.containerImages?.length)
      await seedImages(record.containerImages, account, { ...env, HOME: accountHome }, accountHome, log);
    // The head first: on a multi-node partition, it makes the network namespace the others join.
    const head = await Promise.allSettled([this.startNode(record, 0, account, env, log)]);
    const others = head[0]!.status === 'fulfilled' ? await Promise.allSettled(record.nodes.slice(1).map((_, i) => this.startNode(record, i + 1, account, env, log))) : [];
    const started = [...head, ...others];
    const servers = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
    const failures = started.flatMap((s, i) => (s.status === 'rejected' ? [describeStartFailure(record.nodes[i]!, s.reason)] : []));
    if (failures.length > 0 || this.closed) {
      await Promise.all(servers.map((s) => s.close()));
      if (failures.length > 0) return this.fail(record, failures.join('; '));
      return;
    }
    this.servers.set(record.id, servers);
    servers.forEach((server, i) => this.superviseNode(record, i, server, account, env, log));
    record.nodes.forEach((node, i) => (node.port = servers[i]!.port));
    record.status = 'up';
    delete record.error;
    await this.persist();
    log.info({ ports: servers.map((s) => s.port), account: account?.name }, 'partition up');
    this.emit(record);
  }

  /**
   * The network namespace a multi-node partition's nodes share (isolating gates only): a path under
   * /run/netns, which outlives the node processes (a restarted node or gate joins it again, and finds the
   * processes its jobs left there). Null for a single node, which keeps a namespace of its own (a spare's).
   */
  private sharedNetns(record: PartitionRecord): string | null {
    return this.accounts && record.account && record.nodes.length > 1 ? join(NETNS_DIR, netnsName(this.store.root, record)) : null;
  }

  /** Start the process of a partition's node `index`, on its recorded port. */
  private async startNode(record: PartitionRecord, index: number, account: NodeAccount | null, env: Record<string, string>, log: Logger): Promise<NodeProcess> {
    const netns = this.sharedNetns(record);
    // The first node started makes the namespace: a spare (in a namespace of its own), then named (`ip netns attach`).
    const join = netns && existsSync(netns) ? netns : null;
    const started = await this.startNodeProcess(record, index, account, env, log, join);
    if (netns && !join) {
      try {
        await run('ip', ['netns', 'attach', netnsName(this.store.root, record), String(started.pid)]);
      } catch (error) {
        await started.close();
        throw new Error(`could not name the partition's network namespace (ip netns attach): ${(error as Error).message.trim()}`);
      }
    }
    return started;
  }

  private async startNodeProcess(record: PartitionRecord, index: number, account: NodeAccount | null, env: Record<string, string>, log: Logger, netns: string | null): Promise<NodeProcess> {
    const node = record.nodes[index]!;
    return NodeProcess.start(
      {
        node: node.name,
        directory: this.store.nodeDir(record.name, node.name),
        hostKey: await this.store.readHostKey(record.name, node.name),
        authorizedKey: record.sshPublicKey,
        user: account?.name ?? this.sshUser,
        env,
        account: account ? { uid: account.uid, gid: account.gid } : null,
        privateNetwork: account !== null,
        privateAddress: privateAddress(index),
        logLevel: this.logger.level,
        // As a cloud opens a VM's inbound ports: the head's `in` ports are reached at its address.
        publishedPorts: account !== null && index === 0 ? record.ports.filter((p) => p.direction === 'in').map((p) => p.port) : [],
      },
      { host: LOOPBACK, port: node.port ?? 0, netns },
      this.launcher,
      log.child({ node: node.name }),
    );
  }

  /**
   * A node process that ends on its own (killed, out of memory) is started again on its port, as a cloud
   * restarts a VM's sshd; within NODE_RESTARTS in NODE_RESTART_WINDOW_MS, after which the partition fails
   * with the reason. Commands the node ran are the account's and go on.
   */
  private superviseNode(record: PartitionRecord, index: number, server: NodeProcess, account: NodeAccount | null, env: Record<string, string>, log: Logger): void {
    server.onUnexpectedExit((how) => {
      if (this.closed || this.servers.get(record.id)?.[index] !== server) return;
      const now = Date.now();
      const recent = (this.nodeRestarts.get(record.id) ?? []).filter((t) => now - t < NODE_RESTART_WINDOW_MS);
      this.nodeRestarts.set(record.id, [...recent, now]);
      const node = record.nodes[index]!.name;
      if (recent.length >= NODE_RESTARTS) return this.fail(record, `node ${node} stopped ${recent.length + 1} times within ${NODE_RESTART_WINDOW_MS / 1000} s (last: ${how})`);
      log.warn({ node, how }, 'node process ended on its own: starting it again');
      this.serialize(record.id, async () => {
        if (this.closed || this.servers.get(record.id)?.[index] !== server) return;
        try {
          const again = await this.startNode(record, index, account, env, log);
          const servers = this.servers.get(record.id);
          if (!servers || this.closed) return void (await again.close());
          servers[index] = again;
          this.superviseNode(record, index, again, account, env, log);
        } catch (error) {
          this.fail(record, describeStartFailure(record.nodes[index]!, error));
        }
      }).catch((error: unknown) => log.error({ err: error }, 'node restart failed'));
    });
  }

  /** The partition's account, recorded in the state before it is made (so a crash in between leaks nothing). */
  private async accountFor(record: PartitionRecord): Promise<NodeAccount | null> {
    if (!this.accounts) return null;
    if (!record.account) {
      record.account = await this.accounts.claim();
      await this.persist();
    }
    return this.accounts.ensure(record.account);
  }

  /**
   * Node directories: 0700 and owned by the account, under directories of the gate's that anyone may pass
   * through but nobody may list (0711), outside the spool.
   */
  private async prepareDirectories(record: PartitionRecord, account: NodeAccount | null, accountHome: string): Promise<void> {
    if (!account) return;
    const partitionDir = this.store.partitionDir(record.name);
    await mkdir(partitionDir, { recursive: true, mode: 0o711 });
    const ownerFile = join(this.store.nodesRoot, OWNER_FILE);
    if (!existsSync(ownerFile)) await writeFileAtomicAsync(ownerFile, this.store.root, 0o600);
    await chmod(this.store.nodesRoot, 0o711);
    await chmod(partitionDir, 0o711);
    for (const dir of [accountHome, ...record.nodes.map((n) => this.store.nodeDir(record.name, n.name))]) {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      await chown(dir, account.uid, account.gid);
    }
  }

  /**
   * Put `ssh` and `scp` wrappers (sshWrapper) in the partition's `.account/bin`, for the nodes' PATH. Null
   * (nothing on PATH) when this machine has no OpenSSH client: the nodes cannot reach one another then.
   */
  private async prepareSshWrappers(record: PartitionRecord, account: NodeAccount | null, accountHome: string, log: Logger): Promise<string | null> {
    const programs = ['ssh', 'scp'].flatMap((name) => {
      const path = onPath(name);
      return path ? [{ name, path }] : [];
    });
    if (!programs.some((p) => p.name === 'ssh')) {
      log.warn({ partition: record.name }, 'no ssh client on this machine: the nodes cannot reach one another over SSH');
      return null;
    }
    const bin = join(accountHome, 'bin');
    await mkdir(bin, { recursive: true, mode: 0o700 });
    for (const { name, path } of programs) await writeFile(join(bin, name), sshWrapper(path), { mode: 0o755 });
    if (account) {
      await chown(bin, account.uid, account.gid);
      // Root's files, the account may run them and not change them.
      await chmod(bin, 0o755);
    }
    return bin;
  }

  private fail(record: PartitionRecord, reason: string): void {
    record.status = 'failed';
    record.error = reason;
    this.persist().catch((error: unknown) => this.logger.error({ err: error, partition: record.name }, 'state not saved'));
    this.logger.warn({ partition: record.name, job: record.jobId, reason }, 'partition failed');
    this.emit(record);
  }

  /**
   * Stop the node processes, kill whatever the partition's account still runs (jobs left behind, container
   * processes) and remove the node directories. Without accounts, processes jobs started are left alone.
   */
  private async removePartition(record: PartitionRecord): Promise<void> {
    if (!this.records.has(record.id)) return;
    record.status = 'deleting';
    await this.persist();
    this.emit(record);
    const servers = this.servers.get(record.id) ?? [];
    this.servers.delete(record.id);
    await Promise.all(servers.map((s) => s.close()));
    if (this.accounts && record.account) {
      const account = await this.accounts.lookup(record.account);
      if (account) await this.accounts.release(account);
    }
    const netns = this.sharedNetns(record);
    if (netns && existsSync(netns))
      await run('ip', ['netns', 'delete', netnsName(this.store.root, record)]).catch((error: Error) =>
        this.logger.warn({ partition: record.name, err: error.message }, 'network namespace not deleted'),
      );
    await this.store.removePartitionFiles(record.name);
    this.records.delete(record.id);
    this.nodeRestarts.delete(record.id);
    await this.persist();
    this.logger.info({ partition: record.name, job: record.jobId }, 'partition deleted');
    this.emit(record, 'deleted');
  }
}

function describeStartFailure(node: { name: string; port: number | null }, error: unknown): string {
  const code = (error as NodeJS.ErrnoException)?.code;
  if (code === 'EADDRINUSE') return `node ${node.name}: port ${node.port} is taken by another process`;
  return `node ${node.name}: ${(error as Error)?.message ?? String(error)}`;
}

/** The `local` gate's factory (gates/registry.ts). */
export async function createLocalGate(context: GateContext): Promise<Gate> {
  const options = parseLocalGateOptions(context.options, context.name);
  const gate = new LocalGate(context, options, context.logger);
  await gate.restore();
  return gate;
}
