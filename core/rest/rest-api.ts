import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Identity } from '../../spool-bootstrap/pki.js';
import { ErrorCode, RpcError } from '../../terminal-protocol/errors.js';
import type { CoreServices } from '../services.js';
import type { CatalogHandlers } from '../terminals/catalog-handlers.js';
import type { JobHandlers } from '../terminals/job-handlers.js';
import { errorReply } from './http-status.js';
import { sendReply, type Reply } from './reply.js';
import { matchRoute } from './route-match.js';
import { restRouteTable } from './rest-routes.js';

const errorAsReply = (error: unknown, headers?: Record<string, string>): Reply => {
  const { status, body } = errorReply(error);
  return { status, json: body, ...(headers ? { headers } : {}) };
};

/**
 * The REST user API of the original Sky Port on the core's mTLS port: identity from the client certificate
 * (the listener admits only unrevoked certificates of the spool CA), every route a thin face over the
 * JobHandlers and CatalogHandlers the WebSocket API uses. Plug into startCore as `httpRoutes`.
 */
export function restRoutes(services: CoreServices, jobs: JobHandlers, catalog: CatalogHandlers): (request: IncomingMessage, response: ServerResponse, caller: Identity) => void {
  const logger = services.logger.child({ component: 'rest' });
  const answer = async (request: IncomingMessage, response: ServerResponse, caller: Identity): Promise<void> => {
    const url = new URL(request.url ?? '/', 'https://core.invalid');
    const match = matchRoute(restRouteTable, request.method ?? 'GET', url.pathname);
    if (match.kind !== 'found' || !match.route.readsBody) request.resume();
    let reply: Reply;
    try {
      if (url.pathname === '/metrics') {
        // Prometheus scrapes with a `monitor` certificate; admins may look too. Nobody else sees the whole core.
        if (caller.role !== 'monitor' && caller.role !== 'admin') throw new RpcError(ErrorCode.Forbidden, '/metrics is for monitor (and admin) certificates');
        if (request.method !== 'GET') throw new RpcError(ErrorCode.InvalidRequest, `${request.method} is not allowed on /metrics (allowed: GET)`);
        const { contentType, text } = await services.metrics.scrape();
        reply = { status: 200, text, headers: { 'content-type': contentType } };
        logger.debug({ user: caller.name, path: url.pathname }, 'metrics scraped');
        await sendReply(request, response, reply);
        return;
      }
      if (caller.role !== 'admin' && caller.role !== 'user')
        throw new RpcError(ErrorCode.Forbidden, `the REST API is for people: a ${caller.role} certificate may not use it`);
      if (match.kind === 'no-path') throw new RpcError(ErrorCode.NotFound, `no such path: ${url.pathname}`);
      if (match.kind === 'no-method') {
        const allow = match.allow.join(', ');
        reply = errorAsReply(new RpcError(ErrorCode.InvalidRequest, `${request.method} is not allowed on ${url.pathname} (allowed: ${allow})`), { allow });
        reply.status = 405;
      } else {
        reply = await match.route.handle({ services, jobs, catalog, caller, params: match.params, query: url.searchParams, request });
      }
    } catch (error) {
      reply = errorAsReply(error);
      if (reply.status >= 500) logger.error({ err: error, user: caller.name, method: request.method, path: url.pathname }, 'REST request failed');
    }
    logger.debug({ user: caller.name, method: request.method, path: url.pathname, status: reply.status }, 'REST request');
    await sendReply(request, response, reply);
  };
  return (request, response, caller) => {
    answer(request, response, caller).catch((error: unknown) => {
      logger.error({ err: error }, 'REST reply could not be written');
      response.destroy();
    });
  };
}
