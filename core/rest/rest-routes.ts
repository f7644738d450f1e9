import type { IncomingMessage } from 'node:http';
import type { Identity } from '../../spool-bootstrap/pki.js';
import { ErrorCode, RpcError } from '../../terminal-protocol/errors.js';
import type { Job, JobState } from '../../terminal-protocol/job.js';
import { MAX_CHUNK_BYTES, MAX_SCRIPT_BYTES } from '../../terminal-protocol/terminal-methods.js';
import { inputsRoot } from '../jobs/job-inputs.js';
import type { CoreServices } from '../services.js';
import type { CatalogHandlers } from '../terminals/catalog-handlers.js';
import type { JobHandlers } from '../terminals/job-handlers.js';
import { closeHostInputs, copyHostInputs, openHostInputs, takeHostInputs } from './host-inputs.js';
import type { Reply } from './reply.js';
import type { RouteKey } from './route-match.js';
import { readScriptBody } from './script-body.js';
import { flavorView, imageView, nodeViews, remoteView } from './sky-port-views.js';

/** What a handler gets: the caller, the request, and the same handlers the WebSocket API calls. */
export interface RestContext {
  services: CoreServices;
  jobs: JobHandlers;
  catalog: CatalogHandlers;
  caller: Identity;
  params: Record<string, string>;
  query: URLSearchParams;
  request: IncomingMessage;
}

export interface RestRoute extends RouteKey {
  /** Whether the handler reads the request body (the others have theirs drained). */
  readsBody?: boolean;
  handle: (ctx: RestContext) => Promise<Reply> | Reply;
}

/** The REST API's version, as the original reports it at GET /user. */
export const API_VERSION = 1;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const jobIdOf = (ctx: RestContext): string => {
  const id = ctx.params.id!;
  if (!UUID.test(id)) throw new RpcError(ErrorCode.InvalidParams, `"${id}" is not a job id (a UUID)`);
  return id.toLowerCase();
};

/** `?limit=N`: at most N items; absent means all. */
export function limitOf(query: URLSearchParams): number | undefined {
  const raw = query.get('limit');
  if (raw === null) return undefined;
  if (!/^\d{1,9}$/.test(raw)) throw new RpcError(ErrorCode.InvalidParams, `limit must be a whole number, got "${raw}"`);
  return Number(raw);
}

const limited = <T>(items: T[], limit: number | undefined): T[] => (limit === undefined ? items : items.slice(0, limit));

const PAGE = 1000;

/** The caller's jobs, newest first, through job.list page by page (admins with `all`: everyone's). */
function listJobs(ctx: RestContext, options: { limit?: number; all?: boolean; states?: JobState[] }): Job[] {
  const jobs: Job[] = [];
  let before: string | undefined;
  for (;;) {
    const want = options.limit === undefined ? PAGE : Math.min(PAGE, options.limit - jobs.length);
    if (want <= 0) return jobs;
    const page = ctx.jobs.list(ctx.caller, { limit: want, ...(options.all ? { all: true } : {}), ...(options.states ? { states: options.states } : {}), ...(before ? { before } : {}) });
    jobs.push(...page.jobs);
    if (page.next === null) return jobs;
    before = page.next;
  }
}

/** A job's whole stdout or stderr, read chunk by chunk with job.logs as the chunks are sent. */
async function logReply(ctx: RestContext, stream: 'stdout' | 'stderr'): Promise<Reply> {
  const id = jobIdOf(ctx);
  const read = (offset: number) => ctx.jobs.logs(ctx.caller, { id, stream, offset, limit: MAX_CHUNK_BYTES });
  // The first chunk is read before answering, so that an unknown job is a 404, not an empty 200.
  const first = await read(0);
  async function* chunks(): AsyncGenerator<string> {
    let chunk = first;
    let offset = 0;
    for (;;) {
      yield chunk.data;
      if (chunk.offset - offset < MAX_CHUNK_BYTES) return;
      offset = chunk.offset;
      chunk = await read(offset);
    }
  }
  return { status: 200, textStream: chunks() };
}

/** The client's address ("::ffff:10.0.0.5" → "10.0.0.5"), where a job's `out` ports lead unless its script names a submission-address. */
const clientAddress = (request: IncomingMessage): string | undefined => request.socket.remoteAddress?.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/, '');

/**
 * Submit: the script from the form or the raw body; host input files (compat.inputRoots) are copied into
 * the job and committed before the answer, so the job is queued exactly as one submitted with swm.
 */
