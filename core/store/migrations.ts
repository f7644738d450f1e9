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
];

export function migrate(db: Database): number {
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > migrations.length)
    throw new Error(`the store was written by a newer swm-core (schema ${current}, this one knows ${migrations.length})`);
  for (let v = current; v < migrations.length; v++) {
    db.transaction(() => {
      db.exec(migrations[v]!);
      db.pragma(`user_version = ${v + 1}`);
    })();
  }
  return migrations.length;
}
