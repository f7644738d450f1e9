import { createHash } from 'node:crypto';
import { closeSync, constants, createReadStream, createWriteStream, fstatSync, mkdirSync, openSync, realpathSync } from 'node:fs';
import { join, posix, resolve, sep } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { ErrorCode, RpcError } from '../../terminal-protocol/errors.js';
import type { InputFile } from '../../terminal-protocol/terminal-methods.js';

/**
 * Input files named by their path on the core host, the way scripts written for the original Sky Port name
 * them (`#SWM input-files /data/set.csv`). A REST client cannot upload files, so the core reads them itself,
 * but only under the directories an administrator listed in `compat.inputRoots` (none by default): the
 * original read any path it was given.
 */

const CONFIG_KEY = 'compat.inputRoots';

/** A host file and the name it takes in the job's directory (its base name). */
export interface HostInput {
  hostPath: string;
  path: string;
}

const DIRECTIVE = /^#SWM\s+(\S+)(?:\s+(.*?))?\s*$/;

const refuse = (message: string): RpcError => new RpcError(ErrorCode.InvalidParams, message);

/**
 * Take the host paths out of a script's `input-files` lines: each becomes its base name, the name the job
 * finds the file under in its working directory. Pure. A line with no file at all (as templates render an
 * empty list) is blanked, keeping line numbers. A relative input cannot come through REST: refused.
 */
export function takeHostInputs(script: string): { script: string; hostInputs: HostInput[] } {
  const hostInputs: HostInput[] = [];
  const lines = script.split('\n').map((line, i) => {
    const cr = line.endsWith('\r') ? '\r' : '';
    const m = DIRECTIVE.exec(cr ? line.slice(0, -1) : line);
    if (!m || m[1]!.toLowerCase() !== 'input-files') return line;
    const names = (m[2] ?? '')
      .split(/[\s,]+/)
      .filter(Boolean)
      .map((entry) => {
        if (!entry.startsWith('/'))
          throw refuse(
            `line ${i + 1}: input-files "${entry}" is relative: a REST submit carries no files; name a path on the core host under ${CONFIG_KEY}, or submit with swm, which uploads inputs`,
          );
        const hostPath = posix.normalize(entry);
        const path = posix.basename(hostPath);
        if (path === '' || path === '.' || path === '..' || entry.includes('\0')) throw refuse(`line ${i + 1}: input-files "${entry}" does not name a file`);
        if (hostInputs.some((h) => h.path === path)) throw refuse(`line ${i + 1}: input-files: two files are named "${path}"`);
        hostInputs.push({ hostPath, path });
        return path;
      });
    return names.length ? `#SWM input-files ${names.join(' ')}${cr}` : cr;
  });
  return { script: lines.join('\n'), hostInputs };
}

const within = (root: string, path: string): boolean => path === root || path.startsWith(root.endsWith(sep) ? root : root + sep);

/** An input file opened for reading: the open descriptor is what is hashed and copied, whatever happens to the path. */
export interface OpenedHostInput extends InputFile {
  hostPath: string;
  fd: number;
}

const realOrNull = (path: string): string | null => {
  try {
    return realpathSync(path);
  } catch {
    return null;
  }
};

/** Where an open descriptor really points (Linux); null where the system cannot say. */
const pathOfDescriptor = (fd: number): string | null => realOrNull(`/proc/self/fd/${fd}`);

async function sha256Of(fd: number): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream('', { fd, autoClose: false, start: 0 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/**
 * Open each host input after checking it lies under an allowed root, before and after following links
 * (a link out of a root is refused like a path out of it). Nothing outside the roots is even looked at, so
 * a refusal says nothing about what exists there. The caller closes them (closeHostInputs).
 */
export async function openHostInputs(inputs: HostInput[], roots: string[]): Promise<OpenedHostInput[]> {
  const opened: OpenedHostInput[] = [];
  try {
    for (const input of inputs) {
      if (roots.length === 0)
        throw refuse(`input-files "${input.hostPath}": this core reads no files of its host for a REST submit (${CONFIG_KEY} is empty in its config)`);
      const outside = () =>
        refuse(`input-files "${input.hostPath}" is not under a directory listed in ${CONFIG_KEY} (${roots.join(', ')})`);
      if (!roots.some((root) => within(resolve(root), input.hostPath))) throw outside();
      const real = realOrNull(input.hostPath);
      if (real === null) throw refuse(`input-files "${input.hostPath}" does not exist on the core host`);
      const realRoots = roots.map(realOrNull).filter((r): r is string => r !== null);
      if (!realRoots.some((root) => within(root, real))) throw outside();
      const fd = openSync(real, constants.O_RDONLY | constants.O_NOFOLLOW);
      opened.push({ hostPath: input.hostPath, path: input.path, fd, size: 0, sha256: '' });
      const now = pathOfDescriptor(fd);
      if (now !== null && !realRoots.some((root) => within(root, now))) throw outside();
      const stat = fstatSync(fd);
      if (!stat.isFile()) throw refuse(`input-files "${input.hostPath}" is not a regular file`);
      opened.at(-1)!.size = stat.size;
      opened.at(-1)!.sha256 = await sha256Of(fd);
    }
    return opened;
  } catch (error) {
    closeHostInputs(opened);
    throw error;
  }
}

/** Copy opened inputs into a job's inputs directory; the job's input commit then checks sizes and hashes. */
export async function copyHostInputs(opened: OpenedHostInput[], inputsDir: string): Promise<void> {
  mkdirSync(inputsDir, { recursive: true, mode: 0o700 });
  for (const file of opened) {
    await pipeline(createReadStream('', { fd: file.fd, autoClose: false, start: 0 }), createWriteStream(join(inputsDir, file.path), { mode: 0o600 }));
  }
}

export function closeHostInputs(opened: OpenedHostInput[]): void {
  for (const file of opened) {
    try {
      closeSync(file.fd);
    } catch {
      /* already closed */
    }
  }
}
