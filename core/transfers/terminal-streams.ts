import { realpath, open, stat } from 'node:fs/promises';
import { resolve, sep } from 'node:path';
import type { Logger } from 'pino';
import { refusalIfDiskFull } from '../../spool-bootstrap/disk-full.js';
import { ErrorCode, RpcError } from '../../terminal-protocol/errors.js';
import {
  FILE_STREAM_WINDOW,
  FORWARD_STREAM_WINDOW,
  MuxStream,
  StreamMux,
  type FrameTransport,
  receiveFile,
  sendFile,
  spliceStreams,
  writeFailure,
} from '../../terminal-protocol/streams.js';
import { JobInputs } from '../jobs/job-inputs.js';
import { outputsDir } from '../jobs/steps/stage-out.js';
import type { CoreServices } from '../services.js';
import type { JobRecord } from '../store/job-record.js';
import type { Duplex } from 'node:stream';

/**
 * Streams one terminal may have open at once. Each holds at most its window in memory (frames received and
 * not yet written): 16 file streams of 8 MiB and 256 forwarded connections of 4 MiB bound a terminal's share.
 */
const MAX_FILE_STREAMS = 16;
const MAX_FORWARD_STREAMS = 256;

/**
 * The bulk streams of one terminal connection (terminal-protocol/streams.ts): input uploads, file downloads
 * and forwarded TCP connections, multiplexed on its WebSocket as binary frames. Closing the connection
 * aborts them all; an upload keeps what arrived, so the terminal resumes it on its next connection.
 */
export class TerminalStreams {
  readonly mux: StreamMux;
  private readonly files = new Map<number, AbortController>();
  /** Input uploads by job and path: a new upload of the same file replaces the one in progress. */
  private static readonly uploading = new Map<string, AbortController>();
  private readonly forwards = new Set<Duplex>();

  constructor(
    peer: FrameTransport,
    private readonly services: CoreServices,
    private readonly logger: Logger,
  ) {
    this.mux = new StreamMux(peer, { onViolation: (error) => logger.warn({ err: error.message }, 'malformed binary frame') });
  }

  receive(data: Buffer): void {
    this.mux.receive(data);
  }

  close(): void {
    this.mux.close(new RpcError(ErrorCode.Unavailable, 'terminal disconnected'));
    for (const abort of this.files.values()) abort.abort();
    for (const stream of this.forwards) stream.destroy();
  }

  private admitFile(): { id: number; abort: AbortController } {
    if (this.files.size >= MAX_FILE_STREAMS) throw new RpcError(ErrorCode.Unavailable, `too many transfers at once on this connection (${MAX_FILE_STREAMS})`);
    const id = this.mux.allocate();
    const abort = new AbortController();
    this.files.set(id, abort);
    return { id, abort };
  }

  /**
   * job.input.open: receive a declared input from `offset` (default: what has arrived). The stream checks
   * the file's SHA-256 as it arrives; a verified file makes the commit cheap, a corrupt one is emptied so
   * that the terminal sends it again whole.
   */
  async openInput(job: JobRecord, path: string, offset?: number): Promise<{ stream: number; offset: number; size: number; window: number }> {
    const inputs = new JobInputs(this.services.spool.job(job.id), job.inputs, this.services.inputDigests);
    const opened = await inputs.openForStream(path, offset).catch((error: unknown) => {
      throw refusalIfDiskFull(error, 'the upload was not stored');
    });
    const from = offset ?? opened.received;
    let admitted: { id: number; abort: AbortController };
    try {
      admitted = this.admitFile();
    } catch (error) {
      await opened.file.close();
      throw error;
    }
    // The bytes already here are hashed by the worker first; what arrives follows in order.
    const prefix = this.services.hashes.hash({ path: opened.path, bytes: from });
    const { id, abort } = admitted;
    const key = `${job.id}/${path}`;
    TerminalStreams.uploading.get(key)?.abort();
    TerminalStreams.uploading.set(key, abort);
    const window = FILE_STREAM_WINDOW;
    // Sent again from an earlier point: what followed is no longer trusted.
    if (from < opened.received) await opened.file.truncate(from);
    receiveFile({
      mux: this.mux,
      stream: id,
      from,
      size: opened.declared.size,
      window,
      prefix,
      expectedSha256: opened.declared.sha256,
      signal: abort.signal,
      complete: async (sha256) => {
        await opened.file.close();
        if (sha256 === opened.declared.sha256) this.services.inputDigests.record(opened.path, sha256);
      },
      corrupt: () => opened.file.truncate(0),
      sink: {
        write: async (data, at) => {
          try {
            let done = 0;
            while (done < data.length) done += (await opened.file.write(data, done, data.length - done, at + done)).bytesWritten;
            this.services.metrics.transferred('upload', data.length);
          } catch (error) {
            // What arrived before stays: the terminal resumes from there once space is freed.
            const refusal = refusalIfDiskFull(error, 'the rest of the upload was not stored');
            throw refusal instanceof RpcError ? refusal : writeFailure(error);
          }
        },
      },
    })
      .then(
        () => undefined,
        (error: Error) => {
          prefix.drop();
          void opened.file.close().catch(() => undefined);
          if (!abort.signal.aborted) this.logger.info({ job: job.id, path, err: error.message }, 'input upload stopped');
        },
      )
      .finally(() => {
        this.files.delete(id);
        if (TerminalStreams.uploading.get(key) === abort) TerminalStreams.uploading.delete(key);
      });
    return { stream: id, offset: from, size: opened.declared.size, window };
  }

