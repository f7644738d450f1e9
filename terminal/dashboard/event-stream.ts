import type { ServerResponse } from 'node:http';

/** A keep-alive comment now and then, so that nothing between here and the browser drops an idle stream. */
const HEARTBEAT_MS = 15_000;

/**
 * A server-sent event stream (text/event-stream) on one HTTP response: named events with a JSON payload.
 * The browser's EventSource reads it; a closed tab closes the response, which `closed` reports.
 */
export class EventStream {
  private readonly heartbeat: NodeJS.Timeout;
  private ended = false;
  readonly closed: Promise<void>;

  constructor(
    private readonly response: ServerResponse,
    headers: Record<string, string>,
  ) {
    response.writeHead(200, { ...headers, 'content-type': 'text/event-stream; charset=utf-8', connection: 'keep-alive' });
    response.flushHeaders();
    this.heartbeat = setInterval(() => this.write(': still here\n\n'), HEARTBEAT_MS);
    this.closed = new Promise((resolve) =>
      response.once('close', () => {
        this.ended = true;
        clearInterval(this.heartbeat);
        resolve();
      }),
    );
  }

  send(event: string, data: unknown): void {
    this.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    clearInterval(this.heartbeat);
    this.response.end();
  }

  private write(text: string): void {
    if (!this.ended) this.response.write(text);
  }
}
