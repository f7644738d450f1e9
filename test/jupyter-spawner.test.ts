import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { parseJobScript } from '../core/jobs/job-script.js';
import type { ClientBundle } from './harness/certs.js';
import { DIST, startFixture, type CoreFixture } from './harness/core.js';
import { multipart, rest } from './harness/rest-client.js';
import { freePort } from './harness/spool.js';

interface SpawnerJob {
  id: string;
  state: string;
  state_details: string;
  node_ips: string[];
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The calls a JupyterHub spawner of the original Sky Port makes, played against the REST API: submit a
 * job script with `#SWM ports PORT/tcp/in`, poll the job until R, reach the notebook server at
 * node_ips[0]:PORT, stop it with DELETE. A one-line HTTP server stands in for Jupyter inside the job, on
 * a free port instead of 8888 so that nothing on this machine can answer in its place.
 */
describe('JupyterHub spawner flow over the REST API (local gate)', function () {
  this.timeout(60_000);
  let f: CoreFixture;
  let hubUser: ClientBundle;
  let port: number;
  let hubPort: number;
  let hub: Server;

  before(async () => {
    f = await startFixture();
    hubUser = await f.admin.call('admin.user.add', { name: 'hub-user' });
    port = await freePort();
    // The hub's API, which the notebook server calls back through the job's `out` port.
    hub = createServer((_request, response) => response.end('hub-ok'));
    await new Promise<void>((resolve) => hub.listen(0, '127.0.0.1', resolve));
    hubPort = (hub.address() as { port: number }).port;
  });
  after(async () => {
    await f?.stop();
    hub?.close();
  });

  const getJob = async (id: string): Promise<SpawnerJob> => {
    const r = await rest(f.core.port, hubUser, `/user/job/${id}`, { headers: { accept: 'application/json' } });
    expect(r.status, r.text).to.equal(200);
    return r.json<SpawnerJob>();
  };

  /** The spawner's loop: GET the job every `intervalMs` until `done` (this polling is what is under test). */
  const pollJob = async (id: string, done: (job: SpawnerJob) => boolean, intervalMs = 200, timeoutMs = 30_000): Promise<SpawnerJob> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const job = await getJob(id);
      if (done(job)) return job;
      if (Date.now() > deadline) expect.fail(`job ${id} still ${job.state} (${job.state_details}) after ${timeoutMs} ms`);
      await sleep(intervalMs);
    }
  };

  /** What JupyterHub does once the spawner returns (ip, port): request the server until it answers. */
  const fetchPage = async (url: string, timeoutMs = 10_000): Promise<string> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        // Each attempt with a limit of its own, as a hub's proxy does: a connection accepted while the notebook
        // server is not listening yet is reset, and a client may not hear of it.
        const response = await fetch(url, { signal: AbortSignal.timeout(2_000) });
        return await response.text();
      } catch (error) {
        if (Date.now() > deadline) throw error;
        await sleep(100);
      }
    }
  };

  it('ships examples/jupyter.sh: a valid job script that opens 8888 to the user and starts jupyter lab there', () => {
    const script = readFileSync(join(DIST, '..', 'examples', 'jupyter.sh'), 'utf8');
    const { directives, warnings } = parseJobScript(script);
    expect(warnings).to.deep.equal([]);
    expect(directives.ports).to.deep.equal([{ port: 8888, protocol: 'tcp', direction: 'in' }]);
    expect(directives.containerImage, 'the image line is an example, commented out').to.equal(undefined);
    expect(script).to.contain('##SWM container-image ');
    expect(script).to.match(/^exec jupyter lab --ip 0\.0\.0\.0 --port 8888 --no-browser$/m);
  });

  it('submits a notebook job as the original spawner renders it (empty file lists), polls it to R, reaches the server at node_ips[0] (which reached the hub), and stops it with DELETE', async () => {
    // Calls the hub through its `out` port (on the node at $SWM_PORT_<hub port>), then serves its page.
    const server = [
      `fetch('http://127.0.0.1:' + process.env.SWM_PORT_${hubPort} + '/').then((r) => r.text())`,
      `.then((hub) => require('http').createServer((q, s) => s.end('jupyter-ok ' + hub)).listen(${port}))`,
    ].join('');
    const script = [
      '#!/bin/sh',
      '#SWM name jupyter',
      '#SWM relocatable',
      `#SWM ports ${port}/tcp/in,${hubPort}/tcp/out`,
      // The original spawner's template renders its list directives empty when the user picks no files.
      '#SWM input-files ',
      '#SWM output-files ',
      `exec '${process.execPath}' -e "${server}"`,
      '',
    ].join('\n');
    // As the spawner's generated client sends it: a multipart file part named script_content.
    const form = multipart([{ name: 'script_content', value: script, filename: 'job.sh' }]);
    const submitted = await rest(f.core.port, hubUser, '/user/job', { method: 'POST', headers: { 'content-type': form.contentType }, body: form.body });
    expect(submitted.status, submitted.text).to.equal(200);
    const id = submitted.text.split('\n')[0]!.trim();

    const job = await pollJob(id, (j) => ['R', 'F', 'E', 'C'].includes(j.state));
    expect(job.state, job.state_details).to.equal('R');
    expect(job.node_ips).to.have.length(1);
    const page = await fetchPage(`http://${job.node_ips[0]}:${port}/`);
    expect(page, 'the notebook server reached the hub through its out port').to.equal('jupyter-ok hub-ok');

    const stopped = await rest(f.core.port, hubUser, `/user/job/${id}`, { method: 'DELETE' });
    expect(stopped.status, stopped.text).to.equal(200);
    // The spawner's poll(): the server is gone once the job is in none of R, W, T.
    const ended = await pollJob(id, (j) => !['Q', 'R', 'W', 'T'].includes(j.state));
    expect(ended.state, ended.state_details).to.equal('C');
    expect(await f.admin.call('partition.list')).to.deep.equal([]);
    const error = await fetch(`http://${job.node_ips[0]}:${port}/`).then(
      () => null,
      (e: Error) => e,
    );
    expect(error, 'the notebook server still answers after DELETE').to.be.instanceOf(Error);
  });
});
