import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { get } from 'node:http';
import { createInterface } from 'node:readline';
import ssh2 from 'ssh2';
import { sshFingerprint } from '../terminal-protocol/ssh-keys.js';
import { connectAs } from './harness/certs.js';
import { SWM_MAIN, isFinal, startFixture, waitForJob, waitForOutput, type CoreFixture } from './harness/core.js';

const NODE = process.execPath;

/** A job whose process serves HTTP on its `in` port (found in $SWM_PORT_<port>), answering with its id. */
const httpJob = (port: number): string =>
  `#!/bin/sh
#SWM ports ${port}/tcp/in
exec ${NODE} -e "require('http').createServer((q, r) => r.end('job ' + process.env.SWM_JOB_ID)).listen(+process.env.SWM_PORT_${port}, '127.0.0.1', () => console.log('listening on ' + process.env.SWM_PORT_${port}))"
`;

/** A job whose process echoes every TCP connection on its `in` port. */
const echoJob = (port: number): string =>
  `#!/bin/sh
#SWM ports ${port}/tcp/in
exec ${NODE} -e "require('net').createServer((s) => { s.on('error', () => {}); s.pipe(s); }).listen(+process.env.SWM_PORT_${port}, '127.0.0.1', () => console.log('listening'))"
`;

const httpGet = (url: string): Promise<string> =>
  new Promise((resolve, reject) => {
    get(url, { agent: false }, (response) => {
      let body = '';
      response.on('data', (chunk: Buffer) => (body += chunk.toString()));
      response.on('end', () => resolve(body));
    }).on('error', reject);
  });

/** A connection to `swm forward`'s local address ("host:port"), once made. */
async function connectTo(local: string): Promise<Socket> {
  const [host, port] = local.split(':');
  const socket = connect(Number(port), host);
  await once(socket, 'connect');
  return socket;
}

/** One round trip on an open connection: write, then read what comes back. */
async function echo(socket: Socket, text: string): Promise<string> {
  socket.write(text);
  const [chunk] = (await once(socket, 'data')) as [Buffer];
  return chunk.toString();
}

/** What `swm forward --json` says after its first line: the path its connections take from then on. */
interface PathLine {
  path: 'node' | 'core';
  node?: string;
  reason?: string;
}

/** The path lines of one `swm forward`, as they come. */
class PathLines {
  readonly seen: PathLine[] = [];
  private waiters: Array<() => void> = [];

  add(line: PathLine): void {
    this.seen.push(line);
    for (const w of this.waiters.splice(0)) w();
  }

  async next(): Promise<PathLine> {
    const count = this.seen.length;
    while (this.seen.length === count) await new Promise<void>((resolve) => this.waiters.push(resolve));
    return this.seen[count]!;
  }
}

/** An SSH connection to a node with a direct-path grant (what a terminal does with it), or the reason it failed. */
function sshWith(grant: { host: string; port: number; user: string; privateKey: string; hostKeyFingerprint: string }): Promise<InstanceType<typeof ssh2.Client> | Error> {
  return new Promise((resolve) => {
    const client = new ssh2.Client();
    client.once('ready', () => resolve(client));
    client.once('error', (error: Error) => resolve(error));
    client.connect({ host: grant.host, port: grant.port, username: grant.user, privateKey: grant.privateKey, readyTimeout: 10_000, hostVerifier: (key: Buffer) => sshFingerprint(key) === grant.hostKeyFingerprint });
  });
}

/** Whether the node gives the connection a channel to host:port (and the job's echo answers through it). */
function openTo(client: InstanceType<typeof ssh2.Client>, host: string, port: number): Promise<string> {
  return new Promise((resolve) =>
    client.forwardOut('127.0.0.1', 0, host, port, (error, channel) => {
      if (error) return resolve(`refused: ${error.message}`);
      channel.once('data', (chunk: Buffer) => {
        resolve(chunk.toString());
        channel.close();
      });
      channel.write('through the grant');
    }),
  );
}

