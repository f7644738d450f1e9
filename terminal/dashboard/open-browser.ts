import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

/** The desktop's "open this" command for each platform. */
const OPENERS: Partial<Record<NodeJS.Platform, { command: string; args: string[] }>> = {
  linux: { command: 'xdg-open', args: [] },
  darwin: { command: 'open', args: [] },
  win32: { command: 'cmd', args: ['/c', 'start', '""'] },
};

/** A page, in a directory and file only this user may read, that sends the browser on to `url`. */
export function redirectFile(url: string): { file: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'swm-dashboard-'));
  const file = join(dir, 'open.html');
  const attribute = url.replace(/&/g, '&amp;').replace(/"/g, '&quot;');
  writeFileSync(file, `<!doctype html><meta charset="utf-8"><meta http-equiv="refresh" content="0;url=${attribute}"><title>Sky Port dashboard</title>\n`, { mode: 0o600 });
  return { file, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * Opens the dashboard in the desktop's browser. The browser is given a redirecting file rather than the
 * address: a command line is visible to every local user, and the address holds the token. Resolves
 * with a function that removes the file, or rejects saying why nothing opened.
 */
export async function openInBrowser(url: string): Promise<() => void> {
  const opener = OPENERS[process.platform] ?? OPENERS.linux!;
  const { file, remove } = redirectFile(url);
  try {
    await new Promise<void>((resolve, reject) => {
      const child = spawn(opener.command, [...opener.args, pathToFileURL(file).href], { stdio: 'ignore', detached: true });
      child.once('error', (error: NodeJS.ErrnoException) =>
        reject(new Error(error.code === 'ENOENT' ? `${opener.command} is not installed` : error.message)),
      );
      child.once('spawn', () => {
        child.unref();
        resolve();
      });
    });
  } catch (error) {
    remove();
    throw error;
  }
  return remove;
}
