import { isDiskFull, spoolDiskFull } from '../../spool-bootstrap/disk-full.js';
import { ErrorCode, errorCodeNames, RpcError } from '../../terminal-protocol/errors.js';

/** HTTP status of each protocol error code: the REST face reports the same errors as the WebSocket face. */
const statusOfCode: Record<number, number> = {
  [ErrorCode.NotFound]: 404,
  [ErrorCode.InvalidScript]: 400,
  [ErrorCode.InvalidParams]: 400,
  [ErrorCode.PathEscape]: 400,
  [ErrorCode.Unschedulable]: 400,
  [ErrorCode.TooLarge]: 413,
  [ErrorCode.Forbidden]: 403,
  [ErrorCode.Conflict]: 409,
  [ErrorCode.Integrity]: 409,
  [ErrorCode.Unavailable]: 503,
  [ErrorCode.Timeout]: 504,
  [ErrorCode.DiskFull]: 507,
};

/** The body of every REST error: the protocol's stable code and its name, and a human message. */
export interface ErrorBody {
  error: { code: number; name: string; message: string };
}

/**
 * Status and body for anything a handler threw. Pure. Errors that are not RpcErrors are internal (their text
 * stays in the log), except a write that found the disk full, wherever it happened (507).
 */
export function errorReply(error: unknown): { status: number; body: ErrorBody } {
  if (!(error instanceof RpcError) && isDiskFull(error)) error = spoolDiskFull();
  if (error instanceof RpcError) {
    return {
      status: statusOfCode[error.code] ?? 500,
      body: { error: { code: error.code, name: errorCodeNames[error.code] ?? 'Error', message: error.message } },
    };
  }
  return { status: 500, body: { error: { code: ErrorCode.Internal, name: 'Internal', message: 'internal error (see the core log)' } } };
}
