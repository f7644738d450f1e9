import { expect } from 'chai';
import { existsSync } from 'node:fs';
import { byRank } from '../core/nodes/node-pool.js';
import { knownHostName, knownHostsText, sshConfigText, type Peer } from '../core/nodes/inter-node-ssh.js';
import { hostfileText, placementEnv } from '../core/jobs/node-layout.js';
import { jobExitCode } from '../core/jobs/steps/run.js';
import { isFinal, startFixture, waitForJob, type CoreFixture } from './harness/core.js';
import { readJobFile, submitJob } from './harness/submit.js';

const isRoot = process.getuid?.() === 0;
const hasSsh = ['/usr/bin/ssh', '/bin/ssh', '/usr/local/bin/ssh'].some((p) => existsSync(p));

/** `KEY=value` lines of a job's output, as a map (a value may not hold a newline). */
const fields = (text: string): Record<string, string> =>
  Object.fromEntries(text.split('\n').flatMap((line) => (/^[A-Z_]+=/.test(line) ? [[line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]] : [])));

describe('multi-node placement (pure parts)', () => {
  it('ranks the head first, then the other nodes in the gate\'s order', () => {
    const nodes = [{ name: 'a', role: 'compute' }, { name: 'b', role: 'head' }, { name: 'c', role: 'compute' }];
    expect(byRank(nodes).map((n) => n.name)).to.deep.equal(['b', 'a', 'c']);
    expect(byRank([])).to.deep.equal([]);
  });

  it('takes the first non-zero exit code by rank, leaving out ranks stopped because another failed', () => {
    const end = (code: number, stoppedByPeer = false) => ({ code, stoppedByPeer });
    expect(jobExitCode([end(0), end(0), end(0)])).to.equal(0);
    expect(jobExitCode([end(0), end(3), end(5)])).to.equal(3);
    expect(jobExitCode([end(143, true), end(7), end(143, true)])).to.equal(7);
    expect(jobExitCode([end(143, true), end(0)])).to.equal(143);
  });

  it('writes the environment, the hostfile, known_hosts and ssh config of a partition', () => {
    expect(placementEnv({ rank: 2, ips: ['10.0.0.4', '10.0.0.5', '10.0.0.6'] })).to.deep.equal([
      ['SWM_NODE_RANK', '2'],
      ['SWM_NUM_NODES', '3'],
      ['SWM_NODE_IPS', '10.0.0.4\n10.0.0.5\n10.0.0.6'],
      ['SWM_HEAD_IP', '10.0.0.4'],
    ]);
    expect(hostfileText(['10.0.0.4', '10.0.0.5'])).to.equal('10.0.0.4\n10.0.0.5\n');
    expect(knownHostName('10.0.0.4', 22)).to.equal('10.0.0.4');
    expect(knownHostName('127.0.0.3', 40123)).to.equal('[127.0.0.3]:40123');
    const peers: Peer[] = [
      { name: 'p-0', address: '127.0.0.2', port: 40001, user: 'swm-node-1', hostKey: 'ssh-ed25519 AAAA0' },
      { name: 'p-1', address: '127.0.0.3', port: 40002, user: 'swm-node-1', hostKey: 'ssh-ed25519 AAAA1' },
    ];
    expect(knownHostsText(peers)).to.equal('[127.0.0.2]:40001 ssh-ed25519 AAAA0\n[127.0.0.3]:40002 ssh-ed25519 AAAA1\n');
    const config = sshConfigText(peers, '/home/n', 'p');
    expect(config).to.contain('Host 127.0.0.3 p-1\n  HostName 127.0.0.3\n  Port 40002\n  User swm-node-1\n');
    expect(config).to.contain('IdentityFile "/home/n/.ssh/id_ed25519"');
    expect(config).to.contain('StrictHostKeyChecking yes');
    // A name OpenSSH would read as a pattern or an option is left out.
    expect(sshConfigText([{ ...peers[0]!, name: 'x y*' }], '/h', 'p')).to.contain('Host 127.0.0.2\n');
  });
});

