import { timingSafeEqual } from 'node:crypto';
import type { ParsedKey } from 'ssh2';
import { ErrorCode, RpcError } from '../../terminal-protocol/errors.js';
import { generateEd25519KeyPair, parseSshKey, sshFingerprint } from '../../terminal-protocol/ssh-keys.js';

/** A node's SSH host key: the private part stays in the gate's state, the fingerprint goes to the core. */
export interface HostKey {
  privateKey: string;
  fingerprint: string;
}

export function generateHostKey(): HostKey {
  const pair = generateEd25519KeyPair();
  return { privateKey: pair.privateKey, fingerprint: pair.fingerprint };
}

/** The fingerprint of a host key, from its private (or public) form. */
export function hostKeyFingerprint(key: string): string {
  const parsed = parseSshKey(key);
  if (parsed instanceof Error) throw new Error(`unreadable host key: ${parsed.message}`);
  return sshFingerprint(parsed.getPublicSSH());
}

/** The one public key a partition's nodes accept; InvalidParams when the line is not an SSH public key. */
export function parseAuthorizedKey(line: string): ParsedKey {
  const parsed = parseSshKey(line.trim());
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

/**
 * The public keys of an `authorized_keys` file's text (OpenSSH's format; options before a key are not
 * supported: such a line is skipped, as is anything unreadable). Pure.
 */
export function authorizedKeysOf(text: string): ParsedKey[] {
  const keys: ParsedKey[] = [];
  for (const line of text.split('\n')) {
    const trimmed = line.trim();
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    const parsed = parseSshKey(trimmed);
    if (!(parsed instanceof Error) && !parsed.isPrivateKey()) keys.push(parsed);
  }
  return keys;
}
