import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../../spool-bootstrap/files.js';
import type { SpoolPaths } from '../../spool-bootstrap/paths.js';
import { generateEd25519KeyPair } from '../../terminal-protocol/ssh-keys.js';

export interface PartitionKeys {
  privateKey: string;
  publicKey: string;
}

/**
 * The SSH key pair made for one partition (spool/partitions/<name>/), created once and reused by a
 * restarted core. The private key never leaves the spool.
 */
export function partitionKeys(spool: SpoolPaths, partition: string): PartitionKeys {
  const dir = spool.partition(partition);
  const privatePath = join(dir, 'id_ed25519');
  const publicPath = `${privatePath}.pub`;
  if (existsSync(privatePath) && existsSync(publicPath))
    return { privateKey: readFileSync(privatePath, 'utf8'), publicKey: readFileSync(publicPath, 'utf8').trim() };
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const pair = generateEd25519KeyPair(`skyport ${partition}`);
  writeFileAtomic(publicPath, pair.publicKey + '\n', 0o644);
  writeFileAtomic(privatePath, pair.privateKey, 0o600);
  return { privateKey: pair.privateKey, publicKey: pair.publicKey };
}

/**
 * The key pair the nodes of one partition use to reach one another over SSH (MPI, torch.distributed, Ray),
 * made once per partition (spool/partitions/<name>/inter-node_ed25519). Unlike the partition key, its private
 * half is copied to every node (the connect step puts it in the nodes' ~/.ssh): it opens the partition's own
 * nodes and nothing else, so a job that reads it gains nothing it did not have.
 */
export function interNodeKeys(spool: SpoolPaths, partition: string): PartitionKeys {
  const dir = spool.partition(partition);
  const privatePath = join(dir, 'inter-node_ed25519');
  const publicPath = `${privatePath}.pub`;
  if (existsSync(privatePath) && existsSync(publicPath))
    return { privateKey: readFileSync(privatePath, 'utf8'), publicKey: readFileSync(publicPath, 'utf8').trim() };
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const pair = generateEd25519KeyPair(`skyport ${partition} inter-node`);
  writeFileAtomic(publicPath, pair.publicKey + '\n', 0o644);
  writeFileAtomic(privatePath, pair.privateKey, 0o600);
  return { privateKey: pair.privateKey, publicKey: pair.publicKey };
}

/**
 * Host keys the core makes for a cloud partition's nodes, to be injected at provisioning so that the first
 * connection can already be verified. Returns private keys (sent to the gate once) and their fingerprints.
 */
export function nodeHostKeys(spool: SpoolPaths, partition: string, count: number): { privateKeys: string[]; fingerprints: string[] } {
  const path = join(spool.partition(partition), 'host-keys.json');
  if (existsSync(path)) {
    const saved = JSON.parse(readFileSync(path, 'utf8')) as { privateKeys: string[]; fingerprints: string[] };
    if (saved.privateKeys.length === count) return saved;
  }
  const privateKeys: string[] = [];
  const fingerprints: string[] = [];
  for (let i = 0; i < count; i++) {
    const pair = generateEd25519KeyPair();
    privateKeys.push(pair.privateKey);
    fingerprints.push(pair.fingerprint);
  }
  writeFileAtomic(path, JSON.stringify({ privateKeys, fingerprints }), 0o600);
  return { privateKeys, fingerprints };
}

export const forgetPartitionKeys = (spool: SpoolPaths, partition: string): void =>
  rmSync(spool.partition(partition), { recursive: true, force: true });
