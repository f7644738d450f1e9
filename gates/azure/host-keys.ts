import type { ParsedKey } from 'ssh2';
import { generateEd25519KeyPair, parseSshKey, sshFingerprint } from '../../terminal-protocol/ssh-keys.js';

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


/** Reads a private OpenSSH host key; throws (without quoting it) when it is not one. */
export function readHostKey(privateKey: string): NodeHostKey {
  const key = parseSshKey(privateKey) as ParsedKey | Error | undefined;
  if (!key || key instanceof Error) throw new Error(`not an OpenSSH private key${key instanceof Error ? ` (${key.message})` : ''}`);
  if (!key.isPrivateKey()) throw new Error('a public key where a private host key is needed');
  const kind = kindOf(key.type);
  if (!kind) throw new Error(`host key type ${key.type} is not supported`);
  const blob = key.getPublicSSH();
  return {
    privateKey: privateKey.endsWith('\n') ? privateKey : `${privateKey}\n`,
    publicLine: `${key.type} ${blob.toString('base64')}`,
    kind,
    fingerprint: sshFingerprint(blob),
  };
}

export const generateHostKey = (): NodeHostKey => readHostKey(generateEd25519KeyPair().privateKey);

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
