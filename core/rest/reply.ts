import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';

/** What a REST handler answers; the dispatcher writes it. */
export type Reply =
  | { status: number; json: unknown; headers?: OutgoingHttpHeaders }
  | { status: number; text: string; headers?: OutgoingHttpHeaders }
  /** Raw text produced chunk by chunk (a job's output can be far larger than memory should hold). */
  | { status: number; textStream: AsyncIterable<string>; headers?: OutgoingHttpHeaders };

const TEXT = 'text/plain; charset=utf-8';

/** Resolves when the response can take more, or can take nothing ever again (the client went away). */
const drainedOrClosed = (response: ServerResponse): Promise<void> =>
  new Promise((resolve) => {
    const done = () => {
      response.off('drain', done);
      response.off('close', done);
      resolve();
    };
    response.on('drain', done);
    response.on('close', done);
  });

/**
 * Write a reply. A request whose body was not read to its end (a body cut off for its size) gets its
 * connection closed after the reply, so that the rest of that body is never taken for a next request.
 */
export async function sendReply(request: IncomingMessage, response: ServerResponse, reply: Reply): Promise<void> {
  const headers: OutgoingHttpHeaders = { ...reply.headers };
  const unread = !request.complete;
  if (unread) headers.connection = 'close';
  if (unread) response.once('finish', () => request.socket.destroy());
  if ('json' in reply) {
    const body = JSON.stringify(reply.json);
    response.writeHead(reply.status, { ...headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
  } else if ('text' in reply) {
    response.writeHead(reply.status, { 'content-type': TEXT, ...headers, 'content-length': Buffer.byteLength(reply.text) }).end(reply.text);
  } else {
    response.writeHead(reply.status, { ...headers, 'content-type': TEXT });
    try {
      for await (const chunk of reply.textStream) {
        if (response.destroyed) return;
        if (chunk && !response.write(chunk)) await drainedOrClosed(response);
      }
      response.end();
    } catch (error) {
      // The status is sent already: the only way left to say the body is incomplete is to cut it.
      response.destroy(error as Error);
    }
  }
}