  /** job.file.open: send a file of the job's results from `offset`; the END frame carries its SHA-256. */
  async openOutput(job: JobRecord, path: string, offset: number): Promise<{ stream: number; size: number; window: number }> {
    const root = outputsDir(this.services.spool.job(job.id));
    const target = resolve(root, path);
    if (!target.startsWith(root + sep)) throw new RpcError(ErrorCode.PathEscape, `"${path}" escapes the job directory`);
    const real = await realpath(target).catch(() => null);
    const realRoot = await realpath(root).catch(() => root);
    if (!real || !(await stat(real)).isFile()) throw new RpcError(ErrorCode.NotFound, `file ${path} of job ${job.id} not found`);
    if (!real.startsWith(realRoot + sep)) throw new RpcError(ErrorCode.PathEscape, `"${path}" leads outside the job directory`);
    const file = await open(real, 'r');
    const size = (await file.stat()).size;
    if (offset > size) {
      await file.close();
      throw new RpcError(ErrorCode.InvalidParams, `offset ${offset} is past the end of ${path} (${size} bytes)`);
    }
    let admitted: { id: number; abort: AbortController };
    try {
      admitted = this.admitFile();
    } catch (error) {
      await file.close();
      throw error;
    }
    const { id, abort } = admitted;
    const window = FILE_STREAM_WINDOW;
    const digest = this.services.hashes.hash({ path: real, bytes: offset });
    sendFile({ mux: this.mux, stream: id, file, from: offset, size, window, digest, signal: abort.signal })
      .then(() => this.services.metrics.transferred('download', size - offset))
      .catch((error: Error) => {
        digest.drop();
        if (!abort.signal.aborted) this.logger.info({ job: job.id, path, err: error.message }, 'download stopped');
      })
      .finally(() => {
        this.files.delete(id);
        void file.close().catch(() => undefined);
      });
    return { stream: id, size, window };
  }

  /**
   * A forwarded connection: `connect` yields the far end (an SSH channel to the job's port); its bytes and
   * the stream's are spliced until either side closes. Resolves with the stream id once connected.
   */
  async openForward(connect: () => Promise<Duplex>, onClose?: () => void): Promise<{ stream: number; window: number }> {
    if (this.forwards.size >= MAX_FORWARD_STREAMS)
      throw new RpcError(ErrorCode.Unavailable, `too many forwarded connections on this terminal connection (${MAX_FORWARD_STREAMS})`);
    const far = await connect();
    const id = this.mux.allocate();
    const stream = new MuxStream(this.mux, id, FORWARD_STREAM_WINDOW);
    this.forwards.add(stream);
    spliceStreams(stream, far, () => {
      this.forwards.delete(stream);
      onClose?.();
    });
    return { stream: id, window: FORWARD_STREAM_WINDOW };
  }
}
