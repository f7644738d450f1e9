import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { isFinal, startFixture, waitForJob, type CoreFixture } from './harness/core.js';
import { ensureTestImage, podmanWorks } from './harness/podman-image.js';
import { readJobFile, submitJob } from './harness/submit.js';

const containerExists = (name: string): boolean =>
  spawnSync('podman', ['container', 'exists', name]).status === 0;

describe('job lifecycle in a podman container on the local gate', function () {
  this.timeout(90_000);
  let f: CoreFixture;
  let image: string;

  before(async function () {
    // CI installs podman (make test, as root on Debian); elsewhere this suite says why it did not run.
    if (!podmanWorks()) {
      console.warn('    podman is not installed: run `make test` as root on Debian to install it');
      this.skip();
    }
    image = ensureTestImage();
    f = await startFixture();
  });
  after(async () => {
    await f?.stop();
  });

  it('runs the job in the container, with its inputs and outputs in the working directory', async () => {
    const data = randomBytes(256 * 1024);
    const script = [
      '#!/bin/sh',
      `#SWM container-image ${image}`,
      '#SWM input-files in.bin',
      '#SWM output-files out.bin',
      '#SWM env GREETING=container',
      'echo "$GREETING in $(pwd)"',
      'ls /bin/busybox',
      'cp in.bin out.bin',
    ].join('\n');
    const id = await submitJob(f.admin, script, [{ path: 'in.bin', content: data }]);
    const job = await waitForJob(f.admin, id, isFinal);
    expect(job.state, job.state_details).to.equal('F');
    expect((await f.admin.call('job.logs', { id, stream: 'stdout' })).data).to.equal('container in /job\n/bin/busybox\n');
    expect((await readJobFile(f.admin, id, 'out.bin')).equals(data)).to.equal(true);
    expect(containerExists(`swm-${id}`)).to.equal(false);
    expect(await f.admin.call('partition.list')).to.deep.equal([]);
  });

  it("ends E with the container's exit code", async () => {
    const id = await submitJob(f.admin, `#!/bin/sh\n#SWM container-image ${image}\nexit 7\n`);
    const job = await waitForJob(f.admin, id, isFinal);
    expect(job.state).to.equal('E');
    expect(job.exitcode).to.equal(7);
  });

  it('cancels a running container: the container is gone and the job ends C', async () => {
    const id = await submitJob(f.admin, `#!/bin/sh\n#SWM container-image ${image}\necho up\nsleep 60\n`);
    await waitForJob(f.admin, id, (j) => j.state === 'R' && j.state_details === 'running');
    await f.admin.call('job.cancel', { id });
    const job = await waitForJob(f.admin, id, isFinal);
    expect(job.state).to.equal('C');
    expect(containerExists(`swm-${id}`)).to.equal(false);
    expect(await f.admin.call('partition.list')).to.deep.equal([]);
  });

  it('gives a reused partition the image of its next job (the nodes cannot pull)', async () => {
    const other = `${image.replace(/:[^:]+$/, '')}:other`;
    spawnSync('podman', ['tag', image, other]);
    const first = await submitJob(f.admin, `#!/bin/sh\n#SWM container-image ${image}\n#SWM keep-partition 120\necho first\n`);
    const one = await waitForJob(f.admin, first, isFinal);
    expect(one.state, one.state_details).to.equal('F');
    const second = await submitJob(f.admin, `#!/bin/sh\n#SWM container-image ${other}\n#SWM keep-partition 0\necho second\n`);
    const two = await waitForJob(f.admin, second, isFinal);
    expect(two.state, two.state_details).to.equal('F');
    expect(two.node_names, 'the same partition').to.deep.equal(one.node_names);
    expect((await f.admin.call('job.logs', { id: second, stream: 'stdout' })).data).to.equal('second\n');
    expect(await f.admin.call('partition.list')).to.deep.equal([]);
  });
});
