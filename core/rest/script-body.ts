import busboy from 'busboy';
import type { IncomingMessage } from 'node:http';
import { ErrorCode, RpcError } from '../../terminal-protocol/errors.js';

/** The form field that carries the job script, as in the original Sky Port. */
export const SCRIPT_FIELD = 'script_content';

/**
 * How far past the limit a body is still read (and thrown away) so that the client gets its 413 on an
 * intact connection; a body larger still is cut off.
 */
const DRAIN_BYTES = 64 * 1024 * 1024;

const FORM_TYPE = /^\s*(multipart\/form-data|application\/x-www-form-urlencoded)\s*(;|$)/i;

const tooLarge = (limit: number): RpcError =>
  new RpcError(ErrorCode.TooLarge, `job script exceeds ${limit >= 1024 * 1024 ? `${limit / 1024 / 1024} MB` : `${limit} bytes`}`);

/** Count the body's bytes as they arrive; reject once it is too large to be worth draining. */
function guardSize(request: IncomingMessage, limit: number, reject: (error: RpcError) => void): void {
  const declared = Number(request.headers['content-length'] ?? 0);
  if (declared > limit + DRAIN_BYTES) {
    reject(tooLarge(limit));
    return;
  }
  let size = 0;
  request.on('data', (chunk: Buffer) => {
    size += chunk.length;
    if (size > limit + DRAIN_BYTES) {
      request.unpipe();
      request.pause();
      reject(tooLarge(limit));
    }
  });
}

function readRaw(request: IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    guardSize(request, limit, reject);
    request.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) chunks.push(chunk);
      else chunks.length = 0;
    });
    request.once('end', () => (size > limit ? reject(tooLarge(limit)) : resolve(Buffer.concat(chunks).toString('utf8'))));
    request.once('error', reject);
  });
}

function readForm(request: IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let parser: busboy.Busboy;
    try {
      parser = busboy({ headers: request.headers, limits: { fieldSize: limit, fileSize: limit, files: 8, fields: 64, parts: 72 } });
    } catch (error) {
      reject(new RpcError(ErrorCode.InvalidParams, `malformed form: ${(error as Error).message}`));
      request.resume();
      return;
    }
    let script: string | null = null;
    let truncated = false;
    parser.on('field', (name, value, info) => {
      if (name !== SCRIPT_FIELD) return;
      if (info.valueTruncated) truncated = true;
      else script = value;
    });
    // `curl -F script_content=@job.sh` and generated clients send the script as a file part.
    parser.on('file', (name, stream) => {
      if (name !== SCRIPT_FIELD) {
        stream.resume();
        return;
      }
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('limit', () => {
        truncated = true;
        chunks.length = 0;
      });
      stream.on('end', () => {
        if (!truncated) script = Buffer.concat(chunks).toString('utf8');
      });
    });
    parser.once('close', () => {
      if (truncated) reject(tooLarge(limit));
      else if (script === null) reject(new RpcError(ErrorCode.InvalidParams, `the form has no "${SCRIPT_FIELD}" field`));
      else resolve(script);
    });
    parser.once('error', (error: Error) => {
      request.unpipe(parser);
      request.resume();
      reject(new RpcError(ErrorCode.InvalidParams, `malformed form: ${error.message}`));
    });
    guardSize(request, limit, reject);
    request.pipe(parser);
  });
}

/**
 * The job script of a submit: the `script_content` field of a multipart (or URL-encoded) form, or else the
 * whole raw body. Over `limit` bytes is TooLarge. Rejects with RpcErrors only.
 */
export function readScriptBody(request: IncomingMessage, limit: number): Promise<string> {
  return FORM_TYPE.test(request.headers['content-type'] ?? '') ? readForm(request, limit) : readRaw(request, limit);
}
