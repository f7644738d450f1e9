import Database from 'better-sqlite3';
import { mkdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { DiskFullError, freeBytes, isDiskFull } from '../../spool-bootstrap/disk-full.js';
import type { JobState } from '../../terminal-protocol/job.js';
import { stepsWhere } from '../jobs/job-steps.js';
import { JobIndex, type HoldingRow, type QueuedCounts, type QueuedRow } from './job-index.js';
import type { PartitionRecord } from '../partitions/partition-record.js';
import type { JobRecord, JobStep } from './job-record.js';
import { migrate } from './migrations.js';
import { SpaceReserve } from './space-reserve.js';
import { WalCheckpointer, type CheckpointResult } from './wal-checkpointer.js';
import { WalSync } from './wal-sync.js';

interface Row {
  seq: number;
  id: string;
  owner: string;
  name: string;
  state: string;
  state_details: string;
  step: string;
  script: string;
  directives: string;
  inputs: string;
  priority: number;
  submit_time: string;
  start_time: string | null;
  end_time: string | null;
  exitcode: number | null;
  signal: number | null;
  remote: string | null;
  flavor: string | null;
  node_names: string;
  node_ips: string;
  partition_name: string | null;
  partition_id: string | null;
  runtime: string | null;
  outcome: string | null;
  run_started_ms: number | null;
  account: string | null;
  array_id: string | null;
  array_index: number | null;
  array_cap: number | null;
  depends: string;
  reason: string | null;
  cost: number | null;
  attempts: number;
}

const fromRow = (r: Row): JobRecord => ({
  id: r.id,
  owner: r.owner,
  name: r.name,
  state: r.state as JobState,
  stateDetails: r.state_details,
  step: r.step as JobStep,
  script: r.script,
  directives: JSON.parse(r.directives),
  inputs: JSON.parse(r.inputs),
  priority: r.priority,
  submitTime: r.submit_time,
  startTime: r.start_time,
  endTime: r.end_time,
  exitcode: r.exitcode,
  signal: r.signal,
  remote: r.remote,
  flavor: r.flavor,
  nodeNames: JSON.parse(r.node_names),
  nodeIps: JSON.parse(r.node_ips),
  partitionName: r.partition_name,
  partitionId: r.partition_id,
  runtime: r.runtime as JobRecord['runtime'],
  outcome: r.outcome ? JSON.parse(r.outcome) : null,
  runStartedMs: r.run_started_ms,
  account: r.account,
  arrayId: r.array_id,
  arrayIndex: r.array_index,
  arrayCap: r.array_cap,
  depends: JSON.parse(r.depends),
  reason: r.reason,
  cost: r.cost,
  attempts: r.attempts,
});

const toParams = (j: JobRecord) => ({
  id: j.id,
  owner: j.owner,
  name: j.name,
  state: j.state,
  state_details: j.stateDetails,
  step: j.step,
  script: j.script,
  directives: JSON.stringify(j.directives),
  inputs: JSON.stringify(j.inputs),
  priority: j.priority,
  submit_time: j.submitTime,
  start_time: j.startTime,
  end_time: j.endTime,
  exitcode: j.exitcode,
  signal: j.signal,
  remote: j.remote,
  flavor: j.flavor,
  node_names: JSON.stringify(j.nodeNames),
  node_ips: JSON.stringify(j.nodeIps),
  partition_name: j.partitionName,
  partition_id: j.partitionId,
  runtime: j.runtime,
  outcome: j.outcome ? JSON.stringify(j.outcome) : null,
  run_started_ms: j.runStartedMs,
  account: j.account,
  array_id: j.arrayId,
  array_index: j.arrayIndex,
  array_cap: j.arrayCap,
  depends: JSON.stringify(j.depends),
  reason: j.reason,
  cost: j.cost,
  attempts: j.attempts,
  // What the job asks for, as columns (COLUMNS is read from the keys of an empty record's params).
  nodes: j.directives?.nodes ?? 1,
  duration_sec: j.directives?.durationSec ?? 0,
  asked_remote: j.directives?.remote ?? null,
  asked_flavor: j.directives?.flavor ?? null,
  cloud_image: j.directives?.cloudImage ?? null,
  gpus: j.directives?.gpus ?? 0,
  updated_ms: Date.now(),
});

const COLUMNS = Object.keys(toParams({} as JobRecord));
const sqlList = (steps: JobStep[]): string => steps.map((s) => `'${s}'`).join(', ');
const ACTIVE_STEPS = sqlList(stepsWhere('active'));
/** Jobs not done, read through the partial index jobs_step (the IN list alone makes SQLite scan the table). */
const ACTIVE_WHERE = `step <> 'done' AND step IN (${ACTIVE_STEPS})`;

/** A write waiting for the next group commit; an insert learns its job's submission order (seq) as it is made. */
type Write =
  | { kind: 'insert'; job: JobRecord; seq?: number }
  | { kind: 'update'; job: JobRecord }
  | { kind: 'insert-many'; jobs: JobRecord[]; seqs?: number[] }
  | { kind: 'partition'; partition: PartitionRecord };
export type { HoldingRow, QueuedCounts, QueuedRow } from './job-index.js';
/** A job's use of nodes, for fair share and cost reports. */
export interface UsageRow {
  id: string;
  owner: string;
  account: string | null;
  remote: string | null;
  nodes: number;
  startTime: string | null;
  endTime: string | null;
  cost: number | null;
  submitTime: string;
}

/** The time of a partition being charged to a job, from `fromMs` on (until the partition is reused or deleted). */
export interface OpenCharge {
  partition: string;
  jobId: string;
  fromMs: number;
  pricePerHour: number;
  nodes: number;
}

/** What a charge has cost by `toMs`: price per node-hour × nodes × hours. */
export const chargeOf = (c: Pick<OpenCharge, 'fromMs' | 'pricePerHour' | 'nodes'>, toMs: number): number =>
  (c.pricePerHour * c.nodes * Math.max(0, toMs - c.fromMs)) / 3_600_000;

/** One change of a job's step or state, with its time (the job's timeline). */
export interface JobEventRow {
  atMs: number;
  step: string;
  state: string;
  details: string;
}

type Queued = { write: Write; resolve: () => void; reject: (e: unknown) => void };

/** WAL frames (pages) past which a checkpoint the commits outran is finished on the store's own connection. */
const WAL_RESTART_FRAMES = 2_000;
/**
 * Bytes of WAL file past which a commit that made it grow finishes a checkpoint on the store's own connection, without
 * waiting for the worker's report (which a loaded machine delays while commits go on): about WAL_RESTART_FRAMES.
 */
const WAL_RESTART_BYTES = 8 * 1024 * 1024;
/** SQLite's own automatic checkpoint (pages), used again if the checkpointer's worker fails. */
const SQLITE_AUTOCHECKPOINT_PAGES = 1000;
/** How often, at most, a commit checks whether a released reserve can be made again. */
const RESERVE_CHECK_MS = 1_000;

function openDatabase(path: string): Database.Database {
  const db = new Database(path);
  try {
    db.pragma('journal_mode = WAL');
    // Commits do not wait for the disk on the event loop: wal-sync.ts syncs the WAL before anything is acknowledged.
    db.pragma('synchronous = NORMAL');
    db.pragma('busy_timeout = 5000');
    migrate(db);
    return db;
  } catch (error) {
    db.close();
    throw error;
  }
}

/**
 * The durable job table. Writes are group-committed: every write made during one turn of the event loop
 * goes into one transaction, and each write's promise resolves only once the WAL holding it is synced to disk
 * (wal-sync.ts: in the thread pool, while the loop gathers and commits the next batch). Nothing is acknowledged
 * before it is on disk.
 *
 * A full disk (space-reserve.ts): a new job is refused (its promise rejects with a disk-full error: SQLITE_FULL,
 * or DiskFullError when refused before trying); the changes to accepted jobs in the same commit are committed
 * again in the room the reserve frees. A failed commit leaves nothing behind: the transaction is rolled back,
 * and the next one starts afresh.
 *
 * Each durable write is then applied to the index (job-index.ts), which answers the scheduler's and admission's
 * questions from memory; the WAL is checkpointed by a worker thread beside the commits (wal-checkpointer.ts).
 */
export class JobStore {
  private readonly db: Database.Database;
  private readonly dir: string;
  private readonly reserve: SpaceReserve;
  private reserveCheckedAt = 0;
  /** The WAL file and its size after the last commit (boundWal). */
  private readonly walPath: string;
  private walBytes = 0;
  private queue: Queued[] = [];
  /** Told of each commit: how long it took (s) and how many writes it carried (the core's metrics listen). */
  onCommit: ((seconds: number, writes: number) => void) | null = null;
  private flushScheduled = false;
  private readonly insertStmt: Database.Statement;
  private readonly updateStmt: Database.Statement;
  private readonly getStmt: Database.Statement;
  private readonly savePartitionStmt: Database.Statement;
  private readonly statements = new Map<string, Database.Statement>();
  /** The queue, the jobs holding nodes and the live partitions, as committed (job-index.ts). */
  private readonly index: JobIndex;
  /** Copies the WAL into the database file off the event loop (wal-checkpointer.ts). */
  private readonly checkpointer: WalCheckpointer;
  /** Syncs the WAL off the event loop before commits are acknowledged (wal-sync.ts). */
  private readonly walSync: WalSync;

  constructor(path: string) {
    this.dir = dirname(path);
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    this.reserve = new SpaceReserve(join(this.dir, 'swm.reserve'));
    this.walPath = `${path}-wal`;
    this.db = this.open(path);
    this.walSync = new WalSync(this.walPath, (error) =>
      // What was committed but not synced may be lost: stopping (a restart reads what the disk kept) is the only
      // way not to act on it, as databases do when fsync fails.
      setImmediate(() => {
        throw new Error(`the store could not sync its commits to disk (${(error as NodeJS.ErrnoException).code ?? error.message}): stopping so that nothing unsaved is acted on`);
      }),
    );
    this.reserve.ensure();
    this.insertStmt = this.stmt(
      `INSERT INTO jobs (${COLUMNS.join(', ')}) VALUES (${COLUMNS.map((c) => '@' + c).join(', ')})`,
    );
    // A job's cost is added to by its partition's charges (addCost), never written back from a job's record.
    this.updateStmt = this.stmt(
      `UPDATE jobs SET ${COLUMNS.filter((c) => c !== 'id' && c !== 'cost').map((c) => `${c} = @${c}`).join(', ')} WHERE id = @id`,
    );
    this.getStmt = this.stmt('SELECT * FROM jobs WHERE id = ?');
    this.savePartitionStmt = this.stmt(
      `INSERT INTO partitions (name, state, remote, owner, job_id, record, updated_ms)
       VALUES (@name, @state, @remote, @owner, @jobId, @record, @updatedMs)
       ON CONFLICT(name) DO UPDATE SET state = excluded.state, remote = excluded.remote, owner = excluded.owner,
         job_id = excluded.job_id, record = excluded.record, updated_ms = excluded.updated_ms`,
    );
    this.index = new JobIndex((id) => (this.stmt('SELECT seq FROM jobs WHERE id = ?').get(id) as { seq: number } | undefined)?.seq ?? 0);
    this.rebuildIndex();
    this.db.pragma('wal_autocheckpoint = 0');
    this.checkpointer = new WalCheckpointer(path, (done) => this.finishCheckpoint(done), (error) => {
      try {
        if (this.db.open) this.db.pragma(`wal_autocheckpoint = ${SQLITE_AUTOCHECKPOINT_PAGES}`);
      } catch {
        /* closing */
      }
      if (this.db.open) process.emitWarning(`the store's WAL is checkpointed on the event loop again: ${error.message}`);
    });
  }

  /**
   * After a commit: a WAL file that grew past WAL_RESTART_BYTES was appended to rather than started over (a WAL
   * that restarts is rewritten from its start, and its file stops growing): the checkpoint is finished here.
   */
  private boundWal(): void {
    const size = statSync(this.walPath, { throwIfNoEntry: false })?.size ?? 0;
    const grew = size > this.walBytes;
    this.walBytes = size;
    if (grew && size > WAL_RESTART_BYTES) this.finishCheckpoint({ log: WAL_RESTART_FRAMES, checkpointed: 0 });
  }

  /** A checkpoint that commits outran, on a WAL past its bound: finished here, so that the next commit starts it over. */
  private finishCheckpoint(done: CheckpointResult): void {
    if (done.log < WAL_RESTART_FRAMES || !this.db.open || this.db.inTransaction) return;
    try {
      this.db.pragma('wal_checkpoint(PASSIVE)');
    } catch {
      /* the next one will */
    }
  }

  /** Checkpoint the WAL now (beside the commits, in the checkpointer's worker); what it did. */
  checkpoint(): Promise<CheckpointResult> {
    return this.checkpointer.checkpoint();
  }

  /** The index from the database: every job not done, every partition not deleted (a starting core's view). */
  private rebuildIndex(): void {
    // Only the columns the index reads, as arrays (a starting core with 100,000 jobs queued reads them all).
    const rows = this.stmt(
      `SELECT seq, id, owner, priority, step, state_details, reason, account, array_id, array_index, array_cap, depends, attempts, remote, run_started_ms, directives
         FROM jobs WHERE ${ACTIVE_WHERE} ORDER BY seq`,
    ).raw(true);
    for (const r of rows.iterate() as IterableIterator<unknown[]>) {
      const [seq, id, owner, priority, step, stateDetails, reason, account, arrayId, arrayIndex, arrayCap, depends, attempts, remote, runStartedMs, directives] = r as [
        number, string, string, number, JobStep, string, string | null, string | null, string | null, number | null, number | null, string, number, string | null, number | null, string,
      ];
      this.index.job(
        { id, owner, priority, step, stateDetails, reason, account, arrayId, arrayIndex, arrayCap, depends: depends === '[]' ? [] : JSON.parse(depends), attempts, remote, runStartedMs, directives: JSON.parse(directives) },
        seq,
      );
    }
    rows.raw(false);
    for (const row of this.stmt(`SELECT record FROM partitions WHERE state <> 'deleted' ORDER BY rowid`).iterate() as IterableIterator<{ record: string }>)
      this.index.partition(JSON.parse(row.record) as PartitionRecord);
  }

  /** A statement prepared once and reused (better-sqlite3 statements are safe to run again and again). */
  private stmt(sql: string): Database.Statement {
    let statement = this.statements.get(sql);
    if (!statement) {
      statement = this.db.prepare(sql);
      this.statements.set(sql, statement);
    }
    return statement;
  }

  /** Persist a partition's whole record (its actor owns it), in the same group commit as the jobs. */
  savePartition(partition: PartitionRecord): Promise<void> {
    return this.enqueue({ kind: 'partition', partition: { ...partition } });
  }

  partition(name: string): PartitionRecord | null {
    const row = this.stmt('SELECT record FROM partitions WHERE name = ?').get(name) as { record: string } | undefined;
    return row ? (JSON.parse(row.record) as PartitionRecord) : null;
  }

  /** Partitions that are not deleted (or, with `deletedSinceMs`, deleted since then too), oldest first. */
  partitions(deletedSinceMs?: number): PartitionRecord[] {
    // Copies: a caller may change what it is given, never the index.
    if (deletedSinceMs === undefined) return this.index.partitions().map((p) => ({ ...p }));
    const rows = this.stmt(`SELECT record FROM partitions WHERE state <> 'deleted' OR updated_ms >= ? ORDER BY rowid`).all(deletedSinceMs) as { record: string }[];
    return rows.map((r) => JSON.parse(r.record) as PartitionRecord);
  }

  /** Nodes held per remote by partitions not deleted (idle ones included), as committed. */
  nodesHeld(): ReadonlyMap<string, number> {
    return this.index.nodesHeld();
  }

  /** Forget partitions deleted before `beforeMs` (their history has served); returns how many. */
  purgeDeletedPartitions(beforeMs: number): number {
    return this.stmt(`DELETE FROM partitions WHERE state = 'deleted' AND updated_ms < ?`).run(beforeMs).changes;
  }

  /** Whether a partition of that name was ever recorded (names are never reused). */
  partitionNameTaken(name: string): boolean {
    return this.stmt('SELECT 1 FROM partitions WHERE name = ?').get(name) !== undefined;
  }

  /** Store a new job; refused (DiskFullError) while the disk lacks the room the store keeps for accepted jobs. */
  insert(job: JobRecord): Promise<void> {
    if (!this.reserve.ensure()) return Promise.reject(new DiskFullError(`no room for new jobs under ${this.dir} (${freeBytes(this.dir) ?? '?'} bytes free)`));
    return this.enqueue({ kind: 'insert', job: { ...job } });
  }

  /** Store the tasks of an array: all of them in one transaction, or none. */
  insertMany(jobs: readonly JobRecord[]): Promise<void> {
    if (!this.reserve.ensure()) return Promise.reject(new DiskFullError(`no room for new jobs under ${this.dir} (${freeBytes(this.dir) ?? '?'} bytes free)`));
    return this.enqueue({ kind: 'insert-many', jobs: jobs.map((j) => ({ ...j })) });
  }

  /** Persist the whole record (the job actor owns it; last write wins). */
  save(job: JobRecord): Promise<void> {
    return this.enqueue({ kind: 'update', job: { ...job } });
  }

  get(id: string): JobRecord | null {
    const row = this.getStmt.get(id) as Row | undefined;
    return row ? fromRow(row) : null;
  }

  /** Newest first; `before` is the seq cursor of the previous page. */
  list(filter: { owner?: string; states?: JobState[]; limit: number; before?: number; since?: string }): { jobs: JobRecord[]; next: number | null } {
    const where: string[] = [];
    const params: unknown[] = [];
    if (filter.since !== undefined) {
      where.push('(end_time IS NULL OR end_time >= ?)');
      params.push(new Date(filter.since).toISOString());
    }
    if (filter.owner !== undefined) {
      where.push('owner = ?');
      params.push(filter.owner);
    }
    if (filter.states?.length) {
      where.push(`state IN (${filter.states.map(() => '?').join(',')})`);
      params.push(...filter.states);
    }
    if (filter.before !== undefined) {
      where.push('seq < ?');
      params.push(filter.before);
    }
    const rows = this.stmt(`SELECT * FROM jobs ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY seq DESC LIMIT ?`)
      .all(...params, filter.limit + 1) as Row[];
    const more = rows.length > filter.limit;
    const page = rows.slice(0, filter.limit);
    return { jobs: page.map(fromRow), next: more ? page[page.length - 1]!.seq : null };
  }

  /** Jobs not done (or only those in `steps`), oldest first: what a starting core must resume. */
  active(steps?: readonly JobStep[]): JobRecord[] {
    const where = steps ? `step <> 'done' AND step IN (${sqlList([...steps])})` : ACTIVE_WHERE;
    return (this.stmt(`SELECT * FROM jobs WHERE ${where} ORDER BY seq`).all() as Row[]).map(fromRow);
  }

  /** The scheduler's view of the queue (from memory: the index of what is committed). */
  queued(): QueuedRow[] {
    return this.index.queued();
  }

  /** A queued job's row (from memory), if it is queued. */
  queuedJob(id: string): QueuedRow | undefined {
    return this.index.queuedJob(id);
  }

  /** How many jobs are queued (step queue). */
  get queuedSize(): number {
    return this.index.queuedSize;
  }

  /** Jobs past the queue that hold (or are being given) a partition: what limits, array caps and backfill count. */
  holding(): HoldingRow[] {
    return this.index.holding();
  }

  /** A number that changes with every committed change of a job's step or a partition (the scheduler's "anything new?"). */
  get version(): number {
    return this.index.version;
  }

  /** How each job named stands (its state), and the states of the tasks of each array named: for dependencies. */
  statesOf(ids: readonly string[]): { byId: Map<string, JobState>; byArray: Map<string, JobState[]> } {
    const byId = new Map<string, JobState>();
    const byArray = new Map<string, JobState[]>();
    const one = this.stmt('SELECT state FROM jobs WHERE id = ?');
    const tasks = this.stmt('SELECT state FROM jobs WHERE array_id = ?');
    for (const id of ids) {
      const row = one.get(id) as { state: JobState } | undefined;
      if (row) byId.set(id, row.state);
      else {
        const states = (tasks.all(id) as { state: JobState }[]).map((r) => r.state);
        if (states.length) byArray.set(id, states);
      }
    }
    return { byId, byArray };
  }

  /** Whether a job or an array of that id exists. */
  knows(id: string): boolean {
    return this.getStmt.get(id) !== undefined || this.stmt('SELECT 1 FROM jobs WHERE array_id = ? LIMIT 1').get(id) !== undefined;
  }

  /** The tasks of an array, by index. */
  arrayTasks(arrayId: string): JobRecord[] {
    return (this.stmt('SELECT * FROM jobs WHERE array_id = ? ORDER BY array_index').all(arrayId) as Row[]).map(fromRow);
  }

  /** Jobs that started and ended since `sinceIso` (ISO time), or that hold nodes now: usage and cost. */
  usageSince(sinceIso: string, owner?: string): UsageRow[] {
    // Two index reads (jobs_end_time, jobs_not_ended), never a scan of the queue.
    const mine = owner === undefined ? '' : 'AND owner = @owner';
    const rows = this.stmt(
      `SELECT id, owner, account, remote, nodes, start_time, end_time, cost, submit_time FROM jobs WHERE end_time >= @since ${mine}
       UNION ALL
       SELECT id, owner, account, remote, nodes, start_time, end_time, cost, submit_time FROM jobs
        WHERE end_time IS NULL AND (start_time IS NOT NULL OR cost IS NOT NULL) ${mine}`,
    ).all({ since: sinceIso, ...(owner === undefined ? {} : { owner }) }) as {
      id: string; owner: string; account: string | null; remote: string | null; nodes: number; start_time: string | null; end_time: string | null; cost: number | null; submit_time: string;
    }[];
    return rows.map((r) => ({
      id: r.id,
      owner: r.owner,
      account: r.account,
      remote: r.remote,
      nodes: r.nodes,
      startTime: r.start_time,
      endTime: r.end_time,
      cost: r.cost,
      submitTime: r.submit_time,
    }));
  }

  /** Jobs in the queue (waiting for inputs, or for the scheduler) per user and per account: admission's count. */
  queuedCounts(): QueuedCounts {
    return this.index.queuedCounts();
  }

  /** The charge running on a partition, if any. */
  openCharge(partition: string): OpenCharge | null {
    return (this.stmt('SELECT partition, job_id AS jobId, from_ms AS fromMs, price_per_hour AS pricePerHour, nodes FROM partition_charges WHERE partition = ?').get(partition) as OpenCharge | undefined) ?? null;
  }

  /** Every charge running (one per partition up that a job has used). */
  openCharges(): OpenCharge[] {
    return this.stmt('SELECT partition, job_id AS jobId, from_ms AS fromMs, price_per_hour AS pricePerHour, nodes FROM partition_charges').all() as OpenCharge[];
  }

  /**
   * Close the partition's running charge at `toMs`, adding what it cost to its job, and open `next` (if any), in
   * one transaction: no time is charged twice or lost.
   */
  moveCharge(partition: string, toMs: number, next: OpenCharge | null): void {
    this.db.transaction(() => {
      const open = this.openCharge(partition);
      if (open) {
        const cost = chargeOf(open, toMs);
        this.stmt('UPDATE jobs SET cost = COALESCE(cost, 0) + ? WHERE id = ?').run(cost, open.jobId);
        this.stmt('DELETE FROM partition_charges WHERE partition = ?').run(partition);
      }
      if (next)
        this.db
          .prepare('INSERT INTO partition_charges (partition, job_id, from_ms, price_per_hour, nodes) VALUES (@partition, @jobId, @fromMs, @pricePerHour, @nodes)')
          .run(next);
    })();
    // On disk at the sync that follows (nobody is answered on it; a lost one is closed again at the next start).
    this.walSync.after(() => undefined);
  }

  /** A job's timeline: each change of its step or state, oldest first. */
  events(id: string): JobEventRow[] {
    return (this.stmt('SELECT at_ms AS atMs, step, state, details FROM job_events WHERE job_id = ? ORDER BY at_ms, rowid').all(id) as JobEventRow[]);
  }

  /** Jobs still waiting for their inputs that were submitted before `before` (ISO time). */
  awaitingInputsSince(before: string): string[] {
    return (this.stmt(`SELECT id FROM jobs WHERE step = 'inputs' AND submit_time < ?`).all(before) as { id: string }[]).map((r) => r.id);
  }

  /** Jobs per state and remote (null: not placed yet), for the metrics. */
  countsByStateAndRemote(): { state: string; remote: string | null; n: number }[] {
    return this.stmt('SELECT state, remote, COUNT(*) AS n FROM jobs GROUP BY state, remote').all() as { state: string; remote: string | null; n: number }[];
  }

  /** Jobs per state: everyone's, or those of `owner`. */
  countsByState(owner?: string): Record<string, number> {
    const rows = (
      owner === undefined
        ? this.stmt('SELECT state, COUNT(*) AS n FROM jobs GROUP BY state').all()
        : this.stmt('SELECT state, COUNT(*) AS n FROM jobs WHERE owner = ? GROUP BY state').all(owner)
    ) as { state: string; n: number }[];
    return Object.fromEntries(rows.map((r) => [r.state, r.n]));
  }

  /** Wait for every queued write to be committed and on disk. */
  async flush(): Promise<void> {
    if (this.queue.length) await this.enqueueBarrier();
    await new Promise<void>((resolve) => this.walSync.after(resolve));
  }

  close(): void {
    this.commitQueued();
    this.walSync.flushSync();
    this.checkpointer.stop();
    this.db.close();
    this.walSync.close();
  }

  private enqueueBarrier(): Promise<void> {
    return new Promise((resolve) => setImmediate(() => (this.queue.length ? this.enqueueBarrier() : Promise.resolve()).then(resolve)));
  }

  private enqueue(write: Write): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queue.push({ write, resolve, reject });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.commitQueued());
      }
    });
  }

  private commitQueued(): void {
    this.flushScheduled = false;
    const batch = this.queue;
    if (!batch.length) return;
    this.queue = [];
    const started = performance.now();
    const failure = this.commit(batch);
    this.onCommit?.((performance.now() - started) / 1000, batch.length);
    if (failure === null) {
      this.checkpointer.committed();
      this.boundWal();
      this.walSync.after(() => this.acknowledge(batch));
      this.remakeReserve();
      return;
    }
    if (isDiskFull(failure, this.dir)) return this.commitOnFullDisk(batch, failure);
    // One bad write must not sink the others: retry them one by one so each gets its own answer.
    for (const item of batch) {
      const error = this.commit([item]);
      if (error === null) this.walSync.after(() => this.acknowledge([item]));
      else item.reject(error);
    }
  }

  /** Durable writes: applied to the index (which never runs ahead of the disk), then answered, in commit order. */
  private acknowledge(items: Queued[]): void {
    for (const item of items) this.indexed(item.write);
    for (const item of items) item.resolve();
  }

  /** A committed write, applied to the index (only once on disk: the index never runs ahead of the store). */
  private indexed(write: Write): void {
    if (write.kind === 'partition') this.index.partition(write.partition);
    else if (write.kind === 'insert') this.index.job(write.job, write.seq);
    else if (write.kind === 'insert-many') write.jobs.forEach((job, i) => this.index.job(job, write.seqs?.[i]));
    else this.index.job(write.job);
  }

  /** New jobs are refused; changes to accepted jobs are committed again in the room the reserve frees. */
  private commitOnFullDisk(batch: Queued[], failure: unknown): void {
    const isNew = (item: Queued): boolean => item.write.kind === 'insert' || item.write.kind === 'insert-many';
    const updates = batch.filter((item) => !isNew(item));
    for (const item of batch) if (isNew(item)) item.reject(failure);
    if (!updates.length) return;
    let error = this.reserve.release() ? this.commit(updates) : failure;
    if (error !== null && isDiskFull(error, this.dir) && this.truncateWal()) error = this.commit(updates);
    if (error === null) this.walSync.after(() => this.acknowledge(updates));
    else for (const item of updates) item.reject(error);
  }

  /**
   * Copy the whole WAL into the database file and truncate it, on the store's own connection: the room the WAL
   * holds beyond what the database file already has. Tried on a full disk when the reserve's room was not enough
   * (the checkpointer's worker may have grown the database file into it). Whether it was done.
   */
  private truncateWal(): boolean {
    try {
      const [result] = this.db.pragma('wal_checkpoint(TRUNCATE)') as { busy: number }[];
      return result?.busy === 0;
    } catch {
      return false;
    }
  }

  /** One transaction; the error, or null once committed. better-sqlite3 rolls a failed transaction back. */
  private commit(items: Queued[]): unknown {
    try {
      this.db.transaction(() => {
        for (const { write } of items) {
          if (write.kind === 'partition') {
            const p = write.partition;
            this.savePartitionStmt.run({ name: p.name, state: p.state, remote: p.remote, owner: p.owner, jobId: p.jobId, record: JSON.stringify(p), updatedMs: Date.now() });
          } else if (write.kind === 'insert') write.seq = Number(this.insertStmt.run(toParams(write.job)).lastInsertRowid);
          else if (write.kind === 'insert-many') write.seqs = write.jobs.map((job) => Number(this.insertStmt.run(toParams(job)).lastInsertRowid));
          else this.updateStmt.run(toParams(write.job));
        }
      })();
      return null;
    } catch (error) {
      // SQLite may have ended the transaction itself (SQLITE_FULL), or not: never leave one open, and never
      // throw from here, where no caller would hear it and every queued write would wait for ever.
      try {
        if (this.db.inTransaction) this.db.exec('ROLLBACK');
      } catch {
        /* the failed commit's own error is the one to report */
      }
      return error;
    }
  }

  /** After space was freed: make the reserve again (checked at most once a second, only while it is missing). */
  private remakeReserve(): void {
    const now = Date.now();
    if (now - this.reserveCheckedAt < RESERVE_CHECK_MS) return;
    this.reserveCheckedAt = now;
    this.reserve.ensure();
  }

  /**
   * Open the database. On a disk that filled up while the core was down, SQLite cannot even create its
   * shared-memory file: the reserve is given back to open it, and without one the start fails with a clear reason.
   */
  private open(path: string): Database.Database {
    try {
      return openDatabase(path);
    } catch (error) {
      if (!isDiskFull(error, this.dir)) throw error;
      if (this.reserve.release()) {
        try {
          return openDatabase(path);
        } catch (again) {
          if (!isDiskFull(again, this.dir)) throw again;
        }
      }
      throw new DiskFullError(`the spool's disk is full: cannot open the store ${path} (${freeBytes(this.dir) ?? '?'} bytes free); free some space and start again`);
    }
  }
}
