import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ErrorCode, RpcError } from '../../terminal-protocol/errors.js';
import { CliError } from '../exit-codes.js';
import type { LogStream } from '../log-stream.js';
import { AccessGuard } from './access-guard.js';
import { DASHBOARD_PAGE } from './assets/page.js';
import { DASHBOARD_SCRIPT } from './assets/script.js';
import { DASHBOARD_STYLE } from './assets/style.js';
import { EventStream } from './event-stream.js';
import { JobLogViewer, type LogViewerEvent } from './job-log-viewer.js';
import { JobSubscriptions } from './job-subscriptions.js';
import { OverviewReader, type DashboardOverview } from './overview.js';
import type { ReadOnlyCore } from './read-only-core.js';

export interface DashboardOptions {
  core: ReadOnlyCore;
  /** The core's address, shown on the page. */
  coreUrl: string;
  /** 0: any free port. */
  port: number;
  /** Everyone's jobs (admins). */
  all: boolean;
}

/** Where the dashboard listens: this machine only. */
export const DASHBOARD_HOST = '127.0.0.1';
/** Browsers watching logs at once; each holds a stream open. */
const MAX_LOG_VIEWERS = 64;
const JOB_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Sent with every answer: nothing cached, no referrer (the first URL holds the token), no framing, own scripts only. */
const SECURITY_HEADERS: Record<string, string> = {
  'cache-control': 'no-store',
  'referrer-policy': 'no-referrer',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
};

const ASSETS: Record<string, { type: string; body: string }> = {
  '/': { type: 'text/html; charset=utf-8', body: DASHBOARD_PAGE },
  '/dashboard.js': { type: 'text/javascript; charset=utf-8', body: DASHBOARD_SCRIPT },
  '/dashboard.css': { type: 'text/css; charset=utf-8', body: DASHBOARD_STYLE },
};

/** A byte offset from the query (where a reconnecting browser's log left off). */
function offsetParam(url: URL, name: string): number {
  const n = Number(url.searchParams.get(name) ?? 0);
  return Number.isSafeInteger(n) && n >= 0 ? n : 0;
}

/**
 * The local server of `swm dashboard`: the page and its assets, and a bridge of a few read-only endpoints
 * that the server answers with the user's own connection to the core. Every request passes the access
 * guard first (see access-guard.ts).
 *
 *   GET /                      the page (with ?token=: sets the cookie, then redirects to drop the token)
 *   GET /dashboard.js|css      its script and style
 *   GET /api/overview          jobs, partitions, gates, activity (overview.ts)
 *   GET /api/jobs/ID/log       the job's output as server-sent events (job-log-viewer.ts);
 *                              ?stdout=N&stderr=M resume from those byte offsets
 */
export class DashboardServer {
  private readonly overview: OverviewReader;
  private readonly subscriptions: JobSubscriptions;
  private readonly viewers = new Set<{ viewer: JobLogViewer; stream: EventStream }>();
  private reading: Promise<DashboardOverview> | null = null;

  private constructor(
    private readonly server: Server,
    private readonly guard: AccessGuard,
    private readonly options: DashboardOptions,
  ) {
    this.overview = new OverviewReader(options.core, { all: options.all, coreUrl: options.coreUrl });
    this.subscriptions = new JobSubscriptions(options.core);
  }

  static async start(options: DashboardOptions): Promise<DashboardServer> {
    let dashboard: DashboardServer | null = null;
    const server = createServer((request, response) => {
      if (!dashboard) return void response.writeHead(503).end();
      try {
        dashboard.handle(request, response);
      } catch (error) {
        // A request the routes did not foresee answers 500; the dashboard keeps serving.
        if (!response.headersSent) dashboard.plain(response, 500, `the dashboard failed: ${(error as Error).message}\n`);
        else response.destroy();
      }
    });
    const port = await new Promise<number>((resolve, reject) => {
      server.once('error', (error: NodeJS.ErrnoException) =>
        reject(
          new CliError(
            error.code === 'EADDRINUSE'
              ? `port ${options.port} on ${DASHBOARD_HOST} is in use: choose another with --port, or --port 0 for any free one`
              : `cannot listen on ${DASHBOARD_HOST}:${options.port}: ${error.message}`,
          ),
        ),
      );
      server.listen(options.port, DASHBOARD_HOST, () => resolve((server.address() as AddressInfo).port));
    });
    dashboard = new DashboardServer(server, new AccessGuard(port), options);
    return dashboard;
  }

