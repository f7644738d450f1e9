import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { isIP } from 'node:net';
import { pino } from 'pino';
import { GUEST_READY_MARKER } from '../../gates/azure/cloud-init.js';
import { FORWARD_KEYS_FILE } from '../../terminal-protocol/forward-keys.js';
import { hostKeyFingerprint, parseAuthorizedKey } from '../../gates/local/host-key.js';
import { NodeDirectory } from '../../gates/local/node-directory.js';
import { NodeServer } from '../../gates/local/node-server.js';
import type { FakeArm } from '../fakes/azure-arm/index.js';

const VM = 'microsoft.compute/virtualmachines';

/**
 * A played VM's cloud-init, as far as the guest check asks it: `status [--wait] [--long]`, done once the first
 * boot's last command wrote its marker (the fake's guest-ready time), running before; `--wait` returns then.
 */
const PLAYED_CLOUD_INIT = `#!/bin/sh
marker="$HOME/${GUEST_READY_MARKER}"
[ "$1" = status ] || { echo "cloud-init (played): only status is played" >&2; exit 1; }
shift
# A VM deleted while its guest is checked takes its cloud-init with it: a played one goes with its home directory.
for a in "$@"; do [ "$a" = --wait ] && while [ ! -f "$marker" ]; do [ -d "$HOME" ] || exit 1; sleep 0.1; done; done
if [ -f "$marker" ]; then echo "status: done"; else echo "status: running"; fi
`;
const NIC = 'Microsoft.Network/networkInterfaces';
const PUBLIC_IP = 'Microsoft.Network/publicIPAddresses';
const SSHD_DROP_IN = /^\/etc\/ssh\/sshd_config\.d\//;
const SOCKET_DROP_IN = /^\/etc\/systemd\/system\/ssh\.socket\.d\//;
/** What a played node's guest has once cloud-init's final stage is done (in the node's home directory). */
export const GUEST_READY_FILE = GUEST_READY_MARKER;

/** What a VM's first boot makes of its custom data, as far as SSH goes. */
export interface FirstBoot {
  /** The host private key cloud-init installs (the only one: the image's own are deleted). */
  hostKey: string;
  /** The port sshd listens on once cloud-init has written its drop-in. */
  sshPort: number;
  /** sshd's key files beyond the default (its drop-in's AuthorizedKeysFile), relative to the admin's home. */
  keyFiles: string[];
}

/** One Azure VM played by a sandbox node SSH server on loopback. */
export interface PlayedNode {
  vm: string;
  /** The node with a public IP (the head) is reached there; the others only on their private network. */
  role: 'head' | 'compute';
  /** The VM's public IP (a loopback address the fake handed out), or the loopback stand-in of its private IP. */
  host: string;
  port: number;
  /** The VM's admin user: the only login accepted. */
  user: string;
  hostKeyFingerprint: string;
  /** The node's file system (the admin user's home). */
  directory: string;
}

/**
 * Reads a VM's custom data the way cloud-init would on the default image, Ubuntu 24.04: a `#cloud-config`
 * document (the gate writes it as JSON, which is YAML) whose `ssh_keys` hold the host key. SSH listens
 * through systemd's ssh.socket: the port moves only when the socket is reconfigured and restarted (systemd
 * reloaded, then ssh.socket restarted), to the drop-in's `ListenStream` (or, through Ubuntu's generator, to
 * sshd's `Port`); an sshd `Port` with only sshd restarted leaves the listener on 22.
 */
