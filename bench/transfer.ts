/**
 * bench/transfer: data staging throughput, side by side with OpenSSH on this machine.
 *
 *   stage-in, 1 GiB        the core's stage-in (core/transfers/stage-inputs.ts: pipelined SFTP, resumable,
 *                          SHA-256 checked on the node) into an sshd of this machine, vs `scp` to the same sshd
 *   stage-in, 10,000×4 KiB the same (tar streams, core/transfers/tar-batch.ts), vs `scp -r`
 *   terminal → core, 1 GiB the upload of `swm submit --input` (binary frames on the terminal's WebSocket,
 *                          SHA-256 checked by the core) into a running swm-core, vs the same file over plain
 *                          mutual TLS on loopback between two processes (bench/tls-peer.ts)
 *   stage-in on the local gate: the same 1 GiB job then staged to its node (the real system, end to end)
 *
 * `--only upload --big-mib 256 --rounds 1` runs the upload rows alone in a few seconds.
 * OpenSSH's sshd is the node of a cloud partition; both sides reach it on loopback with key authentication.
 * Each figure is the median of several rounds, ours and the peer's interleaved (this machine is shared, so
 * rounds vary); CPU seconds are printed too (client and server side), the steadier comparison.
 */
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { homedir, loadavg, tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, InvalidArgumentError, Option } from 'commander';
import { NodeSession } from '../core/nodes/node-session.js';
import { stageInputs } from '../core/transfers/stage-inputs.js';
import { connectTerminal, killGates, startCoreProcess, waitForJob } from '../test/harness/core.js';
import { makeTestSpool } from '../test/harness/spool.js';
import type { PartitionNode } from '../terminal-protocol/common.js';
import type { InputFile } from '../terminal-protocol/terminal-methods.js';
import { uploadInputs } from '../terminal/upload.js';
import { runTeardown } from './cleanup.js';
import { ensureOpenSsh, startOpenSsh, type OpenSshPeer } from './openssh-peer.js';
import { cpuSeconds, fmtMiB, fmtRatio, peakRssKiB, printSection } from './stats.js';
import { sendOverTls, startTlsPeer } from './tls-peer.js';

const CPU_PROFILER = fileURLToPath(new URL('./cpu-profile.js', import.meta.url));

const positive = (value: string): number => {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError('a positive integer is needed');
  return n;
};

const options = new Command('bench-transfer')
  .description('Data staging throughput: stage-in vs scp, terminal → core upload; peak RSS of the core.')
  .option('--big-mib <n>', 'size of the big file in MiB', positive, 1024)
  .option('--small-files <n>', 'how many small files', positive, 10_000)
  .option('--small-kib <n>', 'size of each small file in KiB', positive, 4)
  .option('--rounds <n>', 'rounds of each measurement (the median is reported)', positive, 3)
  .addOption(new Option('--only <part>', 'run one part: stage-in (vs scp) or upload (terminal → core, vs TLS)').choices(['stage-in', 'upload']))
  .option('--cpu-prof <dir>', "write V8 CPU profiles (.cpuprofile) of the core and of this process (the terminal's side) into this directory")
  .parse()
  .opts<{ bigMib: number; smallFiles: number; smallKib: number; rounds: number; only?: 'stage-in' | 'upload'; cpuProf?: string }>();

const MIB = 1024 * 1024;

/** What this run started, stopped newest first at the end, and also when the run fails or is interrupted. */
const { cleanup, stopAll: stopEverything } = runTeardown();

/** CPU seconds from /proc/<pid>/stat: its own, and that of the children it has reaped (sshd's sessions, scp's ssh). */
function cpuOf(pid: number, which: 'self-and-children' | 'children'): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number);
  const children = f[13]! + f[14]!;
  return (which === 'children' ? children : f[11]! + f[12]! + children) / 100;
}
const cpuWithChildren = (pid: number): number => cpuOf(pid, 'self-and-children');

const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

interface Sample {
  wallSec: number;
  clientCpu: number;
  serverCpu: number;
}

