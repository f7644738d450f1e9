import { expect } from 'chai';
import type { AddressInfo } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import { ErrorCode } from '../terminal-protocol/errors.js';
import { exceedsBudget, FRAME_BUDGET } from '../terminal-protocol/frame-budget.js';
import { frameThread } from '../terminal-protocol/frame-thread.js';
import type { MethodTable, NotificationTable } from '../terminal-protocol/method.js';
import { RpcPeer } from '../terminal-protocol/peer.js';
import { terminalMethods, type TerminalMethods } from '../terminal-protocol/terminal-methods.js';

/** A small seeded generator, so that a failing case can be replayed from the seed in the test's title. */
function random(seed: number): (n: number) => number {
  let state = seed >>> 0 || 1;
  return (n) => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) % n;
  };
}

/** Strings that tempt a scanner: brackets, commas and quotes inside, escapes at every position, long runs. */
function trickyString(pick: (n: number) => number): string {
  const pieces = ['[', ']', '{', '}', ',', '"', '\\', '\\"', '"\\', 'é', '😀', ' ', 'x', '\n', '\u0001'];
  const long = pick(4) === 0;
  const length = long ? 60 + pick(200) : pick(12);
  let text = '';
  for (let i = 0; i < length; i++) text += pieces[pick(pieces.length)];
  return text;
}

function randomValue(pick: (n: number) => number, depth: number): unknown {
  const kind = depth > 6 ? pick(4) : pick(7);
  switch (kind) {
    case 0:
      return trickyString(pick);
    case 1:
      return pick(1000) - 500 + pick(100) / 7;
    case 2:
      return [true, false, null][pick(3)];
    case 3:
      return pick(2) ? [] : {};
    case 4:
    case 5:
      return Array.from({ length: pick(6) }, () => randomValue(pick, depth + 1));
    default:
      return Object.fromEntries(Array.from({ length: pick(6) }, () => [trickyString(pick), randomValue(pick, depth + 1)]));
  }
}

const depthOf = (value: unknown): number =>
  value !== null && typeof value === 'object' ? 1 + Math.max(0, ...Object.values(value).map(depthOf)) : 0;
const valuesOf = (value: unknown): number =>
  value !== null && typeof value === 'object' ? 1 + Object.values(value).reduce<number>((n, v) => n + valuesOf(v), 0) : 1;

describe('frame budget (the scan before JSON.parse)', () => {
  it('measures depth and values exactly, whatever the strings hold (500 random documents)', () => {
    for (let seed = 1; seed <= 500; seed++) {
      const pick = random(seed);
      const value = randomValue(pick, 0);
      const text = JSON.stringify(value, null, [0, 1, '\t'][pick(3)]);
      const frame = Buffer.from(text);
      const depth = depthOf(value);
      const values = valuesOf(value);
      expect(exceedsBudget(frame, { maxDepth: depth, maxValues: values }), `seed ${seed}: ${text.slice(0, 200)}`).to.equal(null);
      if (depth > 0) expect(exceedsBudget(frame, { maxDepth: depth - 1, maxValues: values }), `seed ${seed}`).to.match(/nests deeper/);
      if (values > 1) expect(exceedsBudget(frame, { maxDepth: depth, maxValues: values - 1 }), `seed ${seed}`).to.match(/more than/);
    }
  });

  it('stops at the first bracket past the limit: 10 MB of nesting costs microseconds', () => {
    const half = 5 * 1024 * 1024;
    const frame = Buffer.from('['.repeat(half) + ']'.repeat(half));
    const started = performance.now();
    expect(exceedsBudget(frame, FRAME_BUDGET)).to.equal(`message nests deeper than ${FRAME_BUDGET.maxDepth} levels`);
    expect(performance.now() - started).to.be.below(20);
  });

  it('counts values of flat containers too: 10 MB of {} is refused', () => {
    const frame = Buffer.from(`[${'{},'.repeat(3_500_000)}{}]`);
    expect(exceedsBudget(frame, FRAME_BUDGET)).to.equal(`message has more than ${FRAME_BUDGET.maxValues} values`);
  });

  it('passes a 16 MB job script full of escaped quotes whole', () => {
    const script = '#!/bin/sh\n' + 'echo "[{,}]" \\"quoted\\" \\\\\n'.repeat(16 * 1024 * 1024 / 32);
    const frame = Buffer.from(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'job.submit', params: { script } }));
    expect(exceedsBudget(frame, FRAME_BUDGET)).to.equal(null);
  });
});

