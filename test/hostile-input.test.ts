import { expect } from 'chai';
import { existsSync, readFileSync, watch } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { createCa, issueCertificate } from '../spool-bootstrap/pki.js';
import type { Role } from '../terminal-protocol/common.js';
import { ErrorCode } from '../terminal-protocol/errors.js';
import type { TerminalClient } from '../terminal-protocol/client.js';
import { SUBPROTOCOL, WS_PATH } from '../terminal-protocol/peer.js';
import { adminBundle, connectAs, issueFromSpool, spoolCaPem, type ClientBundle } from './harness/certs.js';
import { connectTerminal, startFixture, type CoreFixture } from './harness/core.js';
import { rest } from './harness/rest-client.js';
import { freePort, unreachableGates } from './harness/spool.js';

interface Reply {
  id: string | number | null;
  result?: Record<string, unknown>;
  error?: { code: number; message: string };
}

interface RawTerminal {
  socket: WebSocket;
  /** The next message the core sends on this socket. */
  next: () => Promise<Reply>;
  closed: Promise<{ code: number; reason: string }>;
}

/**
 * A WebSocket to the core's terminal endpoint that sends whatever text it is given. Its frames are
 * unmasked, as the swm terminal's are: ws unmasks a masked frame byte by byte in JavaScript (without the
 * optional native bufferutil), a cost of the byte count that every 10 MB message has whatever it holds;
 * these tests are about what a message's shape costs.
 */