const medianSample = (samples: Sample[]): Sample => ({
  wallSec: median(samples.map((s) => s.wallSec)),
  clientCpu: median(samples.map((s) => s.clientCpu)),
  serverCpu: median(samples.map((s) => s.serverCpu)),
});

const describe = (s: Sample, bytes: number | null, files?: number): string =>
  `${s.wallSec.toFixed(2)} s` +
  (bytes !== null ? `  ${(bytes / MIB / s.wallSec).toFixed(0)} MiB/s` : '') +
  (files ? `  ${(files / s.wallSec).toFixed(0)} files/s` : '') +
  `  (CPU-s: client ${s.clientCpu.toFixed(2)}, server ${s.serverCpu.toFixed(2)})`;

/** Deterministic-enough content: random blocks, so that nothing compresses and misplaced blocks show. */
function makeBigFile(path: string, bytes: number): InputFile {
  const block = randomBytes(MIB);
  const hash = createHash('sha256');
  const fd = openSync(path, 'w');
  for (let done = 0; done < bytes; done += MIB) {
    const part = block.subarray(0, Math.min(MIB, bytes - done));
    block.writeUInt32BE(done / MIB, 0);
    writeSync(fd, part);
    hash.update(part);
  }
  closeSync(fd);
  return { path: 'big.bin', size: bytes, sha256: hash.digest('hex') };
}

function makeSmallFiles(root: string, count: number, bytes: number): InputFile[] {
  const files: InputFile[] = [];
  for (let i = 0; i < count; i++) {
    const dir = `many/d${String(Math.floor(i / 100)).padStart(3, '0')}`;
    if (i % 100 === 0) mkdirSync(join(root, dir), { recursive: true });
    const content = randomBytes(bytes);
    const path = `${dir}/f${i}.bin`;
    writeFileSync(join(root, path), content);
    files.push({ path, size: bytes, sha256: createHash('sha256').update(content).digest('hex') });
  }
  return files;
}

/** One stage-in by the core's code into the sshd peer (a fresh SSH connection each time, as a job's). */
async function stageIntoPeer(peer: OpenSshPeer, node: PartitionNode, localRoot: string, files: InputFile[], target: string, agent = true): Promise<Sample> {
  rmSync(target, { recursive: true, force: true });
  // The agent works under the node user's home, as on a node: its path relative to there.
  const remote = agent ? relative(homedir(), target) : target;
  const server0 = cpuWithChildren(peer.pid);
  const client0 = process.cpuUsage();
  const started = process.hrtime.bigint();
  const session = await NodeSession.connect(node, peer.clientKey);
  try {
    const result = await stageInputs(session, localRoot, remote, files, { agent });
    if (result.verified !== 'sha256') throw new Error('the peer could not check SHA-256');
    if (result.agent !== agent) throw new Error(agent ? 'the peer could not run the node agent (no Node 18+ on its PATH?)' : 'the agent was used');
  } finally {
    session.close();
  }
  const wallSec = Number(process.hrtime.bigint() - started) / 1e9;
  const cpu = process.cpuUsage(client0);
  await new Promise((r) => setTimeout(r, 200)); // let sshd reap its session before reading its children's time
  return { wallSec, clientCpu: (cpu.user + cpu.system) / 1e6, serverCpu: cpuWithChildren(peer.pid) - server0 };
}

/** `scp` (its ssh child included) into the same sshd. */
async function scpIntoPeer(peer: OpenSshPeer, sources: string[], target: string, extra: string[] = []): Promise<Sample> {
  rmSync(target, { recursive: true, force: true });
  mkdirSync(target, { recursive: true });
  const server0 = cpuWithChildren(peer.pid);
  const children0 = cpuOf(process.pid, 'children');
  const started = process.hrtime.bigint();
  const run = spawnSync('scp', ['-q', ...extra, ...peer.clientOptions('-P'), ...sources, `${peer.user}@127.0.0.1:${target}/`], { stdio: ['ignore', 'ignore', 'pipe'] });
  const wallSec = Number(process.hrtime.bigint() - started) / 1e9;
  if (run.status !== 0) throw new Error(`scp failed: ${run.stderr.toString()}`);
  await new Promise((r) => setTimeout(r, 200));
  return { wallSec, clientCpu: cpuOf(process.pid, 'children') - children0, serverCpu: cpuWithChildren(peer.pid) - server0 };
}

