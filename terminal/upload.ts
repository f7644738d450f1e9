import { open, type FileHandle } from 'node:fs/promises';
import type { TerminalClient } from '../terminal-protocol/client.js';
import { ErrorCode, RpcError } from '../terminal-protocol/errors.js';
import { sendFile, streamsOf } from '../terminal-protocol/streams.js';
import { MAX_CHUNK_BYTES } from '../terminal-protocol/terminal-methods.js';
import { CliError } from './exit-codes.js';
import type { LocalInput } from './local-inputs.js';
import { startProgress } from './progress.js';
import { forEachConcurrently } from './work-pool.js';

/** Bytes per job.input.write: the protocol's largest chunk, so a big file takes as few round trips as it can. */
export const UPLOAD_CHUNK_BYTES = MAX_CHUNK_BYTES;
/** Files uploaded at once: many small files are bound by round trips, not bandwidth. */
const PARALLEL_FILES = 8;

/** Test hooks: change a binary frame before it leaves (to prove the core catches corruption). */
export interface UploadHooks {
  tamper?: (frame: Buffer, offset: number, path: string) => void;
}

export interface UploadStep {
  input: LocalInput;
  /** Where to start: what the core already has. */
  from: number;
}

/**
 * What remains to send, given what the core reports it received (job.input.status). A file the core does
 * not list, or lists with another size, means the job was declared with other inputs: refused.
 */
export function remainingUploads(
  inputs: readonly LocalInput[],
  arrived: readonly { path: string; size: number; received: number }[],
): UploadStep[] {
  const byPath = new Map(arrived.map((f) => [f.path, f]));
  const steps: UploadStep[] = [];
  for (const input of inputs) {
    const known = byPath.get(input.path);
    if (!known) throw new CliError(`the core does not expect input "${input.path}" for this job`);
    if (known.size !== input.size)
      throw new CliError(`the core expects input "${input.path}" to be ${known.size} bytes, but it is ${input.size}`);
    const from = Math.min(Math.max(0, known.received), input.size);
    if (from < input.size) steps.push({ input, from });
  }
  return steps;
}

async function readChunk(file: FileHandle, position: number, size: number): Promise<Buffer> {
  const length = Math.min(UPLOAD_CHUNK_BYTES, size - position);
  const buffer = Buffer.allocUnsafe(length);
  const { bytesRead } = await file.read(buffer, 0, length, position);
  return buffer.subarray(0, bytesRead);
}

/**
 * The fast path: the file as binary frames on the WebSocket (job.input.open), within the core's window,
 * the whole file SHA-256-checked by the core as it arrives. Resolves false when the core does not offer it
 * (an older core), so that the caller falls back to job.input.write.
 */
async function streamFile(
  core: TerminalClient,
  id: string,
  step: UploadStep,
  onBytes: (n: number) => void,
  hooks: UploadHooks,
): Promise<boolean> {
  const { input } = step;
  let opened;
  try {
    opened = await core.call('job.input.open', { id, path: input.path, offset: step.from });
  } catch (error) {
    if (error instanceof RpcError && error.code === ErrorCode.MethodNotFound) return false;
    throw error;
  }
  const file = await openInput(input);
  let acked = opened.offset;
  try {
    const { size } = await file.stat();
    if (size !== input.size) throw new CliError(`input "${input.path}" changed size since it was hashed: is it still being written?`);
    await sendFile({
      mux: streamsOf(core),
      stream: opened.stream,
      file,
      from: opened.offset,
      size: input.size,
      window: opened.window,
      onAcked: (now) => {
        onBytes(now - acked);
        acked = now;
      },
      tamper: hooks.tamper ? (frame, offset) => hooks.tamper!(frame, offset, input.path) : undefined,
    });
    return true;
  } finally {
    await file.close();
  }
}

const openInput = (input: LocalInput): Promise<FileHandle> =>
  open(input.absolute, 'r').catch((error: Error) => {
    throw new CliError(`cannot read input "${input.path}": ${error.message}`);
  });