describe('port forwarding', function () {
  this.timeout(60_000);
  let f: CoreFixture;
  const forwards: ChildProcess[] = [];
  const servers: Server[] = [];
  /** Jobs a test started: ended after it, pass or fail, so that no job process outlives the suite. */
  let started: string[] = [];

  before(async () => {
    f = await startFixture();
  });
  afterEach(async () => {
    const ids = started;
    started = [];
    await Promise.all(
      ids.map(async (id) => {
        await f.admin.call('job.cancel', { id }).catch(() => undefined);
        await waitForJob(f.admin, id, isFinal, 30_000).catch(() => undefined);
      }),
    );
  });
  after(async () => {
    for (const child of forwards) child.kill('SIGKILL');
    for (const server of servers) server.close();
    await f?.stop();
  });

  /** Submit, then wait until the job's process printed its first line (it is listening). */
  async function runningJob(script: string): Promise<string> {
    const { id } = await f.admin.call('job.submit', { script });
    started.push(id);
    await waitForOutput(f.admin, id, 'listening');
    return id;
  }

  /** `swm forward ID PORT --local 0 --json`; resolves with the process and the local address it listens on. */
  async function swmForward(id: string, port: number, extra: string[] = []): Promise<{ child: ChildProcess; local: string; exited: Promise<number | null>; paths: PathLines }> {
    const child = spawn(NODE, [SWM_MAIN, 'forward', id, String(port), '--local', '0', '--json', ...extra], {
      env: { ...process.env, SWM_HOME: f.spool.homeDir },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    forwards.push(child);
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const lines = createInterface({ input: child.stdout! });
    const line = await new Promise<string>((resolve, reject) => {
      lines.once('line', resolve);
      void exited.then((code) => reject(new Error(`swm forward exited with ${code}: ${stderr}`)));
    });
    const paths = new PathLines();
    lines.on('line', (text) => paths.add(JSON.parse(text) as PathLine));
    return { child, local: (JSON.parse(line) as { local: string }).local, exited, paths };
  }

  it('reaches an HTTP server inside the job through swm forward, and from the core host', async () => {
    const id = await runningJob(httpJob(8888));
    const { local } = await swmForward(id, 8888);
    expect(await httpGet(`http://${local}/`)).to.equal(`job ${id}`);
    expect(await httpGet(`http://${local}/again`)).to.equal(`job ${id}`);

    const { ports } = await f.admin.call('job.ports', { id });
    expect(ports).to.have.length(1);
    expect(ports[0]!.direction).to.equal('in');
    expect(ports[0]!.coreListen).to.match(/^127\.0\.0\.1:\d+$/);
    expect(await httpGet(`http://${ports[0]!.coreListen}/`)).to.equal(`job ${id}`);
  });

  it('gives two jobs using the same port each their own', async () => {
    const [first, second] = await Promise.all([runningJob(httpJob(9090)), runningJob(httpJob(9090))]);
    const nodePorts = await Promise.all([first, second].map(async (id) => (await f.admin.call('job.ports', { id })).ports[0]!.nodePort));
    expect(nodePorts[0]).to.not.equal(nodePorts[1]);
    // One straight to its node, the other carried by the core.
    const [a, b] = await Promise.all([swmForward(first, 9090), swmForward(second, 9090, ['--via-core'])]);
    expect(await httpGet(`http://${a.local}/`)).to.equal(`job ${first}`);
    expect(await httpGet(`http://${b.local}/`)).to.equal(`job ${second}`);
    expect(a.paths.seen.map((p) => p.path)).to.deep.equal(['node']);
    expect(b.paths.seen, '--via-core: no direct path').to.deep.equal([]);
  });

  it("goes straight to the job's node with a key good for that port alone, while the core is frozen, until the job ends", async () => {
    // Its partition is kept once it ends: the node is still there when the grant should no longer open it.
    const id = await runningJob(echoJob(7171).replace('#SWM ports', '#SWM keep-partition 60\n#SWM ports'));
    const { local, paths } = await swmForward(id, 7171);
    const open = () => connectTo(local);
    const first = await open();
    expect(await echo(first, 'hello')).to.equal('hello');
    expect((await (paths.seen[0] ? Promise.resolve(paths.seen[0]) : paths.next())).path).to.equal('node');
    // No byte goes through the core: with the core stopped, a new connection still reaches the job.
    process.kill(f.core.child.pid!, 'SIGSTOP');
    try {
      const second = await open();
      expect(await echo(second, 'core frozen')).to.equal('core frozen');
      second.destroy();
    } finally {
      process.kill(f.core.child.pid!, 'SIGCONT');
    }
    first.destroy();

    // The grant, as the terminal gets it: its key opens the job's port on the node's loopback, and nothing else.
    const grant = await f.admin.call('job.forward.direct', { id, port: 7171 });
    const nodePort = (await f.admin.call('job.ports', { id })).ports[0]!.nodePort!;
    expect(grant.target).to.deep.equal({ host: '127.0.0.1', port: nodePort });
    const client = await sshWith(grant);
    if (client instanceof Error) throw client;
    try {
      expect(await openTo(client, grant.target.host, grant.target.port)).to.equal('through the grant');
      expect(await openTo(client, '127.0.0.1', grant.port), "the node's own SSH port").to.match(/^refused/);
      expect(await openTo(client, 'localhost', grant.target.port), 'another name for it').to.match(/^refused/);
      const shell = await new Promise<string>((resolve) => client.exec('id', (error) => resolve(error ? `refused: ${error.message}` : 'ran')));
      expect(shell, 'no command runs with it').to.match(/^refused/);
    } finally {
      client.end();
    }

    // Another user's job gives no grant; the job's end revokes every grant it gave.
    const mallory = await connectAs(f.core.port, await f.admin.call('admin.user.add', { name: 'mallory' }));
    try {
      await mallory.call('job.forward.direct', { id, port: 7171 }).then(
        () => expect.fail('granted to another user'),
        (error: Error) => expect(error.message).to.match(/not found|no job/i),
      );
    } finally {
      await mallory.close();
    }
    await f.admin.call('job.cancel', { id });
    await waitForJob(f.admin, id, isFinal, 30_000);
    const after = await sshWith(grant);
    expect(after, 'the key no longer opens the node').to.be.instanceOf(Error);
    expect((after as Error).message).to.match(/authentication/i);
  });

  it('lets the job reach a server on the submitting host through an out port', async () => {
    const server = createServer((socket) => socket.end('hello from the submitting host'));
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    const port = (server.address() as { port: number }).port;
    const script = `#!/bin/sh
#SWM ports ${port}/tcp/out
${NODE} -e "const s = require('net').connect(+process.env.SWM_PORT_${port}, '127.0.0.1'); let b = ''; s.on('data', (d) => (b += d)); s.on('end', () => console.log('got: ' + b))"
`;
    const { id } = await f.admin.call('job.submit', { script });
    started.push(id);
    const job = await waitForJob(f.admin, id, isFinal);
    expect(job.state, job.state_details).to.equal('F');
    expect((await f.admin.call('job.logs', { id, stream: 'stdout' })).data).to.equal('got: hello from the submitting host\n');
  });

  it('sets the forwards of a running job up again after a core restart', async () => {
    const server = createServer((socket) => socket.end('still the submitting host'));
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    const outPort = (server.address() as { port: number }).port;
    // Serves HTTP on its in port; on each request, fetches from its out port and answers with what it got.
    const script = `#!/bin/sh
#SWM ports 8080/tcp/in,${outPort}/tcp/out
exec ${NODE} -e "require('http').createServer((q, r) => { const s = require('net').connect(+process.env.SWM_PORT_${outPort}, '127.0.0.1'); let b = ''; s.on('data', (d) => (b += d)); s.on('end', () => r.end(b)); s.on('error', (e) => r.end('error ' + e.message)); }).listen(+process.env.SWM_PORT_8080, '127.0.0.1', () => console.log('listening'))"
`;
    const id = await runningJob(script);
    const before = (await f.admin.call('job.ports', { id })).ports;
    expect(await httpGet(`http://${before.find((p) => p.direction === 'in')!.coreListen}/`)).to.equal('still the submitting host');

    await f.restart('SIGKILL');
    await waitForJob(f.admin, id, (j) => j.state === 'R');
    let after = (await f.admin.call('job.ports', { id })).ports;
    for (let i = 0; i < 200 && !after.find((p) => p.direction === 'in')!.coreListen; i++) {
      await new Promise((r) => setTimeout(r, 25));
      after = (await f.admin.call('job.ports', { id })).ports;
    }
    expect(after.map((p) => p.nodePort)).to.deep.equal(before.map((p) => p.nodePort));
    expect(await httpGet(`http://${after.find((p) => p.direction === 'in')!.coreListen}/`)).to.equal('still the submitting host');
    const { local } = await swmForward(id, 8080);
    expect(await httpGet(`http://${local}/`)).to.equal('still the submitting host');
  });

  it('keeps the other connections when one breaks, and closes every forward when the job ends', async () => {
    const id = await runningJob(echoJob(7070));
    const { local, exited } = await swmForward(id, 7070);
    const open = () => connectTo(local);
    const [a, b] = await Promise.all([open(), open()]);
    expect(await echo(a, 'ping a')).to.equal('ping a');
    expect(await echo(b, 'ping b')).to.equal('ping b');
    a.resetAndDestroy();
    expect(await echo(b, 'still here')).to.equal('still here');
    const c = await open();
    expect(await echo(c, 'new one')).to.equal('new one');

    const corePort = (await f.admin.call('job.ports', { id })).ports[0]!.coreListen!;
    await f.admin.call('job.cancel', { id });
    expect(await exited).to.equal(0);
    await Promise.all([b, c].map((s) => (s.destroyed ? Promise.resolve() : once(s, 'close'))));
    const refused = await new Promise<string>((resolve) => {
      const probe = connect(Number(corePort.split(':')[1]), '127.0.0.1');
      probe.once('connect', () => resolve('connected'));
      probe.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? 'error'));
    });
    expect(refused).to.equal('ECONNREFUSED');
  });
});
