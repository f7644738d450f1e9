import { existsSync, readFileSync, statSync } from 'node:fs';
import { normalizeSerial } from './pki.js';
import { writeFileAtomic } from './files.js';

/**
 * The spool's revoked certificate serials (secure/revoked.json). Read at every handshake; the file is
 * re-read only when its modification time changes, so the check costs a stat.
 */
export class Revocations {
  private serials = new Set<string>();
  private loadedMtime = -1;

  constructor(readonly path: string) {}

  isRevoked(serial: string): boolean {
    this.refresh();
    return this.serials.has(normalizeSerial(serial));
  }

  /** Add serials and persist them before returning. */
  revoke(serials: string[]): void {
    this.refresh();
    for (const s of serials) this.serials.add(normalizeSerial(s));
    writeFileAtomic(this.path, JSON.stringify({ serials: [...this.serials].sort() }, null, 2) + '\n', 0o600);
    this.loadedMtime = -1;
  }

  private refresh(): void {
    if (!existsSync(this.path)) {
      this.serials.clear();
      return;
    }
    const mtime = statSync(this.path).mtimeMs;
    if (mtime === this.loadedMtime) return;
    const raw = JSON.parse(readFileSync(this.path, 'utf8')) as { serials?: string[] };
    this.serials = new Set((raw.serials ?? []).map(normalizeSerial));
    this.loadedMtime = mtime;
  }
}
