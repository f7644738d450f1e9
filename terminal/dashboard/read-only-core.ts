import type { TerminalClient } from '../../terminal-protocol/client.js';
import type { ParamsOf, ResultOf } from '../../terminal-protocol/method.js';
import type { TerminalMethods } from '../../terminal-protocol/terminal-methods.js';

/**
 * The core methods the dashboard may call: reading, and (un)subscribing to a job's events, which changes
 * nothing but what this connection is told. Nothing that submits, cancels, requeues or deletes is here,
 * so no request to the local server can reach such a method, whatever it asks for.
 */
export const READ_ONLY_METHODS = [
  'hello',
  'status',
  'job.list',
  'job.get',
  'job.logs',
  'job.subscribe',
  'job.unsubscribe',
  'partition.list',
  'remote.list',
  'flavor.list',
] as const satisfies readonly (keyof TerminalMethods)[];

export type ReadOnlyMethod = (typeof READ_ONLY_METHODS)[number];

/** The user's connection to the core, narrowed to what the dashboard needs. */
export interface ReadOnlyCore {
  call<M extends ReadOnlyMethod>(method: M, params?: ParamsOf<TerminalMethods, M>): Promise<ResultOf<TerminalMethods, M>>;
  readonly connected: boolean;
  /** `notification` (name, params), `connected` (again, after a lost connection), `disconnected`. */
  on(event: 'notification', listener: (name: string, params: unknown) => void): unknown;
  on(event: 'connected' | 'disconnected', listener: () => void): unknown;
  off(event: string, listener: (...args: never[]) => void): unknown;
}

type EmitterListener = (...args: unknown[]) => void;

const allowed: ReadonlySet<string> = new Set(READ_ONLY_METHODS);

export function readOnly(client: TerminalClient): ReadOnlyCore {
  return {
    call: (method, params) => {
      // The types already forbid anything else; this guards callers that bypass them.
      if (!allowed.has(method)) return Promise.reject(new Error(`the dashboard does not call ${method}`));
      return client.call(method, params);
    },
    get connected() {
      return client.connected;
    },
    on: (event: string, listener: (...args: never[]) => void) => client.on(event, listener as EmitterListener),
    off: (event, listener) => client.off(event, listener as EmitterListener),
  };
}
