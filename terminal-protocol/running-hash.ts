import { createHash, type Hash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { ErrorCode, RpcError } from './errors.js';

/**
 * A SHA-256 fed in order, that may live elsewhere (the core hashes in a worker thread, off the path that
 * moves the bytes). `hex` resolves with the digest of everything fed; the hash is used up then.
 */
export interface RunningHash {
  /** Feed bytes; the caller will not use `data` again (its memory may be handed to another thread). */
  update(data: Buffer): void;
  hex(): Promise<string>;
}

/** A RunningHash on this thread. */
export const localHash = (hash: Hash = createHash('sha256')): RunningHash => ({
  update: (data) => void hash.update(data),
  hex: async () => hash.digest('hex'),
});

/** SHA-256 of the first `length` bytes of an open file, streamed. */
export async function hashFilePrefix(file: FileHandle, length: number, hash: Hash = createHash('sha256')): Promise<Hash> {
  const buffer = Buffer.allocUnsafe(Math.min(4 * 1024 * 1024, Math.max(length, 1)));
  for (let at = 0; at < length; ) {
    const { bytesRead } = await file.read(buffer, 0, Math.min(buffer.length, length - at), at);
    if (bytesRead === 0) throw new RpcError(ErrorCode.Integrity, `file shrank: ${at} of ${length} bytes left`);
    hash.update(buffer.subarray(0, bytesRead));
    at += bytesRead;
  }
  return hash;
}