async function rawTerminal(port: number, bundle: ClientBundle): Promise<RawTerminal> {
  const socket = new WebSocket(`wss://127.0.0.1:${port}${WS_PATH}`, SUBPROTOCOL, {
    ca: bundle.caPem,
    cert: bundle.certPem,
    key: bundle.keyPem,
    perMessageDeflate: false,
    handshakeTimeout: 5_000,
    generateMask: (mask: Buffer) => mask.fill(0),
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) => socket.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  const inbox: Reply[] = [];
  const waiting: ((reply: Reply) => void)[] = [];
  socket.on('message', (data) => {
    const reply = JSON.parse(data.toString()) as Reply;
    const deliver = waiting.shift();
    if (deliver) deliver(reply);
    else inbox.push(reply);
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('open', () => resolve());
    socket.once('error', reject);
  });
  // What happens after the opening is told by `closed`.
  socket.on('error', () => undefined);
  return { socket, closed, next: () => (inbox.length ? Promise.resolve(inbox.shift()!) : new Promise((resolve) => waiting.push(resolve))) };
}

/** Send one text frame; resolves once it is written out. */
const send = (raw: RawTerminal, text: string | Buffer): Promise<void> =>
  new Promise((resolve, reject) => raw.socket.send(text, { binary: false }, (error) => (error ? reject(error) : resolve())));

/**
 * A large frame built in place, without the many strings a template would leave for this process's garbage
 * collector to sweep while it measures the core's answers.
 */
function frameOf(head: string, body: (buffer: Buffer, at: number) => number, tail: string, size: number): Buffer {
  const frame = Buffer.alloc(size);
  let at = frame.write(head);
  at = body(frame, at);
  at += frame.write(tail, at);
  return frame.subarray(0, at);
}

const nestedFrame = (depth: number): Buffer =>
  frameOf('{"jsonrpc":"2.0","id":1,"method":"status","params":', (b, at) => b.fill('[', at, at + depth).fill(']', at + depth, at + 2 * depth) && at + 2 * depth, '}', 2 * depth + 100);

const flatFrame = (count: number): Buffer =>
  frameOf('{"jsonrpc":"2.0","id":2,"method":"status","params":[', (b, at) => b.fill('{},', at, at + 3 * count) && at + 3 * count - 1, ']}', 3 * count + 100);

function distinctKeysFrame(count: number): Buffer {
  return frameOf(
    '{"jsonrpc":"2.0","id":3,"method":"job.list","params":{',
    (b, at) => {
      for (let i = 0; i < count; i++) at += b.write(i ? `,"key${i}":0` : `"key${i}":0`, at);
      return at;
    },
    '}}',
    count * 20 + 100,
  );
}

/** Call `status` again and again until `until` settles; the slowest answer, in milliseconds. */
async function slowestStatusWhile(terminal: TerminalClient, until: Promise<unknown>): Promise<number> {
  let settled = false;
  until.then(
    () => (settled = true),
    () => (settled = true),
  );
  let slowest = 0;
  do {
    const started = performance.now();
    await terminal.call('status');
    slowest = Math.max(slowest, performance.now() - started);
  } while (!settled);
  return slowest;
}

/** The first line of a JSON-lines log that satisfies `matches`, waiting for it (by watching the log's folder). */
function logLine(path: string, matches: (line: Record<string, unknown>) => boolean, timeoutMs = 10_000): Promise<Record<string, unknown>> {
  const find = () =>
    existsSync(path)
      ? readFileSync(path, 'utf8')
          .split('\n')
          .filter((text) => text.startsWith('{'))
          .map((text) => JSON.parse(text) as Record<string, unknown>)
          .find(matches)
      : undefined;
  return new Promise((resolve, reject) => {
    const watcher = watch(join(path, '..'), () => check());
    const timer = setTimeout(() => {
      watcher.close();
      reject(new Error(`no matching line in ${path} within ${timeoutMs} ms`));
    }, timeoutMs);
    const check = () => {
      const line = find();
      if (!line) return;
      clearTimeout(timer);
      watcher.close();
      resolve(line);
    };
    check();
  });
}

const refusedBecause = (pattern: RegExp) => (line: Record<string, unknown>) =>
  line.msg === 'connection refused' && typeof line.reason === 'string' && pattern.test(line.reason);

const hello = (id: number) => JSON.stringify({ jsonrpc: '2.0', id, method: 'hello', params: {} });

/**
 * The longest another terminal's `status` may take while one message is handled. A message decoded on the event
 * loop would hold every other for its whole parse (about a second for the costliest frame below); a status
 * answers in a few ms on an idle machine, and within this bound on a loaded one.
 */
const STALL_MS = 300;

describe('hostile input (real swm-core)', function () {
  this.timeout(60_000);

  describe('one message cannot stall the others', () => {
    let fixture: CoreFixture;
    let hostile: RawTerminal;
    let other: TerminalClient;

    before(async () => {
      fixture = await startFixture({ configure: unreachableGates(await freePort()) });
      hostile = await rawTerminal(fixture.core.port, adminBundle(fixture.spool));
      other = await connectTerminal(fixture.spool.homeDir, fixture.core.port);
      // A large frame is decoded by the core's decoder thread, which starts with the first connection: this
      // answer says it is up, so that what the tests measure is not its start.
      await send(hostile, `${hello(0)}${' '.repeat(64 * 1024)}`);
      expect((await hostile.next()).result).to.include({ user: 'admin' });
    });
    after(async () => {
      hostile?.socket.terminate();
      await other?.close();
      await fixture?.stop();
    });

    /** Send `text` on the hostile socket; its answer, and the slowest `status` of the other terminal meanwhile. */
    async function sendWhileOthersAsk(text: Buffer): Promise<{ reply: Reply; slowest: number }> {
      const answer = hostile.next();
      await send(hostile, text);
      const slowest = await slowestStatusWhile(other, answer);
      return { reply: await answer, slowest };
    }

    it(`refuses 10 MB of nesting with InvalidRequest while another terminal gets status within ${STALL_MS} ms`, async () => {
      const { reply, slowest } = await sendWhileOthersAsk(nestedFrame(5 * 1024 * 1024));
      expect(slowest, 'slowest status while the nested message was handled (ms)').to.be.below(STALL_MS);
      expect(reply.error).to.deep.equal({ code: ErrorCode.InvalidRequest, message: 'message nests deeper than 64 levels' });
    });

    it('refuses 10 MB of flat values the same way (500 000 values at most)', async () => {
      const { reply, slowest } = await sendWhileOthersAsk(flatFrame(3_500_000));
      expect(slowest, 'slowest status while the flat message was handled (ms)').to.be.below(STALL_MS);
      expect(reply.error).to.deep.equal({ code: ErrorCode.InvalidRequest, message: 'message has more than 500000 values' });
    });

    it('decodes a message within the budget but costly to parse off the event loop, and answers in a few lines', async () => {
      // 300 000 distinct keys: about a second of JSON.parse, and one error naming every key.
      const { reply, slowest } = await sendWhileOthersAsk(distinctKeysFrame(300_000));
      expect(reply.id).to.equal(3);
      expect(reply.error?.code).to.equal(ErrorCode.InvalidParams);
      expect(reply.error?.message.length, 'length of the error message').to.be.below(500);
      expect(slowest, 'slowest status while the message was decoded (ms)').to.be.below(STALL_MS);
    });

    it('keeps serving the connection that sent all that, and every other', async () => {
      await send(hostile, hello(4));
      expect((await hostile.next()).result).to.include({ user: 'admin' });
      expect((await fixture.admin.call('hello')).user).to.equal('admin');
      expect(fixture.core.child.exitCode).to.equal(null);
    });
  });

  describe('connections', () => {
    const HANDSHAKE_TIMEOUT_MS = 1000;
    let fixture: CoreFixture;
    let coreLog: string;
    const open: RawTerminal[] = [];

    before(async () => {
      fixture = await startFixture({
        configure: (config) => {
          config.core.maxConnections = 4;
          config.core.maxConnectionsPerClient = 2;
          config.core.handshakeTimeoutMs = HANDSHAKE_TIMEOUT_MS;
        },
      });
      coreLog = join(fixture.spool.spool.logsDir, 'core.log');
    });
    after(async () => {
      for (const raw of open) raw.socket.terminate();
      await fixture?.stop();
    });

    /** A TCP connection to the core that says nothing: no TLS handshake. */
    const silentSocket = (): Promise<Socket> =>
      new Promise((resolve, reject) => {
        const socket = connect(fixture.core.port, '127.0.0.1');
        socket.on('error', () => undefined);
        socket.once('connect', () => resolve(socket));
        socket.once('close', () => reject(new Error('closed before connecting')));
      });

    it('closes sockets past twice the connection limit before any TLS, and says how many in the log', async () => {
      // Open now: the fixture's admin terminal. Seven silent sockets make the 2 × 4 the core holds.
      const silent = await Promise.all(Array.from({ length: 7 }, silentSocket));
      try {
        const started = performance.now();
        const extra = await silentSocket();
        await new Promise((resolve) => extra.once('close', resolve));
        expect(performance.now() - started, 'ms until the extra socket was closed').to.be.below(HANDSHAKE_TIMEOUT_MS / 2);
        await logLine(coreLog, refusedBecause(/^1 connection\(s\) closed before their TLS handshake: 8 sockets already open$/));
      } finally {
        for (const socket of silent) socket.destroy();
      }
    });

    it('closes a connection that never starts its TLS handshake once the handshake time-out passes, and logs why', async () => {
      const started = performance.now();
      const socket = connect(fixture.core.port, '127.0.0.1');
      socket.on('error', () => undefined);
      await new Promise((resolve) => socket.once('close', resolve));
      const elapsed = performance.now() - started;
      expect(elapsed, 'ms until the core closed the silent connection').to.be.at.least(HANDSHAKE_TIMEOUT_MS - 50).and.below(HANDSHAKE_TIMEOUT_MS + 3000);
      const line = await logLine(coreLog, refusedBecause(new RegExp(`TLS handshake not finished within ${HANDSHAKE_TIMEOUT_MS} ms`)));
      expect(line.remote).to.equal('127.0.0.1');
    });

    it("tells a client over its own limit why (WebSocket 1013, REST 503) and keeps its admitted connections", async () => {
      const admin = adminBundle(fixture.spool);
      // The fixture's admin terminal is the first connection of "admin"; this is the second and last.
      const second = await rawTerminal(fixture.core.port, admin);
      open.push(second);
      const third = await rawTerminal(fixture.core.port, admin);
      const why = 'too many connections for admin "admin" (2 open, limit 2)';
      expect(await third.closed).to.deep.equal({ code: 1013, reason: why });
      const viaRest = await rest(fixture.core.port, admin, '/user');
      expect(viaRest.status).to.equal(503);
      expect(viaRest.json()).to.deep.equal({ error: { code: ErrorCode.Unavailable, name: 'Unavailable', message: `${why}; try again later` } });
      await logLine(coreLog, refusedBecause(/^too many connections for admin "admin"/));

      expect((await fixture.admin.call('hello')).user).to.equal('admin');
      await send(second, hello(1));
      expect((await second.next()).result).to.include({ user: 'admin' });
    });

    it('tells a client over the limit of all connections why, and keeps the others', async () => {
      // Open now: the admin's two. Two users take the last two places; a third user finds none.
      const users = ['ursula', 'victor', 'wendy'].map((name) => issueFromSpool(fixture.spool, { role: 'user', name }));
      for (const bundle of users.slice(0, 2)) open.push(await rawTerminal(fixture.core.port, bundle));
      const refused = await rawTerminal(fixture.core.port, users[2]!);
      expect(await refused.closed).to.deep.equal({ code: 1013, reason: 'too many connections (4 open, limit 4)' });
      const viaRest = await rest(fixture.core.port, users[2]!, '/user');
      expect(viaRest.status).to.equal(503);
      await logLine(coreLog, refusedBecause(/^too many connections \(4 open, limit 4\)$/));

      for (const [i, raw] of open.entries()) {
        await send(raw, hello(10 + i));
        expect((await raw.next()).error, `admitted connection ${i}`).to.equal(undefined);
      }
    });

    it('logs why a certificate was refused: unknown CA, expired, no role, revoked', async () => {
      const DAY = 86_400_000;
      const forged = issueCertificate(createCa('another authority'), { role: 'admin', name: 'admin' });
      const refusals: [ClientBundle, RegExp][] = [
        [
          { certPem: forged.certPem, keyPem: forged.keyPem, caPem: spoolCaPem(fixture.spool) },
          /^certificate admin "admin" \(serial [0-9a-f]+\) is not issued by this spool's CA \(issuer "another authority"\)$/,
        ],
        [
          issueFromSpool(fixture.spool, { role: 'admin', name: 'admin', notBefore: new Date(Date.now() - 30 * DAY), notAfter: new Date(Date.now() - DAY) }),
          /^certificate admin "admin" \(serial [0-9a-f]+\) expired on /,
        ],
        [issueFromSpool(fixture.spool, { role: 'intruder' as Role, name: 'mallory' }), /^certificate intruder "mallory" \(serial [0-9a-f]+\) has no Sky Port role$/],
      ];
      const dave = await fixture.admin.call('admin.user.add', { name: 'dave' });
      await fixture.admin.call('admin.user.revoke', { name: 'dave' });
      refusals.push([dave, /^certificate user "dave" \(serial [0-9a-f]+\) is revoked$/]);

      for (const [bundle, reason] of refusals) {
        const error = await connectAs(fixture.core.port, bundle).then(
          async (client) => {
            await client.close();
            return null;
          },
          (e: { code?: number }) => e,
        );
        expect(error, `connection with a certificate that should get: ${reason}`).to.have.property('code', ErrorCode.Unavailable);
        const line = await logLine(coreLog, refusedBecause(reason));
        expect(line.remote).to.equal('127.0.0.1');
      }
    });
  });
});
