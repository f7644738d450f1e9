import type { Database } from 'better-sqlite3';

/**
 * Schema migrations, applied in order; `PRAGMA user_version` records how many have run.
 * Never edit a published migration: append a new one.
 */
const migrations: string[] = [
  `CREATE TABLE jobs (
     seq            INTEGER PRIMARY KEY AUTOINCREMENT,
     id             TEXT NOT NULL UNIQUE,
     owner          TEXT NOT NULL,
     name           TEXT NOT NULL,
     state          TEXT NOT NULL,
     state_details  TEXT NOT NULL DEFAULT '',
     step           TEXT NOT NULL,
     script         TEXT NOT NULL,
     directives     TEXT NOT NULL,
     inputs         TEXT NOT NULL DEFAULT '[]',
     priority       INTEGER NOT NULL DEFAULT 0,
     submit_time    TEXT NOT NULL,
     start_time     TEXT,
     end_time       TEXT,
     exitcode       INTEGER,
     signal         INTEGER,
     remote         TEXT,
     flavor         TEXT,
     node_names     TEXT NOT NULL DEFAULT '[]',
     node_ips       TEXT NOT NULL DEFAULT '[]',
     partition_name TEXT,
     partition_id   TEXT,
     runtime        TEXT,
     outcome        TEXT,
     run_started_ms INTEGER,
     updated_ms     INTEGER NOT NULL
   );
   CREATE INDEX jobs_owner_seq ON jobs(owner, seq);
   CREATE INDEX jobs_step ON jobs(step) WHERE step <> 'done';`,
  // Partitions become entities of their own. Those of jobs in flight under an earlier core are adopted as
  // reserved for their job (busy once the job is past the partition step), so that none is lost track of.
  `CREATE TABLE partitions (
     name        TEXT PRIMARY KEY,
     state       TEXT NOT NULL,
     remote      TEXT NOT NULL,
     owner       TEXT,
     job_id      TEXT,
     record      TEXT NOT NULL,
     updated_ms  INTEGER NOT NULL
   );
   CREATE INDEX partitions_live ON partitions(state) WHERE state <> 'deleted';
   INSERT INTO partitions (name, state, remote, owner, job_id, record, updated_ms)
     SELECT partition_name, CASE WHEN step = 'partition' THEN 'requested' ELSE 'busy' END, remote, owner, id,
            json_object('name', partition_name, 'state', CASE WHEN step = 'partition' THEN 'requested' ELSE 'busy' END,
              'remote', remote, 'flavor', flavor, 'nodeCount', json_extract(directives, '$.nodes'),
              'cloudImage', json_extract(directives, '$.cloudImage'), 'ports', json(json_extract(directives, '$.ports')),
              'owner', owner, 'jobId', id, 'pool', json('false'), 'gateId', partition_id, 'nodes', json('[]'),
              'containerImages', json('[]'), 'jobsRun', 0, 'attempts', 0, 'retryAtMs', NULL, 'idleSinceMs', NULL,
              'keepSec', 0, 'reason', NULL, 'createdMs', updated_ms, 'upMs', NULL, 'deletedMs', NULL),
            updated_ms
       FROM jobs
      WHERE step IN ('partition', 'connect', 'stage-in', 'run', 'stage-out', 'teardown') AND partition_name IS NOT NULL;`,
  // Scheduling a team's work: accounts, arrays, dependencies, pending reasons, cost, attempts; and a timeline of
  // each job's steps, written by the database itself as the job's step or state changes (no extra write to make).
  `ALTER TABLE jobs ADD COLUMN account TEXT;
   ALTER TABLE jobs ADD COLUMN array_id TEXT;
   ALTER TABLE jobs ADD COLUMN array_index INTEGER;
   ALTER TABLE jobs ADD COLUMN array_cap INTEGER;
   ALTER TABLE jobs ADD COLUMN depends TEXT NOT NULL DEFAULT '[]';
   ALTER TABLE jobs ADD COLUMN reason TEXT;
   ALTER TABLE jobs ADD COLUMN cost REAL;
   ALTER TABLE jobs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
   UPDATE jobs SET account = json_extract(directives, '$.account');
   CREATE INDEX jobs_array ON jobs(array_id) WHERE array_id IS NOT NULL;
   CREATE INDEX jobs_end_time ON jobs(end_time) WHERE end_time IS NOT NULL;
   CREATE TABLE job_events (
     job_id   TEXT NOT NULL,
     at_ms    INTEGER NOT NULL,
     step     TEXT NOT NULL,
     state    TEXT NOT NULL,
     details  TEXT NOT NULL
   );
   CREATE INDEX job_events_job ON job_events(job_id, at_ms);
   CREATE TRIGGER jobs_inserted AFTER INSERT ON jobs BEGIN
     INSERT INTO job_events (job_id, at_ms, step, state, details) VALUES (NEW.id, NEW.updated_ms, NEW.step, NEW.state, NEW.state_details);
   END;
   CREATE TRIGGER jobs_moved AFTER UPDATE OF step, state ON jobs WHEN OLD.step IS NOT NEW.step OR OLD.state IS NOT NEW.state BEGIN
     INSERT INTO job_events (job_id, at_ms, step, state, details) VALUES (NEW.id, NEW.updated_ms, NEW.step, NEW.state, NEW.state_details);
   END;
   -- The charge running on each partition up: the job its time is charged to since from_ms (core/partitions/partition-charges.ts).
   CREATE TABLE partition_charges (
     partition       TEXT PRIMARY KEY,
     job_id          TEXT NOT NULL,
     from_ms         INTEGER NOT NULL,
     price_per_hour  REAL NOT NULL,
     nodes           INTEGER NOT NULL
   );`,
  // What is filtered, summed and sorted becomes columns of its own, so that no query reads a job's directives
  // (json_extract) in a hot path: the nodes and time limit a job asks for, the remote, flavor and cloud image it
  // names (remote and flavor hold where it was placed), its GPUs. Backfilled from the directives. State counts and
  // the usage of jobs not ended are read through indexes of their own.
  `ALTER TABLE jobs ADD COLUMN nodes INTEGER NOT NULL DEFAULT 1;
   ALTER TABLE jobs ADD COLUMN duration_sec INTEGER NOT NULL DEFAULT 0;
   ALTER TABLE jobs ADD COLUMN asked_remote TEXT;
   ALTER TABLE jobs ADD COLUMN asked_flavor TEXT;
   ALTER TABLE jobs ADD COLUMN cloud_image TEXT;
   ALTER TABLE jobs ADD COLUMN gpus INTEGER NOT NULL DEFAULT 0;
   UPDATE jobs SET nodes = COALESCE(json_extract(directives, '$.nodes'), 1),
                   duration_sec = COALESCE(json_extract(directives, '$.durationSec'), 0),
                   asked_remote = json_extract(directives, '$.remote'),
                   asked_flavor = json_extract(directives, '$.flavor'),
                   cloud_image = json_extract(directives, '$.cloudImage'),
                   gpus = COALESCE(json_extract(directives, '$.gpus'), 0);
   CREATE INDEX jobs_state_owner ON jobs(state, owner);
   CREATE INDEX jobs_not_ended ON jobs(seq) WHERE end_time IS NULL AND (start_time IS NOT NULL OR cost IS NOT NULL);`,
];

/** Bring the schema up to `target` (default: the latest; an earlier one makes the spool of an older core, for tests). */
export function migrate(db: Database, target = migrations.length): number {
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > migrations.length)
    throw new Error(`the store was written by a newer swm-core (schema ${current}, this one knows ${migrations.length})`);
  for (let v = current; v < Math.min(target, migrations.length); v++) {
    db.transaction(() => {
      db.exec(migrations[v]!);
      db.pragma(`user_version = ${v + 1}`);
    })();
  }
  return db.pragma('user_version', { simple: true }) as number;
}