/** Stage-in by the core's code into OpenSSH's sshd, vs scp: one big file, then many small ones. */
async function benchStageIn(src: string, big: InputFile, small: InputFile[]): Promise<void> {
  const bigBytes = big.size;
  const missing = ensureOpenSsh();
  if (missing) throw new Error(`cannot run: ${missing}`);
  const peer = await startOpenSsh();
  const stopPeer = cleanup(() => peer.stop());
  const node: PartitionNode = {
    name: 'openssh-peer',
    role: 'head',
    publicIp: '127.0.0.1',
    privateIp: '127.0.0.1',
    sshPort: peer.port,
    sshUser: peer.user,
    hostKeyFingerprint: peer.hostKeyFingerprint,
  };
  // Under the home directory: where a node agent may write (it refuses paths outside the node user's home).
  const dataRoot = mkdtempSync(join(homedir(), '.skyport-bench-'));
  const removeData = cleanup(async () => rmSync(dataRoot, { recursive: true, force: true }));
  const into = (name: string) => join(dataRoot, name);

  const ours1: Sample[] = [];
  const oursBare: Sample[] = [];
  const scp1: Sample[] = [];
  const scpGcm: Sample[] = [];
  const oursMany: Sample[] = [];
  const oursManyBare: Sample[] = [];
  const scpMany: Sample[] = [];
  for (let round = 0; round < options.rounds; round++) {
    ours1.push(await stageIntoPeer(peer, node, src, [big], into('ours-big')));
    oursBare.push(await stageIntoPeer(peer, node, src, [big], into('ours-big'), false));
    rmSync(into('ours-big'), { recursive: true, force: true });
    scp1.push(await scpIntoPeer(peer, [join(src, 'big.bin')], into('scp-big')));
    scpGcm.push(await scpIntoPeer(peer, [join(src, 'big.bin')], into('scp-big'), ['-c', 'aes128-gcm@openssh.com']));
    rmSync(into('scp-big'), { recursive: true, force: true });
    oursMany.push(await stageIntoPeer(peer, node, src, small, into('ours-many')));
    rmSync(into('ours-many'), { recursive: true, force: true });
    oursManyBare.push(await stageIntoPeer(peer, node, src, small, into('ours-many'), false));
    scpMany.push(await scpIntoPeer(peer, ['-r', join(src, 'many')], into('scp-many')));
    rmSync(into('ours-many'), { recursive: true, force: true });
    rmSync(into('scp-many'), { recursive: true, force: true });
  }
  await removeData();
  await stopPeer();

  const o1 = medianSample(ours1);
  const b1 = medianSample(oursBare);
  const s1 = medianSample(scp1);
  const g1 = medianSample(scpGcm);
  const om = medianSample(oursMany);
  const mb = medianSample(oursManyBare);
  const sm = medianSample(scpMany);
  printSection(`stage-in, one ${options.bigMib} MiB file, core → sshd on loopback (median of ${options.rounds})`, [
    ['swm stage-in through the node agent (aes128-gcm, SHA-256 computed by the agent as the bytes arrive)', describe(o1, bigBytes)],
    ['the same without the agent (SFTP, SHA-256 by openssl on the node as the file grows)', describe(b1, bigBytes)],
    ['scp (OpenSSH defaults: chacha20-poly1305)', describe(s1, bigBytes)],
    ['scp -c aes128-gcm@openssh.com', describe(g1, bigBytes)],
    ['ratio vs scp (throughput; goal ≥ 1.0x)', `${fmtRatio(s1.wallSec, o1.wallSec)}   (vs scp with aes128-gcm: ${fmtRatio(g1.wallSec, o1.wallSec)})`],
  ]);
  printSection(`stage-in, ${options.smallFiles} files of ${options.smallKib} KiB in 100 directories (median of ${options.rounds})`, [
    ['swm stage-in through the node agent (tar streams, each file hashed as written)', describe(om, options.smallFiles * options.smallKib * 1024, options.smallFiles)],
    ['the same without the agent (tar streams into GNU tar, then openssl)', describe(mb, options.smallFiles * options.smallKib * 1024, options.smallFiles)],
    ['scp -r', describe(sm, options.smallFiles * options.smallKib * 1024, options.smallFiles)],
    ['ratio vs scp -r (goal ≥ 3x)', fmtRatio(sm.wallSec, om.wallSec)],
  ]);
}

