import { createHash } from 'node:crypto';
import ssh2 from 'ssh2';
import type { Client as SshClient, SFTPWrapper } from 'ssh2';
import type { PartitionNode } from '../../terminal-protocol/common.js';

const { Client } = ssh2;

/** OpenSSH's "SHA256:..." fingerprint of a raw host key blob, computed here independently of the gate. */
export const opensshFingerprint = (blob: Buffer): string => `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;

export interface ConnectOptions {
  /** The host key fingerprint to pin; the connection fails on any other key. */
  fingerprint?: string | null;
  username?: string;
}

/** Connect to a node with a private key, pinning its host key fingerprint. */
export function connectNode(node: Pick<PartitionNode, 'sshPort' | 'sshUser' | 'hostKeyFingerprint'>, privateKey: string, options: ConnectOptions = {}): Promise<SshClient> {
  const expected = options.fingerprint === undefined ? node.hostKeyFingerprint : options.fingerprint;
  return new Promise((resolve, reject) => {
    const client = new Client();
    client.once('ready', () => resolve(client));
    // ssh2 can report one failed handshake twice (a reset, then "lost before handshake"): the first decides.
    client.on('error', reject);
    client.connect({
      host: '127.0.0.1',
      port: node.sshPort,
      username: options.username ?? node.sshUser,
      privateKey,
      hostVerifier: (key: Buffer) => expected === null || opensshFingerprint(key) === expected,
      readyTimeout: 5000,
    });
  });
}

export interface ExecResult {
  stdout: string;
  stderr: string;
  code: number | null;
  signal: string | null;
}

/** Run a command and collect its output and exit status. */
export function exec(client: SshClient, command: string, options: { env?: Record<string, string>; stdin?: string } = {}): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    client.exec(command, { env: options.env }, (error, stream) => {
      if (error) return reject(error);
      let stdout = '';
      let stderr = '';
      let code: number | null = null;
      let signal: string | null = null;
      stream.on('data', (d: Buffer) => (stdout += d.toString()));
      stream.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      stream.on('exit', (c: number | null, s?: string) => {
        code = c;
        signal = s ?? null;
      });
      stream.on('close', () => resolve({ stdout, stderr, code, signal }));
      if (options.stdin !== undefined) stream.end(options.stdin);
    });
  });
}

export function openSftp(client: SshClient): Promise<SFTPWrapper> {
  return new Promise((resolve, reject) => client.sftp((error, sftp) => (error ? reject(error) : resolve(sftp))));
}

/** Close a connection and wait until it is closed. */
export function closeClient(client: SshClient): Promise<void> {
  return new Promise((resolve) => {
    client.once('close', () => resolve());
    client.end();
  });
}