describe('multi-node jobs on the local gate (real core)', function () {
  this.timeout(120_000);
  let f: CoreFixture;

  before(async () => {
    f = await startFixture();
  });
  after(async () => {
    await f?.stop();
  });

  const finished = (id: string) => waitForJob(f.admin, id, isFinal, 90_000);
  const stdout = async (id: string) => (await f.admin.call('job.logs', { id, stream: 'stdout' })).data;

  it('tells a 3-node job its rank, the number of nodes, every node address, the head and a hostfile', async () => {
    const script = [
      '#!/bin/sh',
      '#SWM nodes 3',
      'echo "RANK=$SWM_NODE_RANK"',
      'echo "NUM=$SWM_NUM_NODES"',
      'echo "HEAD=$SWM_HEAD_IP"',
      'echo "IPS=$(printf "%s" "$SWM_NODE_IPS" | tr "\\n" " ")"',
      'echo "HOSTFILE=$(tr "\\n" " " < "$SWM_HOSTFILE")"',
    ].join('\n');
    const id = await submitJob(f.admin, script);
    const job = await finished(id);
    expect(job.state, job.state_details).to.equal('F');
    expect(job.node_names).to.have.length(3);
    const env = fields(await stdout(id));
    expect(env.RANK).to.equal('0');
    expect(env.NUM).to.equal('3');
    const ips = env.IPS!.trim().split(' ');
    expect(ips).to.have.length(3);
    expect(new Set(ips).size, 'three distinct node addresses').to.equal(3);
    expect(env.HEAD).to.equal(ips[0]);
    expect(env.HOSTFILE!.trim().split(' ')).to.deep.equal(ips);
  });

  it('runs a `run-on all` script once on every node, each with its rank and the inputs, and gathers the other ranks\' output', async () => {
    const script = [
      '#!/bin/sh',
      '#SWM nodes 3',
      '#SWM run-on all',
      '#SWM input-files data.txt',
      '#SWM output-files ranks/',
      'echo "RANK=$SWM_NODE_RANK"',
      'echo "NUM=$SWM_NUM_NODES"',
      'echo "MINE=$(sed -n "$((SWM_NODE_RANK + 1))p" "$SWM_HOSTFILE")"',
      'echo "DATA=$(cat data.txt)"',
      'echo "rank $SWM_NODE_RANK complains" >&2',
    ].join('\n');
    const id = await submitJob(f.admin, script, [{ path: 'data.txt', content: Buffer.from('shared input') }]);
    const job = await finished(id);
    expect(job.state, job.state_details).to.equal('F');
    const outputs = [
      await stdout(id),
      (await readJobFile(f.admin, id, 'ranks/1/stdout.log')).toString(),
      (await readJobFile(f.admin, id, 'ranks/2/stdout.log')).toString(),
    ].map(fields);
    expect(outputs.map((o) => o.RANK)).to.deep.equal(['0', '1', '2']);
    expect(outputs.map((o) => o.NUM)).to.deep.equal(['3', '3', '3']);
    expect(outputs.map((o) => o.DATA)).to.deep.equal(['shared input', 'shared input', 'shared input']);
    expect(new Set(outputs.map((o) => o.MINE)).size, 'each rank finds its own address in the hostfile').to.equal(3);
    expect((await readJobFile(f.admin, id, 'ranks/2/stderr.log')).toString()).to.equal('rank 2 complains\n');
    expect(await f.admin.call('partition.list')).to.deep.equal([]);
  });

  it('ends a `run-on all` job with the code of the rank that failed, stopping the others', async () => {
    const script = [
      '#!/bin/sh',
      '#SWM nodes 3',
      '#SWM run-on all',
      'if [ "$SWM_NODE_RANK" = 1 ]; then sleep 1; exit 7; fi',
      'exec sleep 60',
    ].join('\n');
    const started = Date.now();
    const id = await submitJob(f.admin, script);
    const job = await finished(id);
    expect(job.state).to.equal('E');
    expect(job.exitcode).to.equal(7);
    expect(Date.now() - started, 'the sleeping ranks were stopped').to.be.below(45_000);
  });

  it('lets a node reach another over SSH, host keys checked, with the partition\'s inter-node key', async function () {
    if (!isRoot) {
      console.log('      (skipped: node-to-node SSH on the local gate needs root, for the partition\'s shared network namespace)');
      return this.skip();
    }
    if (!hasSsh) {
      console.log('      (skipped: this machine has no OpenSSH client for the nodes)');
      return this.skip();
    }
    const script = [
      '#!/bin/sh',
      '#SWM nodes 3',
      '#SWM run-on all',
      'echo "$SWM_NODE_RANK" > my-rank',
      '[ "$SWM_NODE_RANK" = 0 ] || exit 0',
      'second=$(sed -n 2p "$SWM_HOSTFILE")',
      'third=$(sed -n 3p "$SWM_HOSTFILE")',
      // Rank 1 and 2 write their file at their own pace: ask until it is there.
      'for i in $(seq 1 50); do',
      '  one=$(ssh "$second" "cat swm/$SWM_JOB_ID/my-rank" 2>/dev/null) && [ -n "$one" ] && break',
      '  sleep 0.2',
      'done',
      'echo "VIA_SSH=$one"',
      'echo "WHERE=$(ssh "$third" pwd)"',
      'echo "SELF=$(ssh "$SWM_HEAD_IP" cat "swm/$SWM_JOB_ID/my-rank")"',
      // A host key the node does not know is refused, not trusted on first use.
      'ssh -o UserKnownHostsFile=/dev/null "$second" true 2>/dev/null; echo "UNKNOWN_KEY=$?"',
    ].join('\n');
    const id = await submitJob(f.admin, script);
    const job = await finished(id);
    const out = await stdout(id);
    expect(job.state, `${job.state_details}\n${out}\n${(await f.admin.call('job.logs', { id, stream: 'stderr' })).data}`).to.equal('F');
    const env = fields(out);
    expect(env.VIA_SSH).to.equal('1');
    expect(env.WHERE).to.match(/-2$/);
    expect(env.SELF).to.equal('0');
    expect(env.UNKNOWN_KEY).to.equal('255');
  });
});
