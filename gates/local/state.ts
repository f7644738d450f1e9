import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { refusalIfDiskFull } from '../../spool-bootstrap/disk-full.js';
import { writeFileAtomicAsync } from '../../spool-bootstrap/files.js';
import { PortSpec } from '../../terminal-protocol/gate-methods.js';

export const NodeRecord = z.object({
  name: z.string(),
  /** Null until the node first listened; a restarted gate listens on this port again. */
  port: z.number().int().positive().nullable(),
  hostKeyFingerprint: z.string(),
});
export type NodeRecord = z.infer<typeof NodeRecord>;

export const PartitionRecord = z.object({
  id: z.string(),
  name: z.string(),
  status: z.enum(['creating', 'up', 'deleting', 'failed']),
  error: z.string().optional(),
  jobId: z.string(),
  owner: z.string(),
  flavor: z.string(),
  image: z.string().nullable(),
  ports: z.array(PortSpec),
  sshPublicKey: z.string(),
  /** Always includes job, partition and core (the owning core's id). */
  tags: z.record(z.string(), z.string()),
  createdAt: z.string(),
  nodes: z.array(NodeRecord),
  /** Container images the partition's jobs will run (put in the account's image store at creation). */
  containerImages: z.array(z.string()).optional(),
  /** The OS account the nodes run as (recorded before it is made); absent when the gate does not isolate. */
  account: z.string().optional(),
});
export type PartitionRecord = z.infer<typeof PartitionRecord>;

const StateFile = z.object({ version: z.literal(1), partitions: z.array(PartitionRecord) });

/**
 * The local gate's durable state under `<spool>/gates/<name>/`:
 *
 *   state.json                          partitions (0600)
 *   host-keys/<partition>/<node>.key    node host private keys (0600)
 *   partitions/<partition>/<node>/      node directories, unless they live elsewhere (`nodesRoot`)
 */
export class LocalGateStore {
  /** Where node directories live: outside the spool when the nodes run as accounts of their own. */
  readonly nodesRoot: string;

  constructor(
    readonly root: string,
    nodesRoot?: string,
  ) {
    this.nodesRoot = nodesRoot ?? join(root, 'partitions');
  }

  get statePath(): string {
    return join(this.root, 'state.json');
  }

  partitionDir(partition: string): string {
    return join(this.nodesRoot, partition);
  }

  nodeDir(partition: string, node: string): string {
    return join(this.partitionDir(partition), node);
  }

  private hostKeyDir(partition: string): string {
    return join(this.root, 'host-keys', partition);
  }

  private hostKeyPath(partition: string, node: string): string {
    return join(this.hostKeyDir(partition), `${node}.key`);
  }

  load(): PartitionRecord[] {
    if (!existsSync(this.statePath)) return [];
    const parsed = StateFile.safeParse(JSON.parse(readFileSync(this.statePath, 'utf8')));
    if (!parsed.success) throw new Error(`${this.statePath} is damaged: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
    return parsed.data.partitions;
  }

  private writes: Promise<void> = Promise.resolve();
  private nextWrite: Promise<void> | null = null;

  /**
   * Persist the partitions, fsynced, off the event loop. Changes made while a write is in flight are grouped
   * into the next one; the snapshot is taken when that write starts, so every caller's change is in the write
   * its promise waits for.
   */
  save(snapshot: () => Iterable<PartitionRecord>): Promise<void> {
    if (this.nextWrite) return this.nextWrite;
    const write = this.writes.then(async () => {
      this.nextWrite = null;
      try {
        await writeFileAtomicAsync(this.statePath, JSON.stringify({ version: 1, partitions: [...snapshot()] }, null, 2) + '\n', 0o600);
      } catch (error) {
        // A full disk leaves the temporary file half written: give its space back, say why (DiskFull).
        const tornWrite = `state.json.${process.pid}.`;
        const names = await readdir(this.root).catch(() => [] as string[]);
        await Promise.all(names.filter((n) => n.startsWith(tornWrite) && n.endsWith('.tmp')).map((n) => rm(join(this.root, n), { force: true })));
        throw refusalIfDiskFull(error, "the gate's state was not saved");
      }
    });
    this.nextWrite = write;
    this.writes = write.catch(() => undefined);
    return write;
  }

  async writeHostKeys(partition: string, keys: Array<{ node: string; privateKey: string }>): Promise<void> {
    try {
      await mkdir(this.hostKeyDir(partition), { recursive: true, mode: 0o700 });
      await Promise.all(keys.map(({ node, privateKey }) => writeFile(this.hostKeyPath(partition, node), privateKey, { mode: 0o600 })));
    } catch (error) {
      await rm(this.hostKeyDir(partition), { recursive: true, force: true });
      throw refusalIfDiskFull(error, 'the partition was not created');
    }
  }

  readHostKey(partition: string, node: string): Promise<string> {
    return readFile(this.hostKeyPath(partition, node), 'utf8');
  }

  /** Remove a partition's node directories and host keys (whatever jobs left in them). */
  async removePartitionFiles(partition: string): Promise<void> {
    await Promise.all([
      rm(this.partitionDir(partition), { recursive: true, force: true, maxRetries: 3 }),
      rm(this.hostKeyDir(partition), { recursive: true, force: true }),
    ]);
  }
}
