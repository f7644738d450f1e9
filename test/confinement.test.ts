import { expect } from 'chai';
import { chmodSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { localNodesRoot } from '../gates/local/local-gate.js';
import { canIsolate } from '../gates/local/node-accounts.js';
import { isFinal, startFixture, waitForJob, type CoreFixture } from './harness/core.js';
import { ensureTestImage, podmanWorks } from './harness/podman-image.js';
import { readJobFile, submitJob } from './harness/submit.js';

/** A shell function that runs a command and prints `<label>: allowed` or `<label>: denied`. */
const PROBE = `probe() { label=$1; shift; if "$@" >/dev/null 2>&1; then echo "$label: allowed"; else echo "$label: denied"; fi; }`;

/** A node one-liner that exits 0 when it can open a TCP connection to 127.0.0.1:port. */
const tcpProbe = (port: number): string =>
  `node -e "require('net').connect(${port},'127.0.0.1').on('connect',()=>process.exit(0)).on('error',()=>process.exit(1))"`;

const verdicts = (stdout: string): Record<string, string> =>
  Object.fromEntries(stdout.split('\n').flatMap((line) => {
    const m = /^([a-z-]+): (allowed|denied)$/.exec(line);
    return m ? [[m[1]!, m[2]!]] : [];
  }));

describe('confinement of jobs on the local gate', function () {
  this.timeout(120_000);
  let f: CoreFixture;
  let neighbour: { id: string; secret: string };

  before(async function () {
    if (!canIsolate()) {
      console.warn('    not root: the local gate cannot give nodes accounts of their own here, so there is nothing to confine');
      this.skip();
    }
    f = await startFixture();
    // Let every account pass through the temporary directory, so that only the spool's own modes stand in the way.
    chmodSync(f.spool.dir, 0o755);
    // A job of someone else's partition, running, with a file in its working directory.
    const id = await submitJob(f.admin, '#!/bin/sh\necho secret > secret.txt\necho ready\nsleep 60\n');
    await waitForJob(f.admin, id, (j) => j.state === 'R' && j.state_details === 'running');
    const partition = (await f.admin.call('partition.list')).find((p) => p.jobId === id)!;
    const nodes = localNodesRoot(f.spool.spool.gateState('local'));
    neighbour = { id, secret: join(nodes, partition.name, `${partition.name}-0`, 'swm', id, 'secret.txt') };
    expect(existsSync(neighbour.secret), 'the neighbour\'s file is where the probe looks').to.equal(true);
  });
  after(async () => {
    if (neighbour) await f.admin.call('job.cancel', { id: neighbour.id }).catch(() => undefined);
    await f?.stop();
  });

  const gatePort = (): number => f.spool.config.gates.find((g) => g.name === 'local')!.port;

  it('a plain job cannot read the spool, the gate state or another node, nor reach the core or the gate; its own files round-trip', async () => {
    const spool = f.spool.spool;
    const script = [
      '#!/bin/sh',
      '#SWM input-files in.txt',
      '#SWM output-files out.txt',
      PROBE,
      `probe ca-key cat ${spool.ca.key}`,
      `probe spool-list ls ${spool.root}`,
      `probe gate-state cat ${join(spool.gateState('local'), 'state.json')}`,
      `probe other-node cat ${neighbour.secret}`,
      `probe nodes-list ls ${localNodesRoot(spool.gateState('local'))}`,
      `probe core-port ${tcpProbe(f.core.port)}`,
      `probe gate-port ${tcpProbe(gatePort())}`,
      'probe become-root sh -c \'[ "$(id -u)" = 0 ]\'',
      'cp in.txt out.txt',
    ].join('\n');
    const id = await submitJob(f.admin, script, [{ path: 'in.txt', content: Buffer.from('mine\n') }]);
    const job = await waitForJob(f.admin, id, isFinal);
    expect(job.state, job.state_details).to.equal('F');
    const stdout = (await f.admin.call('job.logs', { id, stream: 'stdout' })).data;
    expect(verdicts(stdout)).to.deep.equal({
      'ca-key': 'denied',
      'spool-list': 'denied',
      'gate-state': 'denied',
      'other-node': 'denied',
      'nodes-list': 'denied',
      'core-port': 'denied',
      'gate-port': 'denied',
      'become-root': 'denied',
    });
    expect((await readJobFile(f.admin, id, 'out.txt')).toString()).to.equal('mine\n');
  });

  it('a container job cannot reach the core or the gate, and its own files round-trip', async function () {
    if (!podmanWorks()) {
      console.warn('    podman is not installed: run `make test` as root on Debian to install it');
      this.skip();
    }
    const image = ensureTestImage();
    const script = [
      '#!/bin/sh',
      `#SWM container-image ${image}`,
      '#SWM input-files in.txt',
      '#SWM output-files out.txt',
      PROBE,
      `probe core-port nc -w 2 127.0.0.1 ${f.core.port}`,
      `probe gate-port nc -w 2 127.0.0.1 ${gatePort()}`,
      `probe ca-key cat ${f.spool.spool.ca.key}`,
      'cp in.txt out.txt',
    ].join('\n');
    const id = await submitJob(f.admin, script, [{ path: 'in.txt', content: Buffer.from('boxed\n') }]);
    const job = await waitForJob(f.admin, id, isFinal, 60_000);
    expect(job.state, job.state_details).to.equal('F');
    const stdout = (await f.admin.call('job.logs', { id, stream: 'stdout' })).data;
    expect(verdicts(stdout)).to.deep.equal({ 'core-port': 'denied', 'gate-port': 'denied', 'ca-key': 'denied' });
    expect((await readJobFile(f.admin, id, 'out.txt')).toString()).to.equal('boxed\n');
  });
});
