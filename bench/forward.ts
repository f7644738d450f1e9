/**
 * bench/forward: port forwarding throughput and latency, side by side with `ssh -L` on this machine.
 *
 *   swm forward             client ─▶ swm forward (local port) ═SSH═▶ local gate node ─▶ server in the job  (direct path)
 *   swm forward --via-core  client ─▶ swm forward (local port) ═WebSocket═▶ swm-core ═SSH═▶ local gate node ─▶ server
 *   ssh -L                  client ─▶ ssh -L (local port)      ═SSH═▶ sshd (loopback) ─▶ server
 *
 * The server is the same small program in both cases (in the job for swm, beside sshd for OpenSSH): it
 * sinks a stream and answers its byte count, or echoes small requests. Measured: one 1 GiB stream through
 * each forward (throughput), and sequential 64-byte request/responses (latency), each also without any
 * forward to give the added latency. Rounds are interleaved; medians are printed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { loadavg } from 'node:os';
import { createInterface } from 'node:readline';
import { Command, InvalidArgumentError } from 'commander';
import { SWM_MAIN, connectTerminal, killGates, startCoreProcess, waitForJob } from '../test/harness/core.js';
import { freePort, makeTestSpool } from '../test/harness/spool.js';
import { runTeardown } from './cleanup.js';
import { ensureOpenSsh, startOpenSsh } from './openssh-peer.js';
import { cpuSeconds, fmtMiB, fmtMs, fmtRatio, peakRssKiB, percentile, printSection } from './stats.js';

const positive = (value: string): number => {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError('a positive integer is needed');
  return n;
};

const options = new Command('bench-forward')
  .description('swm forward vs ssh -L: throughput of one stream and added latency per small request.')
  .option('--mib <n>', 'bytes of the throughput stream, in MiB', positive, 1024)
  .option('--requests <n>', 'request/response round trips per latency run', positive, 2000)
  .option('--rounds <n>', 'rounds of each measurement (the median is reported)', positive, 3)
  .parse()
  .opts<{ mib: number; requests: number; rounds: number }>();

const MIB = 1024 * 1024;

/** What this run started, stopped newest first at the end, and also when the run fails or is interrupted. */
const { cleanup, stopAll: stopEverything } = runTeardown();
const JOB_PORT = 9000;
const NODE = process.execPath;

/**
 * The server, as one line of JavaScript: a connection that starts with "S" is a sink (it answers the
 * decimal count of the bytes after the "S" once the sender half-closes); any other is echoed.
 */
const SERVER_JS = `
const port = +process.argv[1];
require('net').createServer((s) => {
  s.setNoDelay(true); s.on('error', () => {});
  s.once('data', (first) => {
    if (first[0] === 83) {
      let n = first.length - 1;
      s.on('data', (d) => (n += d.length));
      s.on('end', () => s.end(String(n)));
    } else { s.write(first); s.pipe(s); }
  });
}).listen(port, '127.0.0.1', () => console.log('listening ' + port));
`.replace(/\n/g, ' ');

const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

async function open(port: number): Promise<Socket> {
  const socket = connect(port, '127.0.0.1');
  socket.setNoDelay(true);
  await once(socket, 'connect');
  return socket;
}

/** One stream of `bytes` through `port`; resolves with the seconds until the server confirmed them all. */
async function stream(port: number, bytes: number): Promise<number> {
  const socket = await open(port);
  const block = Buffer.alloc(MIB, 7);
  const started = process.hrtime.bigint();
  socket.write('S');
  for (let sent = 0; sent < bytes; sent += block.length) {
    if (!socket.write(block.subarray(0, Math.min(block.length, bytes - sent)))) await once(socket, 'drain');
  }
  socket.end();
  let answer = '';
  socket.on('data', (d: Buffer) => (answer += d.toString()));
  await once(socket, 'close');
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  if (Number(answer) !== bytes) throw new Error(`the server received ${answer} bytes of ${bytes}`);
  return seconds;
}

