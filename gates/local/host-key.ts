import { createHash, timingSafeEqual } from 'node:crypto';
import ssh2 from 'ssh2';
import type { ParsedKey } from 'ssh2';
import { ErrorCode, RpcError } from '../../terminal-protocol/errors.js';

const { utils } = ssh2;

/** A node's SSH host key: the private part stays in the gate's state, the fingerprint goes to the core. */
export interface HostKey {
  privateKey: string;
  fingerprint: string;
}

/** OpenSSH's fingerprint format: "SHA256:" + unpadded base64 of the SHA-256 of the public key blob. */
export const fingerprintOfBlob = (blob: Buffer): string =>
  `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;

const parseOne = (data: string): ParsedKey | Error => {
  const parsed = utils.parseKey(data);
  return Array.isArray(parsed) ? (parsed[0] as ParsedKey) : parsed;
};

export function generateHostKey(): HostKey {
  const pair = utils.generateKeyPairSync('ed25519');
  return { privateKey: pair.private, fingerprint: hostKeyFingerprint(pair.private) };
}

/** The fingerprint of a host key, from its private (or public) form. */
export function hostKeyFingerprint(key: string): string {
  const parsed = parseOne(key);
  if (parsed instanceof Error) throw new Error(`unreadable host key: ${parsed.message}`);
  return fingerprintOfBlob(parsed.getPublicSSH());
}

/** The one public key a partition's nodes accept; InvalidParams when the line is not an SSH public key. */
export function parseAuthorizedKey(line: string): ParsedKey {
  const parsed = parseOne(line.trim());
  if (parsed instanceof Error || parsed.isPrivateKey())
    throw new RpcError(ErrorCode.InvalidParams, `sshPublicKey is not an OpenSSH public key${parsed instanceof Error ? `: ${parsed.message}` : ''}`);
  return parsed;
}

const sameBytes = (a: Buffer, b: Buffer): boolean => a.length === b.length && timingSafeEqual(a, b);

/**
 * Whether a `publickey` authentication attempt proves possession of the authorized key. Without a
 * signature the client only asks whether the key would do (the answer may be yes); with one, the
 * signature must verify.
 */
export function publicKeyMatches(
  authorized: ParsedKey,
  offered: { algo: string; data: Buffer },
  proof?: { blob?: Buffer; signature?: Buffer; hashAlgo?: string },
): boolean {
  // ssh2 reports rsa-sha2-* signatures under the key's own type (ssh-rsa), so the types compare directly.
  if (offered.algo !== authorized.type) return false;
  if (!sameBytes(offered.data, authorized.getPublicSSH())) return false;
  if (!proof?.signature) return true;
  return proof.blob !== undefined && authorized.verify(proof.blob, proof.signature, proof.hashAlgo) === true;
}
