/**
 * Stable error codes of the Sky Port wire protocol (terminals and gates alike).
 * The JSON-RPC 2.0 reserved codes keep their standard meaning; application codes live in -32000..-32099.
 * A code, once published, never changes meaning: clients in other languages switch on it.
 */
export const ErrorCode = {
  /** The frame is not valid JSON. */
  ParseError: -32700,
  /** The JSON is not a JSON-RPC 2.0 request, response or notification. */
  InvalidRequest: -32600,
  /** No such method in this protocol. */
  MethodNotFound: -32601,
  /** The method exists but its params do not match its schema. */
  InvalidParams: -32602,
  /** The server failed while handling a valid request; nothing about the request was wrong. */
  Internal: -32603,
  /** The caller's certificate role may not call this method. */
  Forbidden: -32001,
  /** No such object, or it belongs to someone else (the two are indistinguishable on purpose). */
  NotFound: -32002,
  /** The job script is malformed; the message names the line. */
  InvalidScript: -32003,
  /** A message, script or upload exceeds its size limit. */
  TooLarge: -32004,
  /** The object is not in a state that allows the operation (e.g. cancel a finished job). */
  Conflict: -32005,
  /** A dependency (a gate, a node) cannot be reached right now; retrying later may succeed. */
  Unavailable: -32006,
  /** The request names a remote, flavor or image that does not exist, or exceeds a quota. */
  Unschedulable: -32007,
  /** A path escapes the directory it must stay in. */
  PathEscape: -32008,
  /** The operation did not finish in time. */
  Timeout: -32009,
  /** Data failed its integrity check (size or SHA-256 mismatch). */
  Integrity: -32010,
  /** The spool's disk is full: nothing was stored. Reads and cancels still work; retry once space is freed. */
  DiskFull: -32011,
} as const;

export type ErrorCodeValue = (typeof ErrorCode)[keyof typeof ErrorCode];

/** Human names for the codes, for CLI messages and documentation. */
export const errorCodeNames: Record<number, string> = Object.fromEntries(
  Object.entries(ErrorCode).map(([name, code]) => [code, name]),
);

/** An error that crosses the wire: thrown by handlers, rejected by calls. */
export class RpcError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly data?: unknown,
  ) {
    super(message);
    this.name = 'RpcError';
  }

  toJSON(): { code: number; message: string; data?: unknown } {
    return this.data === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, data: this.data };
  }
}

export const notFound = (what: string): RpcError => new RpcError(ErrorCode.NotFound, `${what} not found`);
