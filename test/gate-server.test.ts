import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync, watch } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GateConnection } from '../terminal-protocol/client.js';
import type { Partition } from '../terminal-protocol/common.js';
import { ErrorCode, RpcError } from '../terminal-protocol/errors.js';
import { makeTestSpool, type TestSpool } from './harness/spool.js';
import { connectNode, exec } from './harness/ssh-client.js';
import { testKeyPair } from './harness/keys.js';

const GATE_MAIN = fileURLToPath(new URL('../gates/main.js', import.meta.url));
const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

const startGate = (args: string[]): ChildProcess => spawn(process.execPath, [GATE_MAIN, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });

const exitOf = (child: ChildProcess): Promise<{ code: number | null; stderr: string }> =>
  new Promise((resolve) => {
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    if (child.exitCode !== null) resolve({ code: child.exitCode, stderr });
    else child.once('exit', (code) => resolve({ code, stderr }));
  });

/** Resolves when `path` exists (written by rename, as writeFileAtomic does); rejects if `child` exits first. */
function fileAppears(path: string, child: ChildProcess, timeoutMs = 10_000): Promise<void> {
  mkdirSync(dirname(path), { recursive: true });
  return new Promise((resolve, reject) => {
    const done = (error?: Error) => {
      watcher.close();
      clearTimeout(timer);
      child.off('exit', onExit);
      if (error) reject(error);
      else resolve();
    };
    const onExit = (code: number | null) => done(new Error(`swm-gate exited with ${code} before writing ${path}`));
    const watcher = watch(dirname(path), (_event, name) => name === basename(path) && existsSync(path) && done());
    const timer = setTimeout(() => done(new Error(`${path} did not appear within ${timeoutMs} ms`)), timeoutMs);
    child.once('exit', onExit);
    if (existsSync(path)) done();
  });
}

const nextPartitionEvent = (client: GateConnection, name: string, status: Partition['status']): Promise<Partition> =>
  new Promise((resolve) => {
    const listener = (method: string, partition: Partition) => {
      if (method !== 'partition.event' || partition.name !== name || partition.status !== status) return;
      client.off('notification', listener);
      resolve(partition);
    };
    client.on('notification', listener);
  });

describe('swm-gate (the gate server around a gate)', function () {
  this.timeout(30_000);
  let spool: TestSpool;
  let gate: ChildProcess;
  let gateExit: Promise<{ code: number | null; stderr: string }>;
  let port: number;
  const clients: GateConnection[] = [];
  const pidfile = () => join(spool.spool.gateState('local'), 'gate.pid');

  const connect = async (credentials: { cert: string; key: string; ca: string }): Promise<GateConnection> => {
    const client = new GateConnection({ url: `wss://127.0.0.1:${port}`, credentials, connectTimeoutMs: 5_000 });
    clients.push(client);
    return client.connect();
  };
  const asCore = () =>
    connect({ cert: readFileSync(spool.spool.core.cert, 'utf8'), key: readFileSync(spool.spool.core.key, 'utf8'), ca: readFileSync(spool.spool.ca.cert, 'utf8') });

  before(async () => {
    spool = await makeTestSpool();
    port = spool.config.gates.find((g) => g.name === 'local')!.port;
    gate = startGate(['--kind', 'local', '--name', 'local', '--spool', spool.spoolDir]);
    gateExit = exitOf(gate);
    await fileAppears(pidfile(), gate);
  });

  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    if (gate.exitCode === null && gate.signalCode === null) gate.kill('SIGKILL');
    spool.cleanup();
  });

  it('writes a private pidfile with its pid and port once listening', () => {
    expect(JSON.parse(readFileSync(pidfile(), 'utf8'))).to.deep.equal({ pid: gate.pid, port });
    expect(statSync(pidfile()).mode & 0o777).to.equal(0o600);
  });

  it('answers the core: hello, flavors, images', async () => {
    const core = await asCore();
    expect(await core.call('gate.hello')).to.deep.equal({ kind: 'local', name: 'local', version: VERSION });
    const flavors = await core.call('flavor.list');
    expect(flavors.length).to.be.greaterThan(0);
    expect(flavors.every((f) => f.remote === 'local')).to.equal(true);
    expect(await core.call('image.list')).to.deep.equal([]);
  });

  it('creates a partition for the core, reports it by partition.event, and deletes it', async () => {
    const core = await asCore();
    const key = testKeyPair();
    const flavor = (await core.call('flavor.list'))[0]!.name;
    const up = nextPartitionEvent(core, 'wire', 'up');
    const created = await core.call('partition.create', {
      name: 'wire',
      jobId: 'job-1',
      owner: 'admin',
      flavor,
      image: null,
      nodeCount: 1,
      ports: [],
      sshPublicKey: key.public,
      tags: {},
    });
    expect(created.status).to.equal('creating');
    const partition = await up;
    expect(partition.id).to.equal(created.id);
    expect((await core.call('partition.list')).map((p) => p.id)).to.deep.equal([created.id]);
    const node = await connectNode(partition.nodes[0]!, key.private);
    try {
      expect((await exec(node, 'echo served')).stdout).to.equal('served\n');
    } finally {
      node.end();
    }
    const deleted = nextPartitionEvent(core, 'wire', 'deleted');
    expect(await core.call('partition.delete', { id: created.id })).to.deep.equal({ id: created.id, status: 'deleted' });
    await deleted;
    const missing = await core.call('partition.get', { id: created.id }).catch((e: RpcError) => e);
    expect((missing as RpcError).code).to.equal(ErrorCode.NotFound);
  });

  it('refuses every method to a user certificate, even an admin\'s', async () => {
    const admin = await connect({ cert: readFileSync(spool.home.cert, 'utf8'), key: readFileSync(spool.home.key, 'utf8'), ca: readFileSync(spool.home.ca, 'utf8') });
    for (const call of [admin.call('gate.hello'), admin.call('partition.list'), admin.call('partition.delete', { id: 'x' })]) {
      const error = await call.catch((e: RpcError) => e);
      expect(error).to.be.instanceOf(RpcError);
      expect((error as RpcError).code).to.equal(ErrorCode.Forbidden);
    }
  });

  it('exits 2 on a usage error and 1 on a gate missing from the configuration', async () => {
    const usage = await exitOf(startGate(['--kind', 'moon', '--name', 'local', '--spool', spool.spoolDir]));
    expect(usage.code).to.equal(2);
    const missing = await exitOf(startGate(['--kind', 'local', '--name', 'nowhere', '--spool', spool.spoolDir]));
    expect(missing.code).to.equal(1);
    expect(missing.stderr).to.contain('no gate named "nowhere"');
  });

  it('stops cleanly on SIGTERM and removes its pidfile', async () => {
    gate.kill('SIGTERM');
    expect((await gateExit).code).to.equal(0);
    expect(existsSync(pidfile())).to.equal(false);
  });
});
