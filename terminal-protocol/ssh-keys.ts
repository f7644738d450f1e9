import { createHash } from 'node:crypto';
import ssh2 from 'ssh2';
import type { ParsedKey } from 'ssh2';

/**
 * The wire format of `PartitionNode.hostKeyFingerprint`: OpenSSH's `SHA256:<base64, no padding>` of the
 * public key blob (what `ssh-keygen -lf` prints). Gates report it; the core pins it.
 */
export const sshFingerprint = (publicKeyBlob: Buffer): string =>
  'SHA256:' + createHash('sha256').update(publicKeyBlob).digest('base64').replace(/=+$/, '');

/** Parse one OpenSSH key (private or public); an Error when it is not one. */
export function parseSshKey(text: string): ParsedKey | Error {
  const parsed = ssh2.utils.parseKey(text);
  return Array.isArray(parsed) ? (parsed[0] as ParsedKey) : parsed;
}

const MAX_ATTEMPTS = 16;

/**
 * A new ed25519 key pair in OpenSSH format. ssh2's generator occasionally (about 1 in 240) emits a key whose
 * encoding it cannot read back; such a pair is discarded and another made, so every key handed out parses.
 */
export function generateEd25519KeyPair(comment?: string): { privateKey: string; publicKey: string; fingerprint: string } {
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    const pair = ssh2.utils.generateKeyPairSync('ed25519', comment ? { comment } : {});
    const priv = parseSshKey(pair.private);
    const pub = parseSshKey(pair.public);
    if (priv instanceof Error || pub instanceof Error) continue;
    const blob = pub.getPublicSSH();
    if (!priv.getPublicSSH().equals(blob)) continue;
    return { privateKey: pair.private, publicKey: pair.public.trim(), fingerprint: sshFingerprint(blob) };
  }
  throw new Error('could not generate a readable ed25519 key pair');
}
