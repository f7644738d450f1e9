import { expect } from 'chai';
import { createHash, randomBytes } from 'node:crypto';
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { connect, createServer, type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import ssh2 from 'ssh2';
import type { Client as SshClient, SFTPWrapper } from 'ssh2';
import { spoolPaths, type SpoolPaths } from '../spool-bootstrap/paths.js';
import type { Partition } from '../terminal-protocol/common.js';
import { ErrorCode, RpcError } from '../terminal-protocol/errors.js';
import type { PartitionRequest } from '../terminal-protocol/gate-methods.js';
import type { Gate } from '../gates/gate.js';
import { createLocalGate } from '../gates/local/index.js';
import { localNodesRoot, privateAddress } from '../gates/local/local-gate.js';
import { CLAIMS_DIR, NodeAccounts, canIsolate } from '../gates/local/node-accounts.js';
import { resolveLexically } from '../gates/local/node-directory.js';
import { ReplyQueue } from '../gates/local/sftp-server.js';
import { closeClient, connectNode, exec, openSftp } from './harness/ssh-client.js';
import { testKeyPair } from './harness/keys.js';

const SFTP_NO_SUCH_FILE = 2;
const SFTP_PERMISSION_DENIED = 3;

const silent = pino({ level: 'silent' });
const flavors = [{ name: 'small', cpus: 1, memMiB: 512 }];

const makeGate = (spool: SpoolPaths, coreId = 'core-a'): Promise<Gate> =>
  createLocalGate({ name: 'local', coreId, spool, options: { flavors }, logger: silent });

const request = (name: string, sshPublicKey: string, nodeCount = 2): PartitionRequest => ({
  name,
  jobId: `job-${name}`,
  owner: 'alice',
  flavor: 'small',
  image: null,
  nodeCount,
  ports: [],
  sshPublicKey,
  tags: {},
});

/** The next event of a partition with the given status. */
const nextEvent = (gate: Gate, name: string, status: Partition['status']): Promise<Partition> =>
  new Promise((resolve) => gate.onEvent((p) => p.name === name && p.status === status && resolve(p)));

async function createUp(gate: Gate, req: PartitionRequest): Promise<Partition> {
  const up = nextEvent(gate, req.name, 'up');
  const created = await gate.create(req);
  expect(created.status).to.equal('creating');
  const partition = await up;
  expect(partition.id).to.equal(created.id);
  return partition;
}

const sftpCall = <T>(run: (cb: (error: Error | null | undefined, value?: T) => void) => void): Promise<T> =>
  new Promise((resolve, reject) => run((error, value) => (error ? reject(error) : resolve(value as T))));

const sftpCode = async (promise: Promise<unknown>): Promise<number> => {
  try {
    await promise;
  } catch (error) {
    return (error as { code: number }).code;
  }
  throw new Error('the SFTP request succeeded');
};

const readRemote = (sftp: SFTPWrapper, path: string): Promise<Buffer> => sftpCall<Buffer>((cb) => sftp.readFile(path, cb));
const writeRemote = (sftp: SFTPWrapper, path: string, data: Buffer | string): Promise<void> => sftpCall<void>((cb) => sftp.writeFile(path, data, cb));

/** Running, not merely a zombie (a killed process stays one until whoever adopted it reaps it). */
const isAlive = (pid: number): boolean => {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
};

describe('local gate', function () {
  this.timeout(20_000);
  let dir: string;
  let spool: SpoolPaths;
  let gate: Gate;
  const partitionKey = testKeyPair();
  const strangerKey = testKeyPair();
  const clients: SshClient[] = [];
  const daemons: number[] = [];

  const nodeDir = (partition: string, node: string) => join(localNodesRoot(spool.gateState('local')), partition, node);
  const connectTo = async (node: Partition['nodes'][number]) => {
    const client = await connectNode(node, partitionKey.private);
    clients.push(client);
    return client;
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'skyport-local-gate-'));
    spool = spoolPaths(join(dir, 'spool'));
    gate = await makeGate(spool);
  });

  after(async () => {
    for (const client of clients) client.end();
    for (const pid of daemons) if (isAlive(pid)) process.kill(pid, 'SIGKILL');
    await gate.close();
    rmSync(dir, { recursive: true, force: true });
  });

  describe('partitions', () => {
    it('creates a partition of two nodes and reports it up with head and compute nodes', async () => {
      const partition = await createUp(gate, request('alpha', partitionKey.public));
      expect(partition.jobId).to.equal('job-alpha');
      expect(partition.nodes.map((n) => [n.name, n.role])).to.deep.equal([
        ['alpha-0', 'head'],
        ['alpha-1', 'compute'],
      ]);
      const [head, compute] = partition.nodes;
      expect(head!.sshPort).to.not.equal(compute!.sshPort);
      expect(head!.hostKeyFingerprint).to.match(/^SHA256:[A-Za-z0-9+/]{43}$/);
      expect(head!.hostKeyFingerprint).to.not.equal(compute!.hostKeyFingerprint);
      expect(statSync(nodeDir('alpha', 'alpha-1')).isDirectory()).to.equal(true);
      expect(statSync(join(spool.gateState('local'), 'state.json')).mode & 0o777).to.equal(0o600);
    });

    it('is idempotent by name: a second create returns the same partition', async () => {
      const first = await gate.get({ name: 'alpha' });
      const again = await gate.create(request('alpha', partitionKey.public));
      expect(again).to.deep.equal({ id: first.id, status: 'up' });
      expect((await gate.list()).filter((p) => p.name === 'alpha')).to.have.length(1);
    });

    it('refuses an unknown flavor and an unreadable key without recording anything', async () => {
      const badFlavor = await gate.create({ ...request('beta', partitionKey.public), flavor: 'huge' }).catch((e: RpcError) => e);
      expect((badFlavor as RpcError).code).to.equal(ErrorCode.Unschedulable);
      const badKey = await gate.create(request('beta', 'ssh-ed25519 not-a-key')).catch((e: RpcError) => e);
      expect((badKey as RpcError).code).to.equal(ErrorCode.InvalidParams);
      expect((await gate.list()).map((p) => p.name)).to.not.include('beta');
    });

    it('offers the configured flavors and no images', async () => {
      expect(await gate.flavors()).to.deep.equal([{ name: 'small', remote: 'local', cpus: 1, gpus: 0, memMiB: 512, diskMiB: 10240, pricePerHour: 0 }]);
      expect(await gate.images()).to.deep.equal([]);
    });

    it('rejects invalid options with the bad key named', async () => {
      const error = await createLocalGate({ name: 'local', coreId: 'c', spool, options: { flavors: [{ name: 'x', cpus: 0, memMiB: 1 }] }, logger: silent }).catch((e: Error) => e);
      expect((error as Error).message).to.contain('gates.local.options.flavors.0.cpus');
    });
  });

  describe('node SSH', () => {
    let partition: Partition;
    before(async () => {
      partition = await gate.get({ name: 'alpha' });
    });

    it('accepts the partition key and presents the reported host key', async () => {
      // connectNode pins the reported fingerprint, computed independently from the key the server presents.
      const client = await connectTo(partition.nodes[0]!);
      expect((await exec(client, 'echo ok')).stdout).to.equal('ok\n');
    });

    it('refuses another key, another user and a host key other than the reported one', async () => {
      const node = partition.nodes[0]!;
      const stranger = await connectNode(node, strangerKey.private).catch((e: Error) => e);
      expect(stranger).to.be.instanceOf(Error);
      expect((stranger as Error).message).to.match(/authentication/i);
      const otherUser = await connectNode(node, partitionKey.private, { username: 'someone-else' }).catch((e: Error) => e);
      expect(otherUser).to.be.instanceOf(Error);
      const otherHost = await connectNode(node, partitionKey.private, { fingerprint: partition.nodes[1]!.hostKeyFingerprint }).catch((e: Error) => e);
      expect(otherHost).to.be.instanceOf(Error);
    });

    it('runs commands in the node directory with output, exit code, stdin and env', async () => {
      const client = await connectTo(partition.nodes[1]!);
      const result = await exec(client, 'echo "$PWD $HOME"; echo oops >&2; exit 3');
      const home = nodeDir('alpha', 'alpha-1');
      expect(result.stdout.trim()).to.equal(`${home} ${home}`);
      expect(result.stderr).to.equal('oops\n');
      expect(result.code).to.equal(3);
      expect((await exec(client, 'tr a-z A-Z', { stdin: 'shout\n' })).stdout).to.equal('SHOUT\n');
      expect((await exec(client, 'echo "$GREETING"', { env: { GREETING: 'hello' } })).stdout).to.equal('hello\n');
    });

    it('signals the command when the client asks, and reports the signal', async () => {
      const client = await connectTo(partition.nodes[0]!);
      const result = await new Promise<{ signal: string | undefined }>((resolve, reject) => {
        client.exec('echo started; exec sleep 30', (error, stream) => {
          if (error) return reject(error);
          stream.once('data', () => stream.signal('TERM'));
          stream.on('exit', (_code: number | null, signal?: string) => resolve({ signal }));
          stream.resume();
        });
      });
      expect(result.signal).to.equal('SIGTERM');
    });

    it('lets a daemonised process outlive the SSH connection', async () => {
      const client = await connectNode(partition.nodes[0]!, partitionKey.private);
      const { stdout } = await exec(client, 'nohup sleep 60 > /dev/null 2>&1 & echo $!');
      const pid = Number(stdout.trim());
      daemons.push(pid);
      await closeClient(client);
      // A second connection is served after the first one's close was handled by the node.
      const again = await connectTo(partition.nodes[0]!);
      expect((await exec(again, `kill -0 ${pid} && echo alive`)).stdout).to.equal('alive\n');
      expect(isAlive(pid)).to.equal(true);
    });
  });

  describe('node SFTP', () => {
    let sftp: SFTPWrapper;
    let home: string;
    before(async () => {
      const partition = await gate.get({ name: 'alpha' });
      sftp = await openSftp(await connectTo(partition.nodes[0]!));
      home = nodeDir('alpha', 'alpha-0');
    });

    it('starts in the node directory', async () => {
      expect(await sftpCall<string>((cb) => sftp.realpath('.', cb))).to.equal(home);
    });

    it('round-trips a file with many requests in flight', async () => {
      const data = randomBytes(3 * 1024 * 1024 + 17);
      const local = join(dir, 'upload.bin');
      const back = join(dir, 'download.bin');
      writeFileSync(local, data);
      await sftpCall<void>((cb) => sftp.mkdir('inputs', cb));
      await sftpCall<void>((cb) => sftp.fastPut(local, 'inputs/data.bin', { concurrency: 32 }, cb));
      const digest = (b: Buffer) => createHash('sha256').update(b).digest('hex');
      expect(digest(readFileSync(join(home, 'inputs', 'data.bin')))).to.equal(digest(data));
      await sftpCall<void>((cb) => sftp.fastGet(`${home}/inputs/data.bin`, back, { concurrency: 32 }, cb));
      expect(digest(readFileSync(back))).to.equal(digest(data));
      const stats = await sftpCall<{ size: number }>((cb) => sftp.stat('inputs/data.bin', cb));
      expect(stats.size).to.equal(data.length);
    });

    it('lists, renames, changes modes and removes', async () => {
      await writeRemote(sftp, 'inputs/note.txt', 'hello');
      const names = (await sftpCall<Array<{ filename: string }>>((cb) => sftp.readdir('inputs', cb))).map((e) => e.filename).sort();
      expect(names).to.deep.equal(['data.bin', 'note.txt']);
      await sftpCall<void>((cb) => sftp.rename('inputs/note.txt', 'inputs/renamed.txt', cb));
      expect((await readRemote(sftp, 'inputs/renamed.txt')).toString()).to.equal('hello');
      await sftpCall<void>((cb) => sftp.chmod('inputs/renamed.txt', 0o600, cb));
      expect(statSync(join(home, 'inputs', 'renamed.txt')).mode & 0o777).to.equal(0o600);
      await sftpCall<void>((cb) => sftp.unlink('inputs/renamed.txt', cb));
      await sftpCall<void>((cb) => sftp.unlink('inputs/data.bin', cb));
      await sftpCall<void>((cb) => sftp.rmdir('inputs', cb));
      expect(existsSync(join(home, 'inputs'))).to.equal(false);
      expect(await sftpCode(readRemote(sftp, 'inputs/renamed.txt'))).to.equal(SFTP_NO_SUCH_FILE);
    });

    it('refuses paths that leave the node directory', async () => {
      expect(await sftpCode(sftpCall((cb) => sftp.stat('../x', cb)))).to.equal(SFTP_PERMISSION_DENIED);
      expect(await sftpCode(readRemote(sftp, '/etc/passwd'))).to.equal(SFTP_PERMISSION_DENIED);
      expect(await sftpCode(writeRemote(sftp, '../alpha-1/planted', 'x'))).to.equal(SFTP_PERMISSION_DENIED);
      expect(await sftpCode(sftpCall((cb) => sftp.readdir('/', cb)))).to.equal(SFTP_PERMISSION_DENIED);
      expect(existsSync(join(nodeDir('alpha', 'alpha-1'), 'planted'))).to.equal(false);
    });

    it('refuses symlinks inside the node directory that point outside, and follows those that stay inside', async () => {
      const outside = join(dir, 'outside');
      writeFileSync(outside, 'secret');
      symlinkSync(outside, join(home, 'escape'));
      symlinkSync(dir, join(home, 'escape-dir'));
      symlinkSync(join(dir, 'not-yet'), join(home, 'dangling'));
      expect(await sftpCode(readRemote(sftp, 'escape'))).to.equal(SFTP_PERMISSION_DENIED);
      expect(await sftpCode(readRemote(sftp, 'escape-dir/outside'))).to.equal(SFTP_PERMISSION_DENIED);
      expect(await sftpCode(writeRemote(sftp, 'dangling', 'planted'))).to.equal(SFTP_PERMISSION_DENIED);
      expect(existsSync(join(dir, 'not-yet'))).to.equal(false);
      // The link itself is inside: it may be inspected and removed.
      const link = await sftpCall<{ isSymbolicLink(): boolean }>((cb) => sftp.lstat('escape', cb));
      expect(link.isSymbolicLink()).to.equal(true);
      await sftpCall<void>((cb) => sftp.unlink('escape', cb));
      expect(readFileSync(outside, 'utf8')).to.equal('secret');

      writeFileSync(join(home, 'real.txt'), 'inside');
      symlinkSync('real.txt', join(home, 'alias'));
      expect((await readRemote(sftp, 'alias')).toString()).to.equal('inside');
    });

    it('answers in request order, whatever order the work finishes in', () => {
      const queue = new ReplyQueue();
      const sent: number[] = [];
      const places = [1, 2, 3].map(() => queue.reserve());
      places[2]!(() => sent.push(3));
      places[0]!(() => sent.push(1));
      expect(sent).to.deep.equal([1]);
      places[1]!(() => sent.push(2));
      expect(sent).to.deep.equal([1, 2, 3]);
    });

    // OpenSSH's scp (SFTP mode) is the strictest client at hand: it truncates an upload whose
    // acknowledgements come back reordered and fails a transfer without an exit status.
    (existsSync('/usr/bin/scp') ? it : it.skip)('serves OpenSSH scp both ways, byte for byte', async () => {
      const partition = await gate.get({ name: 'alpha' });
      const node = partition.nodes[0]!;
      const identity = join(dir, 'id_ed25519');
      writeFileSync(identity, partitionKey.private, { mode: 0o600 });
      const hostKey = ssh2.utils.parseKey(readFileSync(join(spool.gateState('local'), 'host-keys', 'alpha', 'alpha-0.key'))) as ssh2.ParsedKey;
      const knownHosts = join(dir, 'known_hosts');
      writeFileSync(knownHosts, `[127.0.0.1]:${node.sshPort} ${hostKey.type} ${hostKey.getPublicSSH().toString('base64')}\n`);
      const options = ['-q', '-P', String(node.sshPort), '-i', identity, '-o', `UserKnownHostsFile=${knownHosts}`, '-o', 'StrictHostKeyChecking=yes', '-o', 'BatchMode=yes'];
      const data = randomBytes(8 * 1024 * 1024 + 5);
      writeFileSync(join(dir, 'scp-up.bin'), data);
      // Asynchronously: the node's server runs in this very process.
      const scp = (...args: string[]) =>
        new Promise<{ code: number; stderr: string }>((resolve) =>
          execFile('scp', [...options, ...args], { timeout: 15_000 }, (error, _stdout, stderr) => resolve({ code: error ? Number(error.code ?? 1) : 0, stderr })),
        );
      const up = await scp(join(dir, 'scp-up.bin'), `${node.sshUser}@127.0.0.1:scp.bin`);
      expect(up.code, up.stderr).to.equal(0);
      expect(readFileSync(join(home, 'scp.bin')).equals(data)).to.equal(true);
      const down = await scp(`${node.sshUser}@127.0.0.1:scp.bin`, join(dir, 'scp-down.bin'));
      expect(down.code, down.stderr).to.equal(0);
      expect(readFileSync(join(dir, 'scp-down.bin')).equals(data)).to.equal(true);
    });

    it('resolves client paths lexically against the node directory', () => {
      expect(resolveLexically('/n', 'a/../b')).to.equal('/n/b');
      expect(resolveLexically('/n', '/n/x')).to.equal('/n/x');
      expect(resolveLexically('/n', '/nx')).to.equal(null);
      expect(resolveLexically('/n', '..')).to.equal(null);
      expect(resolveLexically('/n', 'a\0b')).to.equal(null);
    });
  });

  describe('node TCP forwarding', () => {
    let client: SshClient;
    let server: { port: number; stop: () => void };
    /** An HTTP server run on the node itself (the node's loopback may be a namespace of its own). */
    const serveOnNode = (ssh: SshClient): Promise<{ port: number; stop: () => void }> =>
      new Promise((resolve, reject) => {
        const program = `const s=require('http').createServer((q,r)=>r.end('from the node')).listen(0,'127.0.0.1',()=>console.log(s.address().port))`;
        ssh.exec(`exec ${process.execPath} -e "${program}"`, (error, stream) => {
          if (error) return reject(error);
          stream.once('data', (d: Buffer) => resolve({ port: Number(d.toString().trim()), stop: () => stream.signal('KILL') }));
          stream.stderr.on('data', (d: Buffer) => reject(new Error(d.toString())));
        });
      });
    /** What a client connecting from the node to its own loopback port reads, or the connect error's code. */
    const readOnNode = async (ssh: SshClient, port: number): Promise<string> => {
      const program = `require('net').connect(${port},'127.0.0.1').on('error',e=>process.stdout.write(e.code)).pipe(process.stdout)`;
      return (await exec(ssh, `${process.execPath} -e "${program}"`)).stdout;
    };
    before(async () => {
      client = await connectTo((await gate.get({ name: 'alpha' })).nodes[0]!);
      server = await serveOnNode(client);
    });
    after(() => server.stop());

    it('forwards a direct-tcpip channel to a loopback port', async () => {
      const response = await new Promise<string>((resolve, reject) => {
        client.forwardOut('127.0.0.1', 0, '127.0.0.1', server.port, (error, stream) => {
          if (error) return reject(error);
          let text = '';
          stream.on('data', (d: Buffer) => (text += d.toString()));
          stream.on('close', () => resolve(text));
          stream.end(`GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
        });
      });
      expect(response).to.match(/^HTTP\/1.1 200/);
      expect(response).to.contain('from the node');
    });

    it('refuses direct-tcpip to anything but loopback', async () => {
      const error = await new Promise<Error | null>((resolve) => client.forwardOut('127.0.0.1', 0, '192.0.2.1', 80, (e) => resolve(e ?? null)));
      expect(error).to.be.instanceOf(Error);
    });

    it('serves a reverse forward on the node loopback, then cancels it', async () => {
      client.on('tcp connection', (_info, accept) => accept().end('from the client'));
      const port = await new Promise<number>((resolve, reject) => client.forwardIn('127.0.0.1', 0, (e, p) => (e ? reject(e) : resolve(p))));
      expect(await readOnNode(client, port)).to.equal('from the client');
      await new Promise<void>((resolve, reject) => client.unforwardIn('127.0.0.1', port, (e) => (e ? reject(e) : resolve())));
      expect(await readOnNode(client, port)).to.equal('ECONNREFUSED');
    });
  });

  describe('restart and deletion', () => {
    it('brings partitions back on the same ports with the same host keys after a restart', async () => {
      const before = await gate.get({ name: 'alpha' });
      await gate.close();
      gate = await makeGate(spool);
      const after = await gate.get({ name: 'alpha' });
      expect(after.status).to.equal('up');
      expect(after.nodes).to.deep.equal(before.nodes);
      const client = await connectTo(after.nodes[1]!);
      expect((await exec(client, 'echo back')).stdout).to.equal('back\n');
    });

    it('reports a partition failed when its port was taken while the gate was down', async () => {
      await createUp(gate, request('gamma', partitionKey.public, 1));
      const port = (await gate.get({ name: 'gamma' })).nodes[0]!.sshPort;
      await gate.close();
      const squatter: Server = createServer();
      await new Promise<void>((resolve) => squatter.listen(port, '127.0.0.1', () => resolve()));
      try {
        gate = await makeGate(spool);
        const gamma = await gate.get({ name: 'gamma' });
        expect(gamma.status).to.equal('failed');
        expect(gamma.error).to.contain(`port ${port} is taken`);
        expect((await gate.get({ name: 'alpha' })).status).to.equal('up');
      } finally {
        await new Promise<void>((resolve) => squatter.close(() => resolve()));
      }
      await gate.delete((await gate.get({ name: 'gamma' })).id);
    });

    it('starts a node process that ended on its own again, on the same port with the same host key', async function () {
      if (!canIsolate()) {
        console.warn('    not root: node processes cannot be told apart by account here');
        this.skip();
      }
      const delta = await createUp(gate, request('delta', partitionKey.public, 1));
      const node = delta.nodes[0]!;
      const pids = execFileSync('pgrep', ['-u', node.sshUser, '-f', 'node-main']).toString().trim().split('\n').map(Number);
      expect(pids, 'one node process for a one-node partition').to.have.length(1);
      process.kill(pids[0]!, 'SIGKILL');
      // connectNode pins the reported host key: the node answers again as itself.
      const deadline = Date.now() + 10_000;
      let client: SshClient | null = null;
      while (!client) {
        client = await connectNode(node, partitionKey.private).catch((error: Error) => {
          if (Date.now() > deadline) throw error;
          return null;
        });
        if (!client) await new Promise((resolve) => setTimeout(resolve, 100));
      }
      clients.push(client);
      expect((await exec(client, 'echo again')).stdout).to.equal('again\n');
      expect((await gate.get({ name: 'delta' })).status).to.equal('up');
      await gate.delete(delta.id);
    });

    it('refuses to delete, and does not show, a partition tagged for another core', async () => {
      const alpha = await gate.get({ name: 'alpha' });
      const foreign = await makeGate(spoolPaths(spool.root), 'core-b');
      try {
        expect(await foreign.list()).to.deep.equal([]);
        const notFound = await foreign.get({ id: alpha.id }).catch((e: RpcError) => e);
        expect((notFound as RpcError).code).to.equal(ErrorCode.NotFound);
        const forbidden = await foreign.delete(alpha.id).catch((e: RpcError) => e);
        expect((forbidden as RpcError).code).to.equal(ErrorCode.Forbidden);
      } finally {
        await foreign.close();
      }
      expect(existsSync(nodeDir('alpha', 'alpha-0'))).to.equal(true);
    });

    it('deletes idempotently: servers stop, directories go, processes go with the node account', async () => {
      const alpha = await gate.get({ name: 'alpha' });
      const deleted = nextEvent(gate, 'alpha', 'deleted');
      expect(await gate.delete(alpha.id)).to.deep.equal({ id: alpha.id, status: 'deleted' });
      await deleted;
      expect(existsSync(join(localNodesRoot(spool.gateState('local')), 'alpha'))).to.equal(false);
      expect(readFileSync(join(spool.gateState('local'), 'state.json'), 'utf8')).to.not.contain(alpha.id);
      const refused = await connectNode(alpha.nodes[0]!, partitionKey.private).catch((e: NodeJS.ErrnoException) => e);
      expect((refused as NodeJS.ErrnoException).code).to.equal('ECONNREFUSED');
      expect(await gate.delete(alpha.id)).to.deep.equal({ id: alpha.id, status: 'deleted' });
      const gone = await gate.get({ id: alpha.id }).catch((e: RpcError) => e);
      expect((gone as RpcError).code).to.equal(ErrorCode.NotFound);
      // A node with an account of its own leaves nothing running; without one (not root) processes stay, as under sshd.
      for (const pid of daemons) expect(isAlive(pid), `process ${pid}`).to.equal(!canIsolate());
    });
  });

  describe('nodes of one partition reach one another', () => {
    let mesh: Partition;
    before(async () => {
      mesh = await createUp(gate, request('mesh', partitionKey.public, 3));
    });
    after(async () => {
      await gate.delete(mesh.id).catch(() => undefined);
    });

    it('gives each node an address of its own (127.0.0.2, .3, .4) as privateIp, the core keeping 127.0.0.1', () => {
      expect(mesh.nodes.map((n) => n.privateIp)).to.deep.equal(['127.0.0.2', '127.0.0.3', '127.0.0.4']);
      expect(mesh.nodes.map((n) => n.publicIp)).to.deep.equal(['127.0.0.1', '127.0.0.1', '127.0.0.1']);
      expect(privateAddress(253)).to.equal('127.0.0.255');
      expect(privateAddress(254)).to.equal('127.0.1.0');
    });

    it('serves SSH at each node\'s address on its port, to the other nodes', async () => {
      const client = await connectTo(mesh.nodes[0]!);
      const peer = mesh.nodes[2]!;
      const banner = `require('net').connect(${peer.sshPort},'${peer.privateIp}').once('data',d=>{process.stdout.write(d.toString().split('\\r')[0]);process.exit(0)}).on('error',e=>{process.stdout.write(e.code);process.exit(1)})`;
      const result = await exec(client, `${process.execPath} -e "${banner}"`);
      expect(result.stdout).to.match(/^SSH-2\.0-/);
    });

    it('puts ssh and scp on the nodes\' PATH, reading $HOME/.ssh/config', async () => {
      if (!existsSync('/usr/bin/ssh')) return;
      const client = await connectTo(mesh.nodes[1]!);
      const found = (await exec(client, 'command -v ssh')).stdout.trim();
      expect(found).to.match(/\/\.account\/bin\/ssh$/);
      expect(readFileSync(found, 'utf8')).to.contain('-F "$HOME/.ssh/config"');
    });

    it('accepts the keys of a node\'s ~/.ssh/authorized_keys from its peers only, never on the gate\'s port', async function () {
      if (!existsSync('/usr/bin/ssh')) return this.skip();
      const target = mesh.nodes[1]!;
      const sftp = await openSftp(await connectTo(target));
      await sftpCall<void>((cb) => sftp.mkdir('.ssh', cb)).catch(() => undefined);
      await writeRemote(sftp, '.ssh/authorized_keys', `${strangerKey.public}\n`);
      // The stranger's key at the gate's port (what the core and anyone on the machine reach): refused.
      const outside = await connectNode(target, strangerKey.private).catch((e: Error) => e);
      expect(outside).to.be.instanceOf(Error);
      // From another node, at the node's own address: accepted.
      const from = await connectTo(mesh.nodes[0]!);
      await writeRemote(await openSftp(from), 'peer-key', strangerKey.private);
      const result = await exec(
        from,
        `chmod 600 peer-key && /usr/bin/ssh -F /dev/null -i peer-key -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null ` +
          `-p ${target.sshPort} ${target.sshUser}@${target.privateIp} pwd`,
      );
      expect(result.stdout.trim(), result.stderr).to.equal(nodeDir('mesh', 'mesh-1'));
    });

    it('shares one network namespace among the nodes, deleted with the partition', async function () {
      if (!canIsolate()) {
        console.warn('    not root: the nodes share the machine\'s network');
        return this.skip();
      }
      const before = readdirSync('/run/netns').filter((n) => n.startsWith('swm-'));
      const client = await connectTo(mesh.nodes[0]!);
      const inode = async (node: Partition['nodes'][number]) => (await exec(await connectTo(node), 'readlink /proc/self/ns/net')).stdout.trim();
      const namespaces = await Promise.all(mesh.nodes.map(inode));
      expect(new Set(namespaces).size, namespaces.join(' ')).to.equal(1);
      expect(namespaces[0]).to.not.equal(execFileSync('readlink', ['/proc/self/ns/net']).toString().trim());
      await closeClient(client);
      const deleted = nextEvent(gate, 'mesh', 'deleted');
      await gate.delete(mesh.id);
      await deleted;
      const after = readdirSync('/run/netns').filter((n) => n.startsWith('swm-'));
      expect(after.length).to.equal(before.length - 1);
    });
  });

  describe('node accounts', () => {
    it('never gives one account to two gates, even when they race for the claim of a removed spool', async function () {
      if (!canIsolate()) {
        console.warn('    not root: no node accounts to claim');
        this.skip();
      }
      // The stale claim sits where the next claim looks first: the lowest free account of the pool.
      let free = 0;
      while (existsSync(join(CLAIMS_DIR, `swm-node-${free}`))) free++;
      const stale = join(CLAIMS_DIR, `swm-node-${free}`);
      writeFileSync(stale, join(dir, 'a-spool-that-was-removed'));
      const gates = [1, 2, 3].map((n) => new NodeAccounts(join(dir, `owner-${n}`), silent));
      for (const n of [1, 2, 3]) writeFileSync(join(dir, `owner-${n}`), '');
      try {
        const claimed = await Promise.all([...gates, gates[0]!, gates[1]!].map((g) => g.claim()));
        expect(new Set(claimed).size, claimed.join(' ')).to.equal(claimed.length);
        expect(claimed, 'the stale claim was taken over').to.include(`swm-node-${free}`);
      } finally {
        for (const gate of gates) await gate.releaseUnrecorded(new Set());
        rmSync(stale, { force: true });
      }
    });

    it('drops, as it starts, the take-over locks and the claims written aside it held when it died, and no other gate\'s', async function () {
      if (!canIsolate()) {
        console.warn('    not root: no node accounts to claim');
        this.skip();
      }
      mkdirSync(CLAIMS_DIR, { recursive: true, mode: 0o700 });
      const mine = join(dir, 'owner-dead-gate');
      const other = join(dir, 'owner-other-gate');
      writeFileSync(mine, '');
      writeFileSync(other, '');
      let free = 0;
      while (existsSync(join(CLAIMS_DIR, `swm-node-${free}.lock`)) || existsSync(join(CLAIMS_DIR, `swm-node-${free + 1}.lock`))) free++;
      const myLock = join(CLAIMS_DIR, `swm-node-${free}.lock`);
      const theirLock = join(CLAIMS_DIR, `swm-node-${free + 1}.lock`);
      // And a claim each was writing aside when it died (createExclusive's `.tmp`, before its link and unlink).
      const myAside = join(CLAIMS_DIR, `swm-node-${free}.4242.0badf00d.tmp`);
      const theirAside = join(CLAIMS_DIR, `swm-node-${free + 1}.4243.0badf00d.tmp`);
      writeFileSync(myLock, mine);
      writeFileSync(theirLock, other);
      writeFileSync(myAside, mine);
      writeFileSync(theirAside, other);
      try {
        await new NodeAccounts(mine, silent).releaseUnrecorded(new Set());
        expect(existsSync(myLock), 'the dead gate\'s own lock').to.equal(false);
        expect(existsSync(theirLock), 'another gate\'s lock').to.equal(true);
        expect(existsSync(myAside), 'the dead gate\'s claim written aside').to.equal(false);
        expect(existsSync(theirAside), 'another gate\'s claim written aside').to.equal(true);
      } finally {
        for (const path of [myLock, theirLock, myAside, theirAside]) rmSync(path, { force: true });
      }
    });
  });
});
