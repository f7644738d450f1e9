import { closeSync, existsSync, openSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileSystemBytes, freeBytes } from '../../spool-bootstrap/disk-full.js';

/** The reserve is 1/32 of the disk, within these bounds. */
const MIN_RESERVE_BYTES = 256 * 1024;
const MAX_RESERVE_BYTES = 16 * 1024 * 1024;
const CHUNK = Buffer.alloc(64 * 1024);

/**
 * Room kept aside on the spool's disk, as a file of zeros next to the store, for the state changes of jobs
 * already accepted. When the disk is full, the store gives it back to the disk and commits a cancel or a
 * step of a running job in the space it frees; new submissions are refused until the disk has room for the
 * reserve again, and the store makes it anew then. A core started on a disk that filled up while it was
 * down releases it to open its database.
 *
 * Its size bounds what it can save: a state change rewrites the job's whole row, script included, so the
 * change of a job whose script is larger than about half the reserve may still fail on a full disk.
 */
export class SpaceReserve {
  private readonly bytes: number;
  /** Known to be on disk (made or seen whole, and not released since): every submit asks, so it is not looked up each time. */
  private known = false;

  constructor(private readonly path: string) {
    const disk = fileSystemBytes(dirname(path)) ?? MAX_RESERVE_BYTES * 32;
    this.bytes = Math.min(MAX_RESERVE_BYTES, Math.max(MIN_RESERVE_BYTES, Math.floor(disk / 32 / 4096) * 4096));
  }

  /** Whether the reserve is on disk, whole. */
  get held(): boolean {
    try {
      return statSync(this.path).size === this.bytes;
    } catch {
      return false;
    }
  }

  /**
   * Make the reserve if it is missing and the disk has room for it twice over (so that making it does not
   * itself fill the disk). Returns whether it is held. Never throws.
   */
  ensure(): boolean {
    if (this.known) return true;
    if (this.held) return (this.known = true);
    const free = freeBytes(dirname(this.path));
    if (free === null || free < 2 * this.bytes) return false;
    const partial = `${this.path}.partial`;
    try {
      const fd = openSync(partial, 'w', 0o600);
      try {
        // Zeros written, not a sparse file: the blocks must really be taken from the disk. No fsync: file
        // systems count written blocks as used at once, and a reserve lost in a crash is made again at start.
        for (let at = 0; at < this.bytes; at += CHUNK.length) writeSync(fd, CHUNK, 0, Math.min(CHUNK.length, this.bytes - at));
      } finally {
        closeSync(fd);
      }
      renameSync(partial, this.path);
      return (this.known = true);
    } catch {
      rmSync(partial, { force: true });
      return false;
    }
  }

  /** Give the reserve back to the disk. Returns whether there was one to give. */
  release(): boolean {
    this.known = false;
    if (!existsSync(this.path)) return false;
    rmSync(this.path, { force: true });
    return true;
  }
}
