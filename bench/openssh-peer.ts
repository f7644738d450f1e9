/**
 * The OpenSSH peer of the transfer and forwarding benchmarks: an `sshd` of this machine on a loopback port,
 * private to one benchmark run (its own throwaway host key, client key, authorized_keys and config in a
 * temporary directory; key authentication only). Nothing of the machine's own SSH setup is used or touched.
 *
 *   scp / ssh -L (client key) ──► sshd -D -f <dir>/sshd_config (127.0.0.1:<port>) ──► files / local ports
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../test/harness/spool.js';

const SSHD_CANDIDATES = ['/usr/sbin/sshd', '/usr/local/sbin/sshd', '/sbin/sshd'];
const INSTALL_SCRIPT = new URL('../../scripts/install-system-deps.sh', import.meta.url).pathname;

export interface OpenSshPeer {
  port: number;
  user: string;
  /** The temporary directory: keys, config, and a `data/` directory to copy into. */
  dir: string;
  /** The client's private key (OpenSSH format), accepted by this sshd only. */
  clientKeyPath: string;
  clientKey: string;
  /** The host key's `SHA256:...` fingerprint, to pin. */
  hostKeyFingerprint: string;
  /** Options every ssh/scp invocation against this peer needs (key, port, no host key prompts). */
  clientOptions: (portFlag: '-p' | '-P') => string[];
  pid: number;
  stop: () => Promise<void>;
}

const locateSshd = (): string | null => SSHD_CANDIDATES.find((p) => existsSync(p)) ?? null;

/** Make sure sshd, scp and ssh are there (the project's install script adds them as root on Debian). Null when ready, else why not. */
export function ensureOpenSsh(): string | null {
  const ready = () => locateSshd() && spawnSync('sh', ['-c', 'command -v scp && command -v ssh'], { stdio: 'ignore' }).status === 0;
  if (!ready() && existsSync(INSTALL_SCRIPT)) spawnSync('bash', [INSTALL_SCRIPT], { stdio: ['ignore', 'inherit', 'inherit'] });
  return ready() ? null : 'OpenSSH (openssh-server, openssh-client) is not installed';
}

function keygen(path: string): void {
  const run = spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path], { stdio: ['ignore', 'ignore', 'pipe'] });
  if (run.status !== 0) throw new Error(`ssh-keygen failed: ${run.stderr.toString()}`);
}

function fingerprintOf(publicKeyPath: string): string {
  const out = spawnSync('ssh-keygen', ['-lf', publicKeyPath]).stdout.toString();
  const m = /(SHA256:\S+)/.exec(out);
  if (!m) throw new Error(`cannot read the fingerprint of ${publicKeyPath}: ${out}`);
  return m[1]!;
}

/** Start a private sshd on 127.0.0.1; resolves once it listens. */
export async function startOpenSsh(): Promise<OpenSshPeer> {
  const sshd = locateSshd();
  if (!sshd) throw new Error('sshd is not installed');
  const dir = mkdtempSync(join(tmpdir(), 'skyport-openssh-'));
  const port = await freePort();
  const user = userInfo().username;
  keygen(join(dir, 'host_key'));
  keygen(join(dir, 'client_key'));
  writeFileSync(join(dir, 'authorized_keys'), readFileSync(join(dir, 'client_key.pub')), { mode: 0o600 });
  mkdirSync(join(dir, 'data'));
  // Privilege separation needs this directory when sshd runs as root.
  if (process.getuid?.() === 0) mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  writeFileSync(
    join(dir, 'sshd_config'),
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${join(dir, 'host_key')}`,
      `PidFile ${join(dir, 'sshd.pid')}`,
      `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
      'PermitRootLogin prohibit-password',
      'PubkeyAuthentication yes',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      'StrictModes no',
      'AllowTcpForwarding yes',
      'Subsystem sftp internal-sftp',
      'LogLevel INFO',
      '',
    ].join('\n'),
  );
  const child: ChildProcess = spawn(sshd, ['-D', '-e', '-f', join(dir, 'sshd_config')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let output = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`sshd did not start: ${output}`)), 10_000);
    // Read on for the life of sshd: a full pipe would block it.
    child.stderr!.on('data', (chunk: Buffer) => {
      if (output.length < 64 * 1024) output += chunk.toString();
      if (/Server listening/.test(output)) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`sshd exited with ${code}: ${output}`));
    });
  });
  const clientKeyPath = join(dir, 'client_key');
  return {
    port,
    user,
    dir,
    clientKeyPath,
    clientKey: readFileSync(clientKeyPath, 'utf8'),
    hostKeyFingerprint: fingerprintOf(join(dir, 'host_key.pub')),
    clientOptions: (portFlag) => [
      portFlag,
      String(port),
      '-i',
      clientKeyPath,
      '-o',
      'IdentitiesOnly=yes',
      '-o',
      'StrictHostKeyChecking=no',
      '-o',
      'UserKnownHostsFile=/dev/null',
      '-o',
      'LogLevel=ERROR',
      '-o',
      'BatchMode=yes',
    ],
    pid: child.pid!,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
