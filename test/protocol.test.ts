import { expect } from 'chai';
import type { WebSocket } from 'ws';
import { ErrorCode } from '../terminal-protocol/errors.js';
import { MAX_SCRIPT_BYTES } from '../terminal-protocol/terminal-methods.js';
import { adminBundle, closeCodeOf, openRawSocket } from './harness/certs.js';
import { connectTerminal, startFixture, type CoreFixture } from './harness/core.js';
import { rejection } from './harness/rpc.js';
import { freePort, unreachableGates } from './harness/spool.js';

interface Response {
  jsonrpc: string;
  id: string | number | null;
  result?: unknown;
  error?: { code: number; message: string; data?: unknown };
}

/** A raw WebSocket to the core that sends arbitrary text frames and reads the answers in order. */
class RawTerminal {
  private readonly inbox: Response[] = [];
  private waiting: ((message: Response) => void) | null = null;
  readonly closed: Promise<number>;

  constructor(readonly socket: WebSocket) {
    socket.on('message', (data) => {
      const message = JSON.parse(data.toString()) as Response;
      if (this.waiting) {
        const deliver = this.waiting;
        this.waiting = null;
        deliver(message);
      } else this.inbox.push(message);
    });
    this.closed = closeCodeOf(socket);
  }

  /** Send one text frame and wait for the next message the core sends. */
  exchange(text: string, timeoutMs = 10_000): Promise<Response> {
    this.socket.send(text);
    const queued = this.inbox.shift();
    if (queued) return Promise.resolve(queued);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms to ${text.slice(0, 80)}`)), timeoutMs);
      this.waiting = (message) => {
        clearTimeout(timer);
        resolve(message);
      };
    });
  }

  call(id: number, method: string, params: unknown): Promise<Response> {
    return this.exchange(JSON.stringify({ jsonrpc: '2.0', id, method, params }));
  }
}

const MAX_MESSAGE_BYTES = 64 * 1024;

describe('terminal protocol robustness (real swm-core)', function () {
  this.timeout(30_000);

  describe(`with maxMessageBytes = ${MAX_MESSAGE_BYTES}`, () => {
    let fixture: CoreFixture;
    let raw: RawTerminal;

    before(async () => {
      const unusedPort = await freePort();
      fixture = await startFixture({
        configure: (config) => {
          unreachableGates(unusedPort)(config);
          config.core.maxMessageBytes = MAX_MESSAGE_BYTES;
        },
      });
      raw = new RawTerminal(await openRawSocket(fixture.core.port, adminBundle(fixture.spool)));
    });
    after(async () => {
      raw?.socket.terminate();
      await fixture?.stop();
    });

    it('serves the WebSocket endpoint at /ws only (404 elsewhere)', async () => {
      let error: Error | null = null;
      await openRawSocket(fixture.core.port, adminBundle(fixture.spool), '/socket').then(
        (socket) => socket.terminate(),
        (e: Error) => (error = e),
      );
      expect(error).to.have.property('message', 'HTTP 404');
    });

    it('answers a valid call on the raw socket (the control case)', async () => {
      const answer = await raw.call(1, 'hello', {});
      expect(answer).to.deep.include({ jsonrpc: '2.0', id: 1 });
      expect(answer.result).to.include({ user: 'admin', role: 'admin' });
    });

    it('answers malformed JSON with -32700 (ParseError) and id null', async () => {
      const answer = await raw.exchange('{"jsonrpc": "2.0", "id": 2, "method": ');
      expect(answer.id).to.equal(null);
      expect(answer.error?.code).to.equal(ErrorCode.ParseError);
    });

    it('answers JSON that is not JSON-RPC 2.0 with -32600 (InvalidRequest)', async () => {
      for (const text of ['{"hello": "world"}', '[1, 2, 3]', '42', '{"jsonrpc": "1.0", "id": 3, "method": "hello"}']) {
        const answer = await raw.exchange(text);
        expect(answer.error?.code, text).to.equal(ErrorCode.InvalidRequest);
      }
    });

    it('answers an unknown method with -32601 (MethodNotFound), keeping the id', async () => {
      const answer = await raw.call(4, 'job.explode', {});
      expect(answer.id).to.equal(4);
      expect(answer.error?.code).to.equal(ErrorCode.MethodNotFound);
      expect(answer.error?.message).to.include('job.explode');
    });

    it('answers invalid params with -32602 (InvalidParams) naming the field', async () => {
      const answer = await raw.call(5, 'job.get', { id: 'not-a-uuid' });
      expect(answer.id).to.equal(5);
      expect(answer.error?.code).to.equal(ErrorCode.InvalidParams);
      expect(answer.error?.message).to.include('id');
      const extra = await raw.call(6, 'job.list', { all: true, sneaky: 1 });
      expect(extra.error?.code).to.equal(ErrorCode.InvalidParams);
    });

    it('answers a frame over maxMessageBytes with -32004 (TooLarge) and keeps the socket open', async () => {
      const padding = 'x'.repeat(MAX_MESSAGE_BYTES);
      const answer = await raw.call(7, 'job.submit', { script: `#!/bin/sh\n#${padding}\n` });
      expect(answer.error?.code).to.equal(ErrorCode.TooLarge);
      const after = await raw.call(8, 'hello', {});
      expect(after.id).to.equal(8);
      expect(after.result).to.include({ user: 'admin' });
    });

    it('changed nothing for any of the bad frames', async () => {
      const answer = await raw.call(9, 'job.list', { all: true });
      expect((answer.result as { jobs: unknown[] }).jobs).to.deep.equal([]);
    });

    it('closes the socket with 1009 on a frame beyond the hard limit (twice the maximum)', async () => {
      raw.socket.send('x'.repeat(2 * MAX_MESSAGE_BYTES + 1));
      expect(await raw.closed).to.equal(1009);
    });

    it('keeps serving other connections after all that', async () => {
      expect(fixture.core.child.exitCode).to.equal(null);
      expect((await fixture.admin.call('hello')).user).to.equal('admin');
      const other = await connectTerminal(fixture.spool.homeDir, fixture.core.port);
      try {
        const { id } = await other.call('job.submit', { script: '#!/bin/sh\ntrue\n' });
        expect(await other.call('job.get', { id })).to.include({ state: 'Q' });
      } finally {
        await other.close();
      }
    });
  });

  describe('job scripts through job.submit (default maxMessageBytes)', () => {
    let fixture: CoreFixture;

    before(async () => {
      fixture = await startFixture({ configure: unreachableGates(await freePort()) });
    });
    after(async () => {
      await fixture?.stop();
    });

    it('refuses a script of 16 MB + 1 byte with TooLarge, and stores nothing', async () => {
      expect(fixture.spool.config.core.maxMessageBytes).to.be.greaterThan(MAX_SCRIPT_BYTES + 1024);
      const head = '#!/bin/sh\n';
      const script = head + '#'.repeat(MAX_SCRIPT_BYTES + 1 - head.length);
      expect(Buffer.byteLength(script)).to.equal(MAX_SCRIPT_BYTES + 1);
      const error = await rejection(fixture.admin.call('job.submit', { script }));
      expect(error.code).to.equal(ErrorCode.TooLarge);
      expect(error.message).to.match(/script/i);
      expect((await fixture.admin.call('job.list', { all: true })).jobs).to.deep.equal([]);
    });

    it('accepts a script of exactly 16 MB', async () => {
      const head = '#!/bin/sh\n#SWM name sixteen\n';
      const script = head + '#'.repeat(MAX_SCRIPT_BYTES - head.length);
      const { id } = await fixture.admin.call('job.submit', { script });
      expect(await fixture.admin.call('job.get', { id })).to.include({ name: 'sixteen', state: 'Q' });
    });

    it('refuses a malformed directive with InvalidScript naming the line', async () => {
      const script = '#!/bin/sh\n#SWM name fine\n#SWM nodes many\necho hi\n';
      const error = await rejection(fixture.admin.call('job.submit', { script }));
      expect(error.code).to.equal(ErrorCode.InvalidScript);
      expect(error.message).to.match(/\bline 3\b/);
      expect(error.message).to.include('nodes');
    });

    it('accepts an unknown directive with a warning naming it and its line', async () => {
      const script = '#!/bin/sh\n#SWM colour blue\necho hi\n';
      const answer = await fixture.admin.call('job.submit', { script });
      expect(answer.warnings).to.have.length(1);
      expect(answer.warnings[0]).to.include('colour').and.to.match(/\bline 2\b/);
      expect(await fixture.admin.call('job.get', { id: answer.id })).to.include({ state: 'Q' });
    });
  });
});
