import { mkdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { writeFileAtomic } from '../../spool-bootstrap/files.js';

/** What the gate is about to do, or did, to one partition. */
export interface JournalEntry {
  /** The core the partition is for (a spool serves one core; kept so that nothing of another is ever acted on). */
  coreId?: string;
  jobId: string;
  /** `create`: asked for (recorded before the first call to Azure); `delete`: its deletion was asked for. */
  intent: 'create' | 'delete';
  /** The gate process that recorded it: an entry of another one, still `create` and not ready, was interrupted. */
  incarnation: string;
  /** When the intent was recorded (epoch ms). */
  at: number;
  /** The partition's expiry (epoch ms). */
  expiresAt: number;
}

/**
 * The azure gate's only state of its own: which partitions it was asked for and has not yet seen deleted
 * (`<spool>/gates/<gate>/azure-partitions.json`, written atomically). Azure holds everything else. An intent is
 * recorded before the call that acts on it, so that a gate that stops between the two finds, when it starts again,
 * a group it made (or an intent that made nothing) and reconciles it; an entry goes only once a deletion has been
 * confirmed by reading the group back. Every change re-reads the file first: it is small, and this keeps the
 * changes of two gate objects on one file (a restart inside one process, in tests) from undoing each other.
 */
export class PartitionJournal {
  /** `coreId`: the core whose entries this journal reads and writes (others in the file are kept, never read). */
  constructor(
    readonly path: string,
    private readonly coreId?: string,
  ) {}

  /** This core's entries. */
  entries(): Record<string, JournalEntry> {
    return Object.fromEntries(Object.entries(this.all()).filter(([, e]) => this.coreId === undefined || e.coreId === undefined || e.coreId === this.coreId));
  }

  private all(): Record<string, JournalEntry> {
    try {
      const parsed = JSON.parse(readFileSync(this.path, 'utf8')) as { partitions?: Record<string, JournalEntry> };
      return parsed.partitions ?? {};
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return {};
      throw new Error(`cannot read the azure gate's journal ${this.path}: ${(error as Error).message}`);
    }
  }

  get(name: string): JournalEntry | undefined {
    return this.entries()[name];
  }

  record(name: string, entry: JournalEntry): void {
    this.write({ ...this.all(), [name]: { ...entry, ...(this.coreId !== undefined ? { coreId: this.coreId } : {}) } });
  }

  /** Marks a partition's deletion as asked for (a partition the journal does not know is recorded too). */
  deleting(name: string, fallback: Omit<JournalEntry, 'intent'>): void {
    const current = this.entries()[name];
    this.record(name, { ...(current ?? fallback), intent: 'delete' });
  }

  forget(name: string): void {
    if (!(name in this.entries())) return;
    const all = this.all();
    delete all[name];
    this.write(all);
  }

  private write(partitions: Record<string, JournalEntry>): void {
    mkdirSync(dirname(this.path), { recursive: true, mode: 0o700 });
    writeFileAtomic(this.path, `${JSON.stringify({ partitions }, null, 2)}\n`, 0o600);
  }
}
