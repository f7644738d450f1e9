import { z } from 'zod';
import type { Role } from './common.js';
import { ErrorCode } from './errors.js';
import { FRAME_BUDGET, exceedsBudget } from './frame-budget.js';
import type { MethodTable, NotificationTable } from './method.js';

export type Id = string | number;

/** An error as it crosses the wire (plain data, so that a decoder thread can hand it over). */
export interface WireError {
  code: number;
  message: string;
  data?: unknown;
}

/**
 * What one text frame means to the side that received it, every schema already checked. Plain data: the
 * same decoding runs on the event loop for small frames and on a decoder thread for large ones.
 */
export type Decoded =
  /** A call of a served method, allowed for the caller's role, with params that passed their schema. */
  | { kind: 'request'; id: Id; method: string; params: unknown }
  /** A notification this side hears, with params that passed their schema. */
  | { kind: 'notification'; method: string; params: unknown }
  /** A notification nobody here listens to: ignored, as JSON-RPC wants. */
  | { kind: 'ignored' }
  /** The answer to one of this side's calls; its result is checked by the caller, who knows the method. */
  | { kind: 'response'; id: Id; result: unknown; error?: WireError }
  /** An error the other side sent without an id (it could not read one of our frames). */
  | { kind: 'remote-error'; error: WireError }
  /** A bad frame: answered with this error. */
  | { kind: 'refused'; id: Id | null; error: WireError }
  /** A bad notification: reported, never answered. */
  | { kind: 'violation'; error: WireError };

export interface DecodeContext {
  serves?: { methods: MethodTable; role: Role };
  hears?: NotificationTable;
}

const Envelope = z.object({
  jsonrpc: z.literal('2.0'),
  id: z.union([z.string().max(128), z.number().int()]).nullable().optional(),
  method: z.string().max(128).optional(),
  params: z.unknown().optional(),
  result: z.unknown().optional(),
  error: z.object({ code: z.number().int(), message: z.string(), data: z.unknown().optional() }).optional(),
});

/** Issues named in an error message: a value with 100 000 bad elements must not make a 100 MB answer. */
const MAX_DESCRIBED_ISSUES = 5;
const MAX_ISSUE_CHARS = 200;

const clip = (text: string, max: number): string => (text.length > max ? `${text.slice(0, max)}…` : text);

export const describeZodError = (error: z.ZodError): string => {
  const { issues } = error;
  const described = issues
    .slice(0, MAX_DESCRIBED_ISSUES)
    .map((i) => clip(`${i.path.length ? i.path.join('.') : '(params)'}: ${i.message}`, MAX_ISSUE_CHARS))
    .join('; ');
  return issues.length > MAX_DESCRIBED_ISSUES ? `${described}; and ${issues.length - MAX_DESCRIBED_ISSUES} more` : described;
};

const refused = (id: Id | null, code: number, message: string): Decoded => ({ kind: 'refused', id, error: { code, message } });

/** Read one text frame: its shape budget first (frame-budget.ts), then the JSON, the envelope and the schemas. */
export function decodeFrame(frame: Uint8Array, context: DecodeContext): Decoded {
  const excess = exceedsBudget(frame, FRAME_BUDGET);
  if (excess) return refused(null, ErrorCode.InvalidRequest, excess);
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength).toString('utf8'));
  } catch (error) {
    return refused(null, ErrorCode.ParseError, `malformed JSON: ${clip((error as Error).message, MAX_ISSUE_CHARS)}`);
  }
  const parsed = Envelope.safeParse(raw);
  if (!parsed.success) {
    const id = typeof raw === 'object' && raw && 'id' in raw && (typeof raw.id === 'string' || typeof raw.id === 'number') ? raw.id : null;
    return refused(id, ErrorCode.InvalidRequest, `not a JSON-RPC 2.0 message: ${describeZodError(parsed.error)}`);
  }
  const message = parsed.data;
  const hasId = message.id !== undefined && message.id !== null;
  if (message.method !== undefined) {
    return hasId ? decodeRequest(message.id!, message.method, message.params, context) : decodeNotification(message.method, message.params, context);
  }
  if (hasId) return { kind: 'response', id: message.id!, result: message.result, ...(message.error ? { error: message.error } : {}) };
  if (message.error) return { kind: 'remote-error', error: message.error };
  return refused(null, ErrorCode.InvalidRequest, 'message has neither method nor id');
}

function decodeRequest(id: Id, name: string, params: unknown, { serves }: DecodeContext): Decoded {
  const spec = serves && Object.hasOwn(serves.methods, name) ? serves.methods[name] : undefined;
  if (!serves || !spec) return refused(id, ErrorCode.MethodNotFound, `unknown method "${name}"`);
  if (!spec.roles.includes(serves.role)) return refused(id, ErrorCode.Forbidden, `role "${serves.role}" may not call ${name}`);
  const checked = spec.params.safeParse(params);
  if (!checked.success) return refused(id, ErrorCode.InvalidParams, `${name}: ${describeZodError(checked.error)}`);
  return { kind: 'request', id, method: name, params: checked.data };
}

function decodeNotification(name: string, params: unknown, { hears }: DecodeContext): Decoded {
  const schema = hears && Object.hasOwn(hears, name) ? hears[name] : undefined;
  if (!schema) return { kind: 'ignored' };
  const checked = schema.safeParse(params);
  if (!checked.success) return { kind: 'violation', error: { code: ErrorCode.InvalidParams, message: `${name}: ${describeZodError(checked.error)}` } };
  return { kind: 'notification', method: name, params: checked.data };
}
