import { createHash } from 'node:crypto';

/**
 * The wire format of `PartitionNode.hostKeyFingerprint`: OpenSSH's `SHA256:<base64, no padding>` of the
 * public key blob (what `ssh-keygen -lf` prints). Gates report it; the core pins it.
 */
export const sshFingerprint = (publicKeyBlob: Buffer): string =>
  'SHA256:' + createHash('sha256').update(publicKeyBlob).digest('base64').replace(/=+$/, '');
