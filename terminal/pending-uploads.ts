import { createHash } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../spool-bootstrap/files.js';

/**
 * Submissions whose inputs are still being uploaded, remembered in $SWM_HOME/uploads so that running the
 * same `swm submit` again after an interruption resumes that job's upload instead of starting a new job.
 * "The same" means: same core, same script, same name, same input files with the same contents.
 */
export interface UploadIdentity {
  coreUrl: string;
  script: string;
  name?: string;
  inputs: readonly { path: string; size: number; sha256: string }[];
}

export function uploadKey(identity: UploadIdentity): string {
  const manifest = identity.inputs.map((i) => [i.path, i.size, i.sha256]).sort();
  const scriptHash = createHash('sha256').update(identity.script).digest('hex');
  return createHash('sha256')
    .update(JSON.stringify([identity.coreUrl, scriptHash, identity.name ?? null, manifest]))
    .digest('hex');
}

export class PendingUploads {
  private readonly dir: string;

  constructor(home: string) {
    this.dir = join(home, 'uploads');
  }

  /** The job a previous run submitted for this key, if that run did not finish its upload. */
  recall(key: string): string | null {
    try {
      const record = JSON.parse(readFileSync(join(this.dir, `${key}.json`), 'utf8')) as { id?: unknown };
      return typeof record.id === 'string' ? record.id : null;
    } catch {
      return null;
    }
  }

  /** Best effort: a home we cannot write to only costs the ability to resume. */
  remember(key: string, id: string): void {
    try {
      writeFileAtomic(join(this.dir, `${key}.json`), JSON.stringify({ id, since: new Date().toISOString() }), 0o600);
    } catch {
      // resuming is a convenience, not a requirement
    }
  }

  forget(key: string): void {
    rmSync(join(this.dir, `${key}.json`), { force: true });
  }
}