export function readFirstBoot(customData: string): FirstBoot {
  const text = Buffer.from(customData, 'base64').toString('utf8');
  const header = '#cloud-config\n';
  if (!text.startsWith(header)) throw new Error('custom data is not a #cloud-config document');
  const config = JSON.parse(text.slice(header.length)) as {
    ssh_keys?: Record<string, string>;
    write_files?: { path: string; content: string }[];
    runcmd?: (string | string[])[];
  };
  const privateKeys = Object.entries(config.ssh_keys ?? {}).filter(([name]) => name.endsWith('_private'));
  if (privateKeys.length !== 1) throw new Error(`cloud-init installs ${privateKeys.length} host keys, not one`);
  const files = config.write_files ?? [];
  const sshdPorts = files.filter((f) => SSHD_DROP_IN.test(f.path)).flatMap((f) => [...f.content.matchAll(/^Port (\d+)$/gm)].map((m) => Number(m[1])));
  const socketPorts = files.filter((f) => SOCKET_DROP_IN.test(f.path)).flatMap((f) => [...f.content.matchAll(/^ListenStream=(\d+)$/gm)].map((m) => Number(m[1])));
  const commands = (config.runcmd ?? []).map((c) => (Array.isArray(c) ? c.join(' ') : c)).join('\n');
  const socketRestarted = /daemon-reload/.test(commands) && /restart ssh\.socket/.test(commands);
  const sshPort = socketRestarted ? (socketPorts.at(-1) ?? sshdPorts.at(-1) ?? 22) : 22;
  const keyFiles = files.filter((f) => SSHD_DROP_IN.test(f.path)).flatMap((f) => [...f.content.matchAll(/^AuthorizedKeysFile (.+)$/gm)].flatMap((m) => m[1]!.split(/\s+/)));
  return { hostKey: privateKeys[0]![1], sshPort, keyFiles: keyFiles.filter((k) => k !== '.ssh/authorized_keys') };
}

/** A private address 10.b.c.d stands for 127.b.c.d on loopback, so every node can listen on the same port. */
export function loopbackOf(privateIp: string): string {
  const parts = privateIp.split('.');
  if (isIP(privateIp) !== 4 || parts[0] !== '10') throw new Error(`private IP ${privateIp} is not in 10.0.0.0/8`);
  return ['127', ...parts.slice(1)].join('.');
}

const sameId = (a: unknown, b: unknown): boolean => typeof a === 'string' && typeof b === 'string' && a.toLowerCase() === b.toLowerCase();

/**
 * Plays the VMs a fake Azure provisions: when a VM's creation succeeds, a node SSH server of the local
 * gate starts for it, with the host key from its cloud-init, the partition key from its osProfile and
 * its admin user, on the port cloud-init gives sshd, at its public IP (the head: the fake must hand out
 * loopback addresses) or at the loopback stand-in of its private IP (the other nodes, which the core does
 * not dial). Failures to start are collected in `failures` for the test to assert on.
 */
export class AzureNodes {
  readonly failures: string[] = [];
  private readonly running = new Map<string, { node: PlayedNode; server: NodeServer }>();
  /** VMs being played or about to be (ids, lower case). */
  private readonly claimed = new Set<string>();
  private readonly starting = new Set<Promise<void>>();
  /** VMs whose guest is ready (ids, lower case). */
  private readonly ready = new Set<string>();
  private readonly logger = pino({ level: 'silent' });

  private constructor(
    private readonly fake: FakeArm,
    private readonly root: string,
  ) {}

  /** Start playing every VM `fake` provisions from now on; node directories go under `root`. */
  static attach(fake: FakeArm, root: string): AzureNodes {
    const nodes = new AzureNodes(fake, root);
    mkdirSync(join(root, 'bin'), { recursive: true });
    writeFileSync(join(root, 'bin', 'cloud-init'), PLAYED_CLOUD_INIT, { mode: 0o755 });
    fake.onProvisioned((resource, customData) => nodes.provisioned(resource, customData));
    fake.onGuestReady((vm) => nodes.guestReady(String(vm.id).toLowerCase()));
    return nodes;
  }

  /** The nodes being played now, in the order their VMs came up. */
  nodes(): PlayedNode[] {
    return [...this.running.values()].map((r) => r.node);
  }

  /** The machine of one VM is gone (Azure took a Spot VM back): its node server stops answering. */
  async vanish(vmId: string): Promise<void> {
    const key = vmId.toLowerCase();
    const running = this.running.get(key);
    this.running.delete(key);
    this.ready.delete(key);
    await running?.server.close();
  }

  /** Stop every node server (their VMs are gone, or the test is over). */
  async stop(): Promise<void> {
    await Promise.all([...this.starting]);
    const servers = [...this.running.values()].map((r) => r.server);
    this.running.clear();
    this.claimed.clear();
    this.ready.clear();
    await Promise.all(servers.map((s) => s.close()));
  }