describe('the decoder thread (large frames, both wire tables)', () => {
  const frame = (message: unknown): Uint8Array => Buffer.from(JSON.stringify(message));

  it('refuses a nested frame for the gate table as for the terminal table', async () => {
    const nested = Buffer.from(`{"jsonrpc":"2.0","id":1,"method":"gate.hello","params":${'['.repeat(100)}${']'.repeat(100)}}`);
    for (const [table, role] of [['gate', 'core'], ['terminal', 'user']] as const) {
      const decoded = await frameThread.decode(nested, table, role);
      expect(decoded).to.deep.equal({ kind: 'refused', id: null, error: { code: ErrorCode.InvalidRequest, message: 'message nests deeper than 64 levels' } });
    }
  });

  it('hands over a valid call with its checked params, and checks the role', async () => {
    const hello = frame({ jsonrpc: '2.0', id: 'a', method: 'gate.hello', params: {} });
    expect(await frameThread.decode(hello, 'gate', 'core')).to.deep.equal({ kind: 'request', id: 'a', method: 'gate.hello', params: {} });
    const forbidden = await frameThread.decode(hello, 'gate', 'user');
    expect(forbidden).to.deep.include({ kind: 'refused', id: 'a' });
    expect(forbidden.kind === 'refused' && forbidden.error.code).to.equal(ErrorCode.Forbidden);
    const submit = frame({ jsonrpc: '2.0', id: 2, method: 'job.submit', params: { script: 'x'.repeat(100_000) } });
    const decoded = await frameThread.decode(submit, 'terminal', 'user');
    expect(decoded).to.deep.equal({ kind: 'request', id: 2, method: 'job.submit', params: { script: 'x'.repeat(100_000) } });
  });

  it('names at most five problems of an invalid value, however many it has', async () => {
    const bad = frame({ jsonrpc: '2.0', id: 3, method: 'job.submit', params: { script: '', inputs: Array.from({ length: 1000 }, () => ({ path: '/abs' })) } });
    const decoded = await frameThread.decode(bad, 'terminal', 'user');
    expect(decoded.kind).to.equal('refused');
    if (decoded.kind !== 'refused') return;
    expect(decoded.error.code).to.equal(ErrorCode.InvalidParams);
    expect(decoded.error.message).to.match(/and \d+ more$/);
    expect(decoded.error.message.length).to.be.below(1500);
  });
});

describe('a peer that decodes large frames off the event loop', () => {
  let server: WebSocketServer;
  let client: WebSocket;
  const calls: string[] = [];
  let answered: (id: number) => void = () => undefined;

  before(async () => {
    server = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    await new Promise((resolve) => server.once('listening', resolve));
    server.on('connection', (socket) => {
      new RpcPeer<TerminalMethods, MethodTable, NotificationTable>(socket, {
        serves: {
          methods: terminalMethods,
          role: 'user',
          handler: ((method: string) => {
            calls.push(method);
            return method === 'hello' ? { version: 'x', user: 'u', role: 'user', coreId: 'c', uptimeSec: 0 } : { id: '00000000-0000-4000-8000-000000000000', warnings: [], awaitingInputs: false };
          }) as never,
        },
      });
    });
    client = new WebSocket(`ws://127.0.0.1:${(server.address() as AddressInfo).port}`);
    client.on('message', (data) => answered((JSON.parse(data.toString()) as { id: number }).id));
    await new Promise((resolve) => client.once('open', resolve));
  });
  after(() => {
    client?.terminate();
    server?.close();
  });

  it('acts on frames in the order they came, a small call after a large one included', async () => {
    const answers = new Set<number>();
    const both = new Promise<void>((resolve) => {
      answered = (id) => {
        answers.add(id);
        if (answers.size === 2) resolve();
      };
    });
    client.send(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'job.submit', params: { script: `#!/bin/sh\n#${'x'.repeat(1024 * 1024)}\n` } }));
    client.send(JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'hello', params: {} }));
    await both;
    expect(calls).to.deep.equal(['job.submit', 'hello']);
  });
});
