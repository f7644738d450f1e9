import type { NodeHostKey } from './host-keys.js';

export interface CloudInitInput {
  adminUser: string;
  hostKey: NodeHostKey;
  containerRuntime: 'podman' | 'docker';
  /** Pulled at boot so that the job starts without waiting for it; null when the job names none. */
  containerImage: string | null;
  sshPort: number;
}

/**
 * The node's first-boot configuration. It is JSON under the `#cloud-config` header (JSON is YAML that
 * cloud-init reads), so no value can break out of its field. The VM is created with password login
 * disabled and the partition's public key authorized; this adds:
 * - the host key the core pinned (and no other: existing keys are deleted, none are generated),
 * - sshd hardening (no passwords, no keyboard-interactive, no root),
 * - the container runtime, and the job's image pulled as the admin user (who runs the job),
 * - the instance metadata endpoint closed to everything but root (jobs run as the admin user, rootless
 *   containers as the admin user too, docker's containers through FORWARD): the VM has no managed identity,
 *   so the endpoint holds no token, but it would tell a job its subscription, resource group and tags.
 */
/** Azure's instance metadata service (IMDS), reachable from every VM. */
export const METADATA_ENDPOINT = '169.254.169.254';

/** Firewall rules that keep the metadata endpoint for root (the guest agent, cloud-init) alone. */
const closeMetadataEndpoint: string[][] = [
  ['iptables', '-I', 'OUTPUT', '-d', METADATA_ENDPOINT, '-m', 'owner', '!', '--uid-owner', '0', '-j', 'REJECT'],
  ['iptables', '-I', 'FORWARD', '-d', METADATA_ENDPOINT, '-j', 'REJECT'],
];

/**
 * Where the last command of the first boot writes that the node is configured. The guest-readiness
 * check (guest-ready.ts) waits for cloud-init's final stage and reads this file.
 */
export const GUEST_READY_MARKER = '/var/lib/skyport/guest-ready';

/**
 * systemd's drop-in for ssh.socket. Ubuntu 22.10 and later (the default 24.04 image included) start sshd
 * through socket activation: the socket unit, not sshd's `Port`, decides where SSH listens. The empty
 * `ListenStream=` clears the unit's own port 22; the second sets ours (IPv4 and IPv6).
 */
export const SSH_SOCKET_DROP_IN = '/etc/systemd/system/ssh.socket.d/10-skyport.conf';

/**
 * Applies the SSH configuration whichever way the image starts sshd: with socket activation (the unit file
 * exists), reload systemd to read the drop-in and restart the socket and the daemon; without, restart sshd,
 * which reads `Port` from its drop-in.
 */
const restartSsh =
  'systemctl daemon-reload; if systemctl cat ssh.socket >/dev/null 2>&1; then systemctl restart ssh.socket && systemctl restart ssh.service; else systemctl try-reload-or-restart ssh; fi';

export function cloudConfig(input: CloudInitInput): string {
  const { adminUser, hostKey, containerRuntime, containerImage, sshPort } = input;
  const sshd = ['PasswordAuthentication no', 'KbdInteractiveAuthentication no', 'PermitRootLogin no', ...(sshPort !== 22 ? [`Port ${sshPort}`] : [])];
  const runtimeSetup = containerRuntime === 'docker' ? [['usermod', '-aG', 'docker', adminUser]] : [['loginctl', 'enable-linger', adminUser]];
  const pull = containerImage
    ? [containerRuntime === 'docker' ? ['docker', 'pull', containerImage] : ['sudo', '-iu', adminUser, 'podman', 'pull', containerImage]]
    : [];
  const socket = sshPort !== 22 ? [{ path: SSH_SOCKET_DROP_IN, permissions: '0644', owner: 'root:root', content: `[Socket]\nListenStream=\nListenStream=${sshPort}\n` }] : [];
  const config = {
    ssh_pwauth: false,
    disable_root: true,
    ssh_deletekeys: true,
    ssh_genkeytypes: [],
    ssh_keys: { [`${hostKey.kind}_private`]: hostKey.privateKey, [`${hostKey.kind}_public`]: hostKey.publicLine },
    write_files: [{ path: '/etc/ssh/sshd_config.d/10-skyport.conf', permissions: '0644', owner: 'root:root', content: `${sshd.join('\n')}\n` }, ...socket],
    package_update: true,
    packages: [containerRuntime === 'docker' ? 'docker.io' : 'podman'],
    runcmd: [
      ...closeMetadataEndpoint,
      ['sh', '-c', restartSsh],
      ...runtimeSetup,
      ...pull,
      // Last: the node is configured. runcmd stops at nothing, so the readiness check also waits for cloud-init's verdict.
      ['sh', '-c', `mkdir -p ${GUEST_READY_MARKER.slice(0, GUEST_READY_MARKER.lastIndexOf('/'))} && date -u +%FT%TZ > ${GUEST_READY_MARKER}`],
    ],
  };
  return `#cloud-config\n${JSON.stringify(config, null, 2)}\n`;
}

/** What Azure takes as `osProfile.customData`: the configuration in base64. Never logged. */
export const customDataOf = (input: CloudInitInput): string => Buffer.from(cloudConfig(input), 'utf8').toString('base64');