/**
 * The real system: a core and its local gate, a terminal uploading the big file (as `swm submit --input`
 * does), interleaved with the same file over plain TLS between two processes; then, unless only the upload
 * is measured, the job's stage-in to its node.
 */
async function benchUpload(src: string, big: InputFile, work: string): Promise<void> {
  const bigBytes = big.size;
  const uploadOnly = options.only === 'upload';
  const spool = await makeTestSpool();
  const stopSpool = cleanup(async () => {
    killGates(spool);
    spool.cleanup();
  });
  const profiling = options.cpuProf ? { NODE_OPTIONS: `--import=${CPU_PROFILER}`, SKYPORT_CPU_PROFILE_DIR: resolve(options.cpuProf) } : {};
  const core = await startCoreProcess(spool, { SWM_LOG_LEVEL: 'warn', ...profiling });
  const stopCore = cleanup(async () => {
    // SIGTERM, so that a profiled core writes its profile as it exits.
    if (options.cpuProf) await core.kill('SIGTERM');
    await core.kill('SIGKILL');
  });
  const tlsOut = join(work, 'tls-peer.bin');
  const tls = await startTlsPeer(spool.spoolDir, tlsOut);
  const stopTls = cleanup(() => tls.stop());
  const wire = await startTlsPeer(spool.spoolDir, null);
  const stopWire = cleanup(() => wire.stop());
  const terminal = await connectTerminal(spool.homeDir);
  const uploads: Sample[] = [];
  const peers: Sample[] = [];
  const wires: Sample[] = [];
  /** The file over plain TLS into `to`, with the CPU time of both sides. */
  const overTls = async (to: typeof tls): Promise<Sample> => {
    const server0 = cpuSeconds(to.pid) ?? 0;
    const client0 = process.cpuUsage();
    const started = process.hrtime.bigint();
    await sendOverTls(to.port, spool.homeDir, join(src, 'big.bin'));
    const cpu = process.cpuUsage(client0);
    return { wallSec: Number(process.hrtime.bigint() - started) / 1e9, clientCpu: (cpu.user + cpu.system) / 1e6, serverCpu: (cpuSeconds(to.pid) ?? 0) - server0 };
  };
  const commits: number[] = [];
  const stageIns: number[] = [];
  for (let round = 0; round < options.rounds; round++) {
    wires.push(await overTls(wire));
    peers.push(await overTls(tls));
    rmSync(tlsOut, { force: true });

    const { id } = await terminal.call('job.submit', { script: '#!/bin/sh\n#SWM name bench-transfer\ntrue\n', inputs: [big] });
    const core0 = cpuSeconds(core.child.pid!) ?? 0;
    const client0 = process.cpuUsage();
    const started = process.hrtime.bigint();
    await uploadInputs(terminal, id, [{ ...big, absolute: join(src, 'big.bin') }], { progress: false });
    const uploaded = process.hrtime.bigint();
    const cpu = process.cpuUsage(client0);
    uploads.push({ wallSec: Number(uploaded - started) / 1e9, clientCpu: (cpu.user + cpu.system) / 1e6, serverCpu: (cpuSeconds(core.child.pid!) ?? 0) - core0 });
    if (uploadOnly) {
      await terminal.call('job.cancel', { id });
      continue;
    }
    // Stage-in on the local gate, timed from the job's own events (as a user watching `swm show` would).
    let stageStart = 0;
    let stageEnd = 0;
    const watching = waitForJob(
      terminal,
      id,
      (job) => {
        if (job.state === 'T' && !stageStart) stageStart = Date.now();
        if (job.state === 'R' && !stageEnd) stageEnd = Date.now();
        return ['F', 'E', 'C'].includes(job.state);
      },
      600_000,
    );
    const committing = process.hrtime.bigint();
    await terminal.call('job.input.commit', { id }, { timeoutMs: 600_000 });
    commits.push(Number(process.hrtime.bigint() - committing) / 1e9);
    const job = await watching;
    if (job.state !== 'F') throw new Error(`the benchmark job ended ${job.state}: ${job.state_details}`);
    stageIns.push((stageEnd - stageStart) / 1000);
  }
  const rss = peakRssKiB(core.child.pid!);
  await terminal.close();
  await stopWire();
  await stopTls();
  await stopCore();
  await stopSpool();

  const up = medianSample(uploads);
  const peer = medianSample(peers);
  const bare = medianSample(wires);
  const sides = (text: string) => text.replace('client', 'terminal').replace('server', 'core');
  const peerSides = (text: string) => text.replace('client', 'sender').replace('server', 'receiver');
  printSection(`terminal → core upload, ${options.bigMib} MiB, on loopback (median of ${options.rounds}, interleaved)`, [
    ['swm upload (binary frames on the WebSocket, SHA-256 checked by the core)', sides(describe(up, bigBytes))],
    ['peer: TLS on loopback, same certificates, file → file, two processes', peerSides(describe(peer, bigBytes))],
    ['peer: TLS on loopback, file → discarded (the wire alone)', peerSides(describe(bare, bigBytes))],
    ['ratio vs TLS file → file (throughput)', `${fmtRatio(peer.wallSec, up.wallSec)}   (vs the wire alone: ${fmtRatio(bare.wallSec, up.wallSec)})`],
    ['goal', '≥ 500 MiB/s'],
    ...(uploadOnly
      ? []
      : ([
          ['then job.input.commit (fsync; the hash is already known)', `${median(commits).toFixed(2)} s`],
          [`then stage-in to the local gate's node (job events T → R)`, `${median(stageIns).toFixed(2)} s  ${(options.bigMib / median(stageIns)).toFixed(0)} MiB/s`],
        ] as [string, string][])),
    ['peak RSS of swm-core over the whole run', fmtMiB(rss)],
  ]);
}

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'skyport-bench-transfer-'));
  const removeWork = cleanup(async () => rmSync(work, { recursive: true, force: true }));
  const bigBytes = options.bigMib * MIB;
  const stageIn = options.only !== 'upload';
  process.stdout.write(
    `bench-transfer: ${options.bigMib} MiB file` +
      (stageIn ? `, ${options.smallFiles} × ${options.smallKib} KiB files` : '') +
      `, ${options.rounds} rounds, load ${loadavg()[0]!.toFixed(2)}\n`,
  );
  if (options.cpuProf) {
    // This process is the terminal's side of the upload: profile it too (bench-<pid>.cpuprofile).
    process.env.SKYPORT_CPU_PROFILE_DIR = resolve(options.cpuProf);
    await import(CPU_PROFILER);
  }
  const src = join(work, 'src');
  mkdirSync(src);
  const big = makeBigFile(join(src, 'big.bin'), bigBytes);
  if (stageIn) await benchStageIn(src, big, makeSmallFiles(src, options.smallFiles, options.smallKib * 1024));
  if (options.only !== 'stage-in') await benchUpload(src, big, work);
  await removeWork();
}

main().then(
  () => stopEverything().then(() => process.exit(0)),
  async (error: Error) => {
    await stopEverything();
    process.stderr.write(`bench-transfer: ${error.stack ?? error.message}\n`);
    process.exit(1);
  },
);