/** Sequential 64-byte round trips on one connection; resolves with their latencies in ms. */
async function pingPong(port: number, count: number): Promise<number[]> {
  const socket = await open(port);
  const message = Buffer.alloc(64, 1);
  const latencies: number[] = [];
  let pending: (() => void) | null = null;
  let got = 0;
  socket.on('data', (d: Buffer) => {
    got += d.length;
    if (got >= message.length) {
      got -= message.length;
      pending?.();
    }
  });
  for (let i = 0; i < count + 50; i++) {
    const t = process.hrtime.bigint();
    await new Promise<void>((resolve) => {
      pending = resolve;
      socket.write(message);
    });
    if (i >= 50) latencies.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  socket.destroy();
  return latencies;
}

async function waitForLine(child: ChildProcess, pattern: RegExp): Promise<string> {
  return new Promise((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => pattern.test(line) && resolve(line));
    child.once('exit', (code) => reject(new Error(`process exited with ${code}`)));
  });
}

/** Wait until something accepts connections on a local port (ssh -L opens its listener after authenticating). */
async function whenListening(port: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    try {
      (await open(port)).destroy();
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 25));
    }
  }
  throw new Error(`nothing listens on port ${port}`);
}

async function main(): Promise<void> {
  const missing = ensureOpenSsh();
  if (missing) throw new Error(`cannot run: ${missing}`);
  const bytes = options.mib * MIB;
  process.stdout.write(`bench-forward: ${options.mib} MiB stream, ${options.requests} round trips, ${options.rounds} rounds, load ${loadavg()[0]!.toFixed(2)}\n`);

  // OpenSSH: the server beside sshd, reached through ssh -L.
  const peer = await startOpenSsh();
  const stopPeer = cleanup(() => peer.stop());
  const serverPort = await freePort();
  const server = spawn(NODE, ['-e', SERVER_JS, String(serverPort)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const stopServer = cleanup(async () => void server.kill('SIGKILL'));
  await waitForLine(server, /listening/);
  const sshLocal = await freePort();
  const ssh = spawn('ssh', ['-N', ...peer.clientOptions('-p'), '-o', 'ExitOnForwardFailure=yes', '-L', `127.0.0.1:${sshLocal}:127.0.0.1:${serverPort}`, `${peer.user}@127.0.0.1`], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const stopSsh = cleanup(async () => void ssh.kill('SIGKILL'));
  await whenListening(sshLocal);

  // Sky Port: a core and its local gate; the server runs inside a job; swm forward on this machine.
  const spool = await makeTestSpool();
  const stopSpool = cleanup(async () => {
    killGates(spool);
    spool.cleanup();
  });
  const core = await startCoreProcess(spool, { SWM_LOG_LEVEL: 'warn' });
  const stopCore = cleanup(async () => void (await core.kill('SIGTERM')));
  const terminal = await connectTerminal(spool.homeDir);
  const script = `#!/bin/sh\n#SWM ports ${JOB_PORT}/tcp/in\nexec ${NODE} -e "${SERVER_JS.replace(/"/g, '\\"')}" "$SWM_PORT_${JOB_PORT}"\n`;
  const { id } = await terminal.call('job.submit', { script });
  // The job's process runs detached on the node: end the job (its teardown kills it) before the core goes.
  const endJob = cleanup(async () => {
    await terminal.call('job.cancel', { id }).catch(() => undefined);
    await waitForJob(terminal, id, (j) => ['F', 'E', 'C'].includes(j.state), 60_000).catch(() => undefined);
    await terminal.close();
  });
  await waitForJob(terminal, id, (j) => j.state === 'R' && j.state_details === 'running', 60_000);
  for (let i = 0; i < 400 && !(await terminal.call('job.logs', { id, stream: 'stdout' })).data.includes('listening'); i++) await new Promise((r) => setTimeout(r, 25));
  const startForward = async (extra: string[]): Promise<{ child: ChildProcess; port: number; stop: () => Promise<void> }> => {
    const child = spawn(NODE, [SWM_MAIN, 'forward', id, String(JOB_PORT), '--local', '0', '--json', ...extra], {
      env: { ...process.env, SWM_HOME: spool.homeDir },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const stop = cleanup(async () => {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    });
    return { child, port: Number((JSON.parse(await waitForLine(child, /"local"/)) as { local: string }).local.split(':')[1]), stop };
  };
  const straight = await startForward([]);
  const relayed = await startForward(['--via-core']);
  // The direct path is made at the first connection: made (and said) before anything is timed.
  const said = waitForLine(straight.child, /"path"/);
  (await open(straight.port)).destroy();
  const path = JSON.parse(await said) as { path: string; reason?: string };
  if (path.path !== 'node') throw new Error(`swm forward took no direct path: ${path.reason}`);
  const nodePort = (await terminal.call('job.ports', { id })).ports[0]!.nodePort!;

  const straightTimes: number[] = [];
  const relayedTimes: number[] = [];
  const sshTimes: number[] = [];
  const straightCpu: number[] = [];
  const relayedCpu: number[] = [];
  const sshCpu: number[] = [];
  const direct: number[] = [];
  const straightLat: number[] = [];
  const relayedLat: number[] = [];
  const sshLat: number[] = [];
  const cpuOf = (...pids: Array<number | undefined>) => pids.reduce<number>((sum, pid) => sum + (pid ? (cpuSeconds(pid) ?? 0) : 0), 0);
  const timed = async (port: number, times: number[], cpu: number[], pids: Array<number | undefined>) => {
    const before = cpuOf(...pids);
    times.push(await stream(port, bytes));
    cpu.push(cpuOf(...pids) - before);
  };
  for (let round = 0; round < options.rounds; round++) {
    await timed(straight.port, straightTimes, straightCpu, [straight.child.pid]);
    await timed(relayed.port, relayedTimes, relayedCpu, [relayed.child.pid, core.child.pid]);
    await timed(sshLocal, sshTimes, sshCpu, [ssh.pid]);
    direct.push(...(await pingPong(nodePort, options.requests)));
    straightLat.push(...(await pingPong(straight.port, options.requests)));
    relayedLat.push(...(await pingPong(relayed.port, options.requests)));
    sshLat.push(...(await pingPong(sshLocal, options.requests)));
  }
  const rss = peakRssKiB(core.child.pid!);

  await straight.stop();
  await relayed.stop();
  await endJob();
  await stopCore();
  await stopSpool();
  await stopSsh();
  await stopServer();
  await stopPeer();

  const sshT = median(sshTimes);
  const rate = (t: number) => `${(options.mib / t).toFixed(0)} MiB/s (${t.toFixed(2)} s)`;
  printSection(`one ${options.mib} MiB stream through the forward (median of ${options.rounds}; CPU-s of the forwarding client, and of the core when it relays)`, [
    ['swm forward, direct path (terminal ═SSH═▶ node)', `${rate(median(straightTimes))}  CPU-s ${median(straightCpu).toFixed(2)}`],
    ['swm forward --via-core (terminal ═TLS═▶ core ═SSH═▶ node)', `${rate(median(relayedTimes))}  CPU-s ${median(relayedCpu).toFixed(2)}`],
    ['ssh -L (OpenSSH defaults)', `${rate(sshT)}  CPU-s ${median(sshCpu).toFixed(2)}`],
    ['ratio, direct path (goal ≥ 1.0x)', fmtRatio(sshT, median(straightTimes))],
    ['ratio, through the core', fmtRatio(sshT, median(relayedTimes))],
  ]);
  const base = percentile(direct, 50);
  const added = (lat: number[]) => `p50 ${fmtMs(percentile(lat, 50))}  p99 ${fmtMs(percentile(lat, 99))}  added p50 ${fmtMs(percentile(lat, 50) - base)}`;
  printSection(`64-byte request/response, ${options.requests} × ${options.rounds} sequential round trips`, [
    ['straight to the server (no forward)', `p50 ${fmtMs(base)}  p99 ${fmtMs(percentile(direct, 99))}`],
    ['swm forward, direct path', added(straightLat)],
    ['swm forward --via-core', added(relayedLat)],
    ['ssh -L', added(sshLat)],
    ['peak RSS of swm-core over the whole run', fmtMiB(rss)],
  ]);
}

main().then(
  () => stopEverything().then(() => process.exit(0)),
  async (error: Error) => {
    await stopEverything();
    process.stderr.write(`bench-forward: ${error.stack ?? error.message}\n`);
    process.exit(1);
  },
);
