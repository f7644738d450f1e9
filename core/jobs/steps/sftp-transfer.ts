import type { SFTPWrapper } from 'ssh2';

/** Small SFTP operations of the steps; bulk transfers (inputs, results) are in core/transfers/. */

export const writeRemoteFile = (sftp: SFTPWrapper, remote: string, content: string, mode = 0o644): Promise<void> =>
  new Promise((resolve, reject) => sftp.writeFile(remote, content, { mode }, (e) => (e ? reject(e) : resolve())));

const mkdirOnce = (sftp: SFTPWrapper, remote: string): Promise<'made' | 'exists' | 'no-parent'> =>
  new Promise((resolve, reject) =>
    sftp.mkdir(remote, { mode: 0o700 }, (e) => {
      if (!e) return resolve('made');
      // SFTP says only "failure" for a directory that exists: look.
      statRemote(sftp, remote).then(
        (seen) => (seen?.isDirectory ? resolve('exists') : seen ? reject(e) : resolve('no-parent')),
        reject,
      );
    }),
  );

/** `mkdir -p` over SFTP (no process on the node): the deepest directory first, its parents only if missing. */
export async function makeRemoteDirs(sftp: SFTPWrapper, remote: string): Promise<void> {
  const result = await mkdirOnce(sftp, remote);
  if (result !== 'no-parent') return;
  const parent = remote.includes('/') ? remote.slice(0, remote.lastIndexOf('/')) : '';
  if (!parent) throw new Error(`cannot make directory ${remote} on the node`);
  await makeRemoteDirs(sftp, parent);
  if ((await mkdirOnce(sftp, remote)) === 'no-parent') throw new Error(`cannot make directory ${remote} on the node`);
}

export const statRemote = (sftp: SFTPWrapper, remote: string): Promise<{ size: number; isDirectory: boolean } | null> =>
  new Promise((resolve, reject) =>
    sftp.stat(remote, (e, stats) => {
      if (!e) return resolve({ size: stats.size, isDirectory: stats.isDirectory() });
      if ((e as { code?: number }).code === 2) return resolve(null); // NO_SUCH_FILE
      reject(e);
    }),
  );

/** Read up to `length` bytes at `offset` of a remote file (empty at or past its end, null if it does not exist). */
export const readRemoteChunk = (sftp: SFTPWrapper, remote: string, offset: number, length: number): Promise<Buffer | null> =>
  new Promise((resolve, reject) => {
    sftp.open(remote, 'r', (e, handle) => {
      if (e) return (e as { code?: number }).code === 2 ? resolve(null) : reject(e);
      const chunks: Buffer[] = [];
      let position = offset;
      let remaining = length;
      const next = () => {
        const size = Math.min(remaining, 256 * 1024);
        sftp.read(handle, Buffer.alloc(size), 0, size, position, (err, bytesRead, buffer) => {
          if (err || bytesRead === 0) {
            sftp.close(handle, () => (err && chunks.length === 0 ? reject(err) : resolve(Buffer.concat(chunks))));
            return;
          }
          chunks.push(Buffer.from(buffer.subarray(0, bytesRead)));
          position += bytesRead;
          remaining -= bytesRead;
          if (remaining <= 0) sftp.close(handle, () => resolve(Buffer.concat(chunks)));
          else next();
        });
      };
      next();
    });
  });

/** Remove a file or an empty directory on the node; one that is not there is fine. */
export const removeRemote = (sftp: SFTPWrapper, remote: string, directory = false): Promise<void> =>
  new Promise((resolve) => {
    const done = () => resolve();
    if (directory) sftp.rmdir(remote, done);
    else sftp.unlink(remote, done);
  });
