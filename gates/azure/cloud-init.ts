import { FORWARD_KEYS_FILE } from '../../terminal-protocol/forward-keys.js';
import type { NodeHostKey } from './host-keys.js';

export interface CloudInitInput {
  adminUser: string;
  hostKey: NodeHostKey;
  containerRuntime: 'podman' | 'docker';
  /** Pulled at boot so that the job starts without waiting for it; null when the job names none. */
  containerImage: string | null;
  sshPort: number;
  /**
   * When the node powers itself off (a systemd timer armed at first boot), whatever happens to the core and the
   * gate: the partition's expiry. Null: no timer.
   */
  expiresAt: Date | null;
  /** The image has the container runtime already (a custom image): no packages to install. */
  runtimeInstalled: boolean;
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
 * Where, in the admin user's home, the last command of the first boot writes that the node is configured. The
 * guest check (guest-ready.ts), run by the core as that user, waits for cloud-init's final stage and reads it.
 */
export const GUEST_READY_MARKER = '.skyport/guest-ready';

/** The first boot's last command: the marker, in the admin user's home, the user's own. */
const guestReadyCommand = (adminUser: string): string => {
  const home = `/home/${adminUser}`;
  const dir = `${home}/${GUEST_READY_MARKER.slice(0, GUEST_READY_MARKER.lastIndexOf('/'))}`;
  return `install -d -m 0755 -o ${adminUser} -g ${adminUser} ${dir} && date -u +%FT%TZ > ${home}/${GUEST_READY_MARKER} && chown ${adminUser}: ${home}/${GUEST_READY_MARKER}`;
};

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

/** The systemd units of the expiry timer (the fake Azure of the tests reads them to play the power-off). */
export const EXPIRY_TIMER = '/etc/systemd/system/skyport-expiry.timer';
export const EXPIRY_SERVICE = '/etc/systemd/system/skyport-expiry.service';

/** systemd's calendar form of an instant, in UTC: `2026-12-01 12:00:00 UTC`. */
export const onCalendarOf = (at: Date): string => `${at.toISOString().slice(0, 19).replace('T', ' ')} UTC`;

/**
 * The node's own safety net: at the partition's expiry it powers off, even if neither the core nor the gate is
 * there to delete it (Persistent: a timer missed while the node was down fires when it is back). A powered-off VM
 * stops its work and its network costs but is still allocated: the gate's reconciliation deletes it.
 */
function expiryTimer(at: Date): { path: string; permissions: string; owner: string; content: string }[] {
  return [
    {
      path: EXPIRY_TIMER,
      permissions: '0644',
      owner: 'root:root',
      content: `[Unit]\nDescription=Sky Port partition expiry\n\n[Timer]\nOnCalendar=${onCalendarOf(at)}\nPersistent=true\nAccuracySec=1s\n\n[Install]\nWantedBy=timers.target\n`,
    },
    {
      path: EXPIRY_SERVICE,
      permissions: '0644',
      owner: 'root:root',
      content: '[Unit]\nDescription=Power off: the Sky Port partition has expired\n\n[Service]\nType=oneshot\nExecStart=/usr/sbin/shutdown -P now\n',
    },
  ];
}

export function cloudConfig(input: CloudInitInput): string {
  const { adminUser, hostKey, containerRuntime, containerImage, sshPort, expiresAt, runtimeInstalled } = input;
  // The forward keys (terminal-protocol/forward-keys.ts) are a second key file: the core adds and removes `swm forward`'s
  // restricted keys there and never rewrites the one holding the partition's key.
  const sshd = [
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'PermitRootLogin no',
    `AuthorizedKeysFile .ssh/authorized_keys ${FORWARD_KEYS_FILE}`,
    ...(sshPort !== 22 ? [`Port ${sshPort}`] : []),
  ];
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
    write_files: [
      { path: '/etc/ssh/sshd_config.d/10-skyport.conf', permissions: '0644', owner: 'root:root', content: `${sshd.join('\n')}\n` },
      ...socket,
      ...(expiresAt ? expiryTimer(expiresAt) : []),
    ],
    // A custom image has the runtime (and Node, for the node agent) already: no package index to refresh, nothing to
    // install. On a stock image: the runtime, and `nodejs` (18 on Ubuntu 24.04), which runs the core's node agent
    // (node-agent/agent.ts); without it the core works through SSH commands alone.
    ...(runtimeInstalled ? {} : { package_update: true, packages: [containerRuntime === 'docker' ? 'docker.io' : 'podman', 'nodejs'] }),
    runcmd: [
      ...closeMetadataEndpoint,
      // The expiry timer first (restartSsh reloads systemd, which reads its units).
      ['sh', '-c', restartSsh],
      ...(expiresAt ? [['systemctl', 'enable', '--now', 'skyport-expiry.timer']] : []),
      ...runtimeSetup,
      ...pull,
      // Last: the node is configured. runcmd stops at nothing, so the readiness check also waits for cloud-init's verdict.
      ['sh', '-c', guestReadyCommand(adminUser)],
    ],
  };
  return `#cloud-config\n${JSON.stringify(config, null, 2)}\n`;
}

/** What Azure takes as `osProfile.customData`: the configuration in base64. Never logged. */
export const customDataOf = (input: CloudInitInput): string => Buffer.from(cloudConfig(input), 'utf8').toString('base64');