  private provisioned(vm: Record<string, any>, customData: string | undefined): void {
    if (String(vm.type).toLowerCase() !== VM) return;
    const key = String(vm.id).toLowerCase();
    // A VM PUT again (an idempotent retry) is provisioned again: it is the same machine.
    if (this.claimed.has(key)) return;
    this.claimed.add(key);
    let node: PlayedNode;
    let boot: FirstBoot;
    let authorized: string;
    try {
      // Read now, in the tick the VM succeeded: the resources may be deleted by the next one.
      ({ node, boot, authorized } = this.describe(vm, customData));
    } catch (error) {
      this.failures.push(`${vm.name}: ${(error as Error).message}`);
      return;
    }
    const start = this.serve(key, node, boot, authorized)
      .catch((error: Error) => void this.failures.push(`${vm.name}: ${error.message}`))
      .finally(() => this.starting.delete(start));
    this.starting.add(start);
  }

  /** cloud-init's final stage is done on this VM: its last command writes the marker a job can look for. */
  private guestReady(key: string): void {
    this.ready.add(key);
    const running = this.running.get(key);
    if (running) this.markReady(running.node);
  }

  private markReady(node: PlayedNode): void {
    try {
      mkdirSync(dirname(join(node.directory, GUEST_READY_FILE)), { recursive: true });
      writeFileSync(join(node.directory, GUEST_READY_FILE), `${new Date().toISOString()}\n`);
    } catch (error) {
      this.failures.push(`${node.vm}: cannot mark its guest ready: ${(error as Error).message}`);
    }
  }

  private describe(vm: Record<string, any>, customData: string | undefined): { node: PlayedNode; boot: FirstBoot; authorized: string } {
    if (customData === undefined) throw new Error('created without custom data: nothing would pin its host key');
    const boot = readFirstBoot(customData);
    const os = vm.properties?.osProfile ?? {};
    const keys: { keyData: string }[] = os.linuxConfiguration?.ssh?.publicKeys ?? [];
    if (keys.length !== 1) throw new Error(`${keys.length} authorized keys, not one`);
    const nicId = vm.properties?.networkProfile?.networkInterfaces?.[0]?.id;
    const nic = this.fake.resources(NIC).find((n) => sameId(n.id, nicId));
    const ipConfig = nic?.properties?.ipConfigurations?.[0]?.properties;
    if (!ipConfig) throw new Error(`network interface ${nicId} not found`);
    const publicIpId = ipConfig.publicIPAddress?.id;
    const publicIp: string | undefined = publicIpId ? this.fake.resources(PUBLIC_IP).find((p) => sameId(p.id, publicIpId))?.properties?.ipAddress : undefined;
    if (publicIp !== undefined && !publicIp.startsWith('127.')) throw new Error(`public IP ${publicIp} is not on loopback: start the fake with publicIpAddresses`);
    const node: PlayedNode = {
      vm: vm.name,
      role: publicIp ? 'head' : 'compute',
      host: publicIp ?? loopbackOf(ipConfig.privateIPAddress),
      port: boot.sshPort,
      user: os.adminUsername,
      hostKeyFingerprint: hostKeyFingerprint(boot.hostKey),
      directory: join(this.root, vm.name),
    };
    return { node, boot, authorized: keys[0]!.keyData };
  }

  private async serve(key: string, node: PlayedNode, boot: FirstBoot, authorized: string): Promise<void> {
    const directory = await NodeDirectory.open(node.directory);
    node.directory = directory.root;
    const server = await NodeServer.start({
      directory,
      hostKey: boot.hostKey,
      authorizedKey: parseAuthorizedKey(authorized),
      user: node.user,
      host: node.host,
      port: node.port,
      // The VM's own commands first: its cloud-init.
      env: { PATH: `${join(this.root, 'bin')}:${process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin'}`, USER: node.user, LOGNAME: node.user, SHELL: '/bin/sh' },
      logger: this.logger.child({ node: node.vm }),
      // The VNet: a VM reaches the others at their private addresses, played on loopback.
      privateNetwork: (address) => (address.startsWith('10.') ? loopbackOf(address) : null),
      // Of sshd's other key files, the played server knows the forward keys' (restricted to what they permit).
      ...(boot.keyFiles.includes(FORWARD_KEYS_FILE) ? { forwardKeysFile: join(directory.root, FORWARD_KEYS_FILE) } : {}),
    });
    this.running.set(key, { node, server });
    if (this.ready.has(key)) this.markReady(node);
  }
}