  /** The address to open, with its token. */
  get url(): string {
    return this.guard.url(DASHBOARD_HOST);
  }

  get port(): number {
    return this.guard.port;
  }

  async stop(): Promise<void> {
    for (const { viewer, stream } of this.viewers) {
      viewer.stop();
      stream.end();
    }
    this.subscriptions.close();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private handle(request: IncomingMessage, response: ServerResponse): void {
    const verdict = this.guard.check(request);
    if (!verdict.allowed) return this.plain(response, 403, `forbidden: ${verdict.reason}\n`);
    if (request.method !== 'GET') {
      response.setHeader('allow', 'GET');
      return this.plain(response, 405, 'the dashboard only reads\n');
    }
    const url = new URL(request.url ?? '/', 'http://localhost');
    const asset = ASSETS[url.pathname];
    if (asset) {
      // The printed address: the token moves into a cookie (the page's script then drops it from the address
      // bar and history). Set here rather than on a redirect: a navigation that began elsewhere (--open's
      // file) would not carry a SameSite=Strict cookie across the redirect.
      const cookie = url.pathname === '/' && verdict.tokenInUrl ? { 'set-cookie': this.guard.cookie() } : {};
      response.writeHead(200, { ...SECURITY_HEADERS, ...cookie, 'content-type': asset.type });
      return void response.end(asset.body);
    }
    if (url.pathname === '/api/overview') return void this.sendOverview(response);
    const log = /^\/api\/jobs\/([^/]+)\/log$/.exec(url.pathname);
    if (log) return this.streamLog(response, log[1]!, url);
    this.plain(response, 404, 'not found\n');
  }

  private async sendOverview(response: ServerResponse): Promise<void> {
    try {
      // Tabs that ask at the same moment share one round of calls to the core.
      this.reading ??= this.overview.read().finally(() => (this.reading = null));
      const body = JSON.stringify(await this.reading);
      response.writeHead(200, { ...SECURITY_HEADERS, 'content-type': 'application/json; charset=utf-8' });
      response.end(body);
    } catch (error) {
      const { status, message } = this.coreProblem(error);
      response.writeHead(status, { ...SECURITY_HEADERS, 'content-type': 'application/json; charset=utf-8' });
      response.end(JSON.stringify({ error: message }));
    }
  }

  private streamLog(response: ServerResponse, id: string, url: URL): void {
    if (!JOB_ID.test(id)) return this.plain(response, 400, 'not a job id (a whole UUID)\n');
    if (this.viewers.size >= MAX_LOG_VIEWERS) return this.plain(response, 429, `at most ${MAX_LOG_VIEWERS} logs are watched at once: close some\n`);
    const stream = new EventStream(response, SECURITY_HEADERS);
    const from: Record<LogStream, number> = { stdout: offsetParam(url, 'stdout'), stderr: offsetParam(url, 'stderr') };
    const viewer = new JobLogViewer(this.options.core, this.subscriptions, id.toLowerCase(), from, (event) => {
      stream.send(event.type, event);
      if (event.type === 'end') stream.end();
    });
    const entry = { viewer, stream };
    this.viewers.add(entry);
    void stream.closed.then(() => {
      viewer.stop();
      this.viewers.delete(entry);
    });
    viewer.start().catch((error: unknown) => {
      const problem: LogViewerEvent = { type: 'problem', message: this.coreProblem(error).message, fatal: true };
      stream.send(problem.type, problem);
      stream.end();
    });
  }

  /** An answer the page can show: the core's own message, or that it cannot be reached. */
  private coreProblem(error: unknown): { status: number; message: string } {
    if (error instanceof RpcError && error.code === ErrorCode.Unavailable && !this.options.core.connected)
      return { status: 503, message: `the core at ${this.options.coreUrl} cannot be reached (reconnecting): ${error.message}` };
    if (error instanceof RpcError && error.code === ErrorCode.NotFound) return { status: 404, message: error.message };
    return { status: 502, message: (error as Error)?.message ?? String(error) };
  }

  private plain(response: ServerResponse, status: number, text: string): void {
    response.writeHead(status, { ...SECURITY_HEADERS, 'content-type': 'text/plain; charset=utf-8' });
    response.end(text);
  }
}
