import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { parseJobScript } from '../../core/jobs/job-script.js';
import { notYetRun, ownJob, type JobRecord } from '../../core/store/job-record.js';

export const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

/** Every regular file below `root` (symbolic links not followed), by relative path, with its SHA-256. */
export function treeHashes(root: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const full = join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.isFile()) out.set(relative(root, full), sha256(readFileSync(full)));
    }
  };
  walk(root);
  return out;
}

/** A queued job record numbered `i` (its id ends in it), for tests of the store. */
export function queuedJobRecord(i: number, script: string, options: { owner?: string; submitTime?: string } = {}): JobRecord {
  return {
    id: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
    owner: options.owner ?? 'alice',
    name: `job-${i}`,
    state: 'Q',
    stateDetails: 'queued',
    step: 'queue',
    script,
    directives: parseJobScript(script).directives,
    inputs: [],
    priority: 0,
    submitTime: options.submitTime ?? new Date().toISOString(),
    ...notYetRun(),
    ...ownJob(),
  };
}
