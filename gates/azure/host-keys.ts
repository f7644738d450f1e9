import { createHash } from 'node:crypto';
import ssh2 from 'ssh2';
import type { ParsedKey } from 'ssh2';

const { utils } = ssh2;

/** A node's SSH host key: written on the node by cloud-init, its fingerprint reported to the core. */
export interface NodeHostKey {
  privateKey: string;
  /** `<type> <base64>`, the `.pub` line. */
  publicLine: string;
  /** cloud-init's name of the key type. */
  kind: 'ed25519' | 'rsa' | 'ecdsa';
  /** OpenSSH's `SHA256:<unpadded base64>`. */
  fingerprint: string;
}

const kindOf = (type: string): NodeHostKey['kind'] | null =>
  type === 'ssh-ed25519' ? 'ed25519' : type === 'ssh-rsa' ? 'rsa' : type.startsWith('ecdsa-sha2-') ? 'ecdsa' : null;

/** OpenSSH's fingerprint of a public key blob: `SHA256:` and the unpadded base64 of its SHA-256. */
export const fingerprintOfBlob = (blob: Buffer): string => `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;

/** Reads a private OpenSSH host key; throws (without quoting it) when it is not one. */
export function readHostKey(privateKey: string): NodeHostKey {
  const parsed = utils.parseKey(privateKey);
  const key = (Array.isArray(parsed) ? parsed[0] : parsed) as ParsedKey | Error | undefined;
  if (!key || key instanceof Error) throw new Error(`not an OpenSSH private key${key instanceof Error ? ` (${key.message})` : ''}`);
  if (!key.isPrivateKey()) throw new Error('a public key where a private host key is needed');
  const kind = kindOf(key.type);
  if (!kind) throw new Error(`host key type ${key.type} is not supported`);
  const blob = key.getPublicSSH();
  return {
    privateKey: privateKey.endsWith('\n') ? privateKey : `${privateKey}\n`,
    publicLine: `${key.type} ${blob.toString('base64')}`,
    kind,
    fingerprint: fingerprintOfBlob(blob),
  };
}

export const generateHostKey = (): NodeHostKey => readHostKey(utils.generateKeyPairSync('ed25519').private);

/** One host key per node: the core's `hostKeys[i]` for node i when given, else a new one. */
export function hostKeysFor(nodeCount: number, given: string[] | undefined): NodeHostKey[] {
  return Array.from({ length: nodeCount }, (_, i) => {
    const key = given?.[i];
    if (key === undefined) return generateHostKey();
    try {
      return readHostKey(key);
    } catch (error) {
      throw new Error(`hostKeys.${i}: ${(error as Error).message}`);
    }
  });
}