/**
 * The fallback: one job.input.write (base64 in JSON) in flight at a time, the next chunk read from disk
 * meanwhile. The core answers each write with the bytes it now holds; the upload continues from there.
 */
async function writeFileInChunks(core: TerminalClient, id: string, step: UploadStep, onBytes: (n: number) => void): Promise<void> {
  const { input } = step;
  const file = await openInput(input);
  try {
    let offset = step.from;
    let ahead = readChunk(file, offset, input.size);
    while (offset < input.size) {
      const chunk = await ahead;
      if (chunk.length === 0) throw new CliError(`input "${input.path}" shrank while being uploaded`);
      const end = offset + chunk.length;
      ahead = end < input.size ? readChunk(file, end, input.size) : Promise.resolve(Buffer.alloc(0));
      ahead.catch(() => undefined); // awaited on the next turn; do not let it count as unhandled meanwhile
      const { received } = await core.call('job.input.write', { id, path: input.path, offset, data: chunk.toString('base64') });
      if (received === end) {
        onBytes(chunk.length);
        offset = end;
      } else if (received > offset && received <= input.size) {
        // The core holds a different amount than we sent up to: continue from what it has.
        onBytes(received - offset);
        offset = received;
        ahead = readChunk(file, offset, input.size);
      } else {
        throw new CliError(`upload of "${input.path}" is out of step: sent up to byte ${end}, the core holds ${received}`);
      }
    }
  } finally {
    await file.close();
  }
}

/**
 * Sends one file, fast path first; resolves with how many times it was sent again whole. The core checks
 * the file's SHA-256 as it arrives; when the file turns out corrupt it drops what arrived and says so
 * (Integrity), and the file is sent once more from byte 0. (Nothing on a TLS connection alters bytes in
 * flight; this is for memory or disks that do.)
 */
async function uploadFile(core: TerminalClient, id: string, step: UploadStep, onBytes: (n: number) => void, hooks: UploadHooks): Promise<number> {
  let delivered = 0;
  const counted = (n: number) => {
    delivered += n;
    onBytes(n);
  };
  try {
    if (!(await streamFile(core, id, step, counted, hooks))) await writeFileInChunks(core, id, step, counted);
    return 0;
  } catch (error) {
    if (!(error instanceof RpcError && error.code === ErrorCode.Integrity)) throw error;
    // What was counted as acknowledged is gone on the core: take it back from the progress, then start over.
    onBytes(-(delivered + step.from));
    await streamFile(core, id, { input: step.input, from: 0 }, onBytes, hooks);
    return 1;
  }
}

export interface UploadResult {
  files: number;
  /** Bytes sent by this run. */
  sent: number;
  /** Bytes the core already had (an earlier, interrupted run). */
  alreadyThere: number;
  /** Files the core found corrupt (their SHA-256) and had sent again whole. */
  resent: number;
}

/** Uploads what the core does not have yet of a job's declared inputs (asks job.input.status first). */
export async function uploadInputs(
  core: TerminalClient,
  id: string,
  inputs: readonly LocalInput[],
  options: { progress: boolean; hooks?: UploadHooks },
): Promise<UploadResult> {
  const status = await core.call('job.input.status', { id });
  const steps = remainingUploads(inputs, status.files);
  const total = inputs.reduce((n, i) => n + i.size, 0);
  const toSend = steps.reduce((n, s) => n + s.input.size - s.from, 0);
  const alreadyThere = total - toSend;
  const progress = startProgress({
    enabled: options.progress,
    label: 'upload  ',
    total,
    startValue: alreadyThere,
    files: { total: inputs.length, done: inputs.length - steps.length },
  });
  let sent = 0;
  let resent = 0;
  try {
    await forEachConcurrently(steps, PARALLEL_FILES, async (step) => {
      resent += await uploadFile(
        core,
        id,
        step,
        (n) => {
          sent += n;
          progress.advance(n);
        },
        options.hooks ?? {},
      );
      progress.fileDone();
    });
  } finally {
    progress.finish();
  }
  return { files: inputs.length, sent, alreadyThere, resent };
}