async function submit(ctx: RestContext): Promise<Reply> {
  const { script, hostInputs } = takeHostInputs(await readScriptBody(ctx.request, MAX_SCRIPT_BYTES));
  const opened = await openHostInputs(hostInputs, ctx.services.config.compat.inputRoots);
  try {
    const inputs = opened.map(({ path, size, sha256 }) => ({ path, size, sha256 }));
    const { id, warnings } = await ctx.jobs.submit(ctx.caller, { script, ...(inputs.length ? { inputs } : {}) }, { address: clientAddress(ctx.request) });
    if (inputs.length) {
      try {
        await copyHostInputs(opened, inputsRoot(ctx.services.spool.job(id)));
        await ctx.jobs.inputCommit(ctx.caller, { id });
      } catch (error) {
        await ctx.jobs.cancel(ctx.caller, { id }).catch(() => {});
        throw error;
      }
    }
    // The first line is the job id: clients of the original read exactly that.
    const text = [id, ...warnings.map((w) => `warning: ${w}`)].join('\n') + '\n';
    return { status: 200, text, headers: { location: `/user/job/${id}` } };
  } finally {
    closeHostInputs(opened);
  }
}

async function requeue(ctx: RestContext): Promise<Reply> {
  const id = jobIdOf(ctx);
  const modification = ctx.request.headers['modification'];
  if (modification === undefined) throw new RpcError(ErrorCode.InvalidParams, 'PATCH needs the header "modification: requeue"');
  if (String(modification).trim().toLowerCase() !== 'requeue')
    throw new RpcError(ErrorCode.InvalidParams, `unsupported modification "${String(modification)}" (supported: requeue)`);
  const job = await ctx.jobs.requeue(ctx.caller, { id });
  return { status: 200, text: `job ${job.id} requeued: ${job.state_details}\n` };
}

async function cancel(ctx: RestContext): Promise<Reply> {
  const job = await ctx.jobs.cancel(ctx.caller, { id: jobIdOf(ctx) });
  return { status: 200, text: `job ${job.id} canceled: ${job.state_details}\n` };
}

/**
 * Every route of the REST user API (SKYPORT-REFERENCE.md). This table is the API: the dispatcher routes
 * by it and the OpenAPI document (openapi.json) is checked against it.
 */
export const restRouteTable: readonly RestRoute[] = [
  { method: 'GET', path: '/user', handle: () => ({ status: 200, json: { api_version: API_VERSION } }) },
  { method: 'GET', path: '/user/job', handle: (ctx) => ({ status: 200, json: listJobs(ctx, { limit: limitOf(ctx.query) }) }) },
  { method: 'POST', path: '/user/job', readsBody: true, handle: submit },
  { method: 'GET', path: '/user/job/{id}', handle: (ctx) => ({ status: 200, json: ctx.jobs.get(ctx.caller, { id: jobIdOf(ctx) }) }) },
  { method: 'DELETE', path: '/user/job/{id}', handle: cancel },
  { method: 'PATCH', path: '/user/job/{id}', handle: requeue },
  { method: 'GET', path: '/user/job/{id}/stdout', handle: (ctx) => logReply(ctx, 'stdout') },
  { method: 'GET', path: '/user/job/{id}/stderr', handle: (ctx) => logReply(ctx, 'stderr') },
  { method: 'GET', path: '/user/flavor', handle: (ctx) => ({ status: 200, json: limited(ctx.catalog.flavors().map(flavorView), limitOf(ctx.query)) }) },
  { method: 'GET', path: '/user/image', handle: (ctx) => ({ status: 200, json: limited(ctx.catalog.images().map(imageView), limitOf(ctx.query)) }) },
  {
    method: 'GET',
    path: '/user/node',
    handle: (ctx) => {
      const limit = limitOf(ctx.query);
      const live = listJobs(ctx, { all: true, states: ['W', 'T', 'R'] });
      return { status: 200, json: limited(nodeViews(live, ctx.catalog.flavors()), limit) };
    },
  },
  {
    method: 'GET',
    path: '/user/remote',
    handle: (ctx) => {
      const gates = ctx.services.config.gates;
      const remotes = ctx.catalog.remotes().map((r) => remoteView(r, gates.find((g) => g.name === r.gate)));
      return { status: 200, json: limited(remotes, limitOf(ctx.query)) };
    },
  },
];
