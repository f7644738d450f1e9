import { expect } from 'chai';
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCode } from '../terminal-protocol/errors.js';
import { adminBundle, issueFromSpool, type ClientBundle } from './harness/certs.js';
import { isFinal, startFixture, waitForJob, type CoreFixture } from './harness/core.js';
import { multipart, rest, type RestRequest, type RestResponse } from './harness/rest-client.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const MB16 = 16 * 1024 * 1024;

const isResourceList = (value: unknown): boolean =>
  Array.isArray(value) && value.every((r) => typeof r?.name === 'string' && Number.isInteger(r?.count));
const stringOrNull = (value: unknown): boolean => value === null || typeof value === 'string';
const intOrNull = (value: unknown): boolean => value === null || Number.isInteger(value);
const stringList = (value: unknown): boolean => Array.isArray(value) && value.every((s) => typeof s === 'string');

/** The Job JSON fields of the original Sky Port, with the type each must have. */
const jobFields: Record<string, (value: unknown) => boolean> = {
  id: (v) => typeof v === 'string' && UUID.test(v),
  name: (v) => typeof v === 'string',
  state: (v) => typeof v === 'string' && 'QWTRFEC'.includes(v) && v.length === 1,
  state_details: (v) => typeof v === 'string',
  submit_time: (v) => typeof v === 'string' && !Number.isNaN(Date.parse(v)),
  start_time: stringOrNull,
  end_time: stringOrNull,
  duration: (v) => Number.isInteger(v),
  exitcode: intOrNull,
  signal: intOrNull,
  node_names: stringList,
  node_ips: stringList,
  remote_id: stringOrNull,
  flavor_id: stringOrNull,
  request: isResourceList,
  resources: isResourceList,
  comment: (v) => typeof v === 'string',
};

function expectJob(job: Record<string, unknown>): void {
  for (const [field, ok] of Object.entries(jobFields)) {
    expect(job, `field ${field}`).to.have.property(field);
    expect(ok(job[field]), `field ${field} = ${JSON.stringify(job[field])}`).to.equal(true);
  }
}

/** The protocol error code of an error reply. */
const errorCode = (r: RestResponse): number => r.json<{ error: { code: number } }>().error.code;

describe('REST user API (real swm-core)', function () {
  this.timeout(60_000);
  let f: CoreFixture;
  let inputRoot: string;
  let admin: ClientBundle;
  let alice: ClientBundle;
  let bob: ClientBundle;

  const as = (who: Partial<ClientBundle> & Pick<ClientBundle, 'caPem'>, path: string, options?: RestRequest) => rest(f.core.port, who, path, options);
  const submitRaw = async (who: ClientBundle, script: string): Promise<string> => {
    const r = await as(who, '/user/job', { method: 'POST', headers: { 'content-type': 'text/plain' }, body: script });
    expect(r.status, r.text).to.equal(200);
    return r.text.split('\n')[0]!;
  };
  const finished = (id: string) => waitForJob(f.admin, id, isFinal);
  const running = (id: string) => waitForJob(f.admin, id, (j) => j.state === 'R' && j.state_details === 'running');

  before(async () => {
    inputRoot = mkdtempSync(join(tmpdir(), 'skyport-inputs-'));
    f = await startFixture({ configure: (config) => void (config.compat.inputRoots = [inputRoot]) });
    admin = adminBundle(f.spool);
    alice = await f.admin.call('admin.user.add', { name: 'alice' });
    bob = await f.admin.call('admin.user.add', { name: 'bob' });
  });
  after(async () => {
    await f?.stop();
    rmSync(inputRoot, { recursive: true, force: true });
  });

  describe('security', () => {
    it('refuses a client without a certificate at the TLS handshake', async () => {
      const error = await as({ caPem: alice.caPem }, '/user').then(
        () => null,
        (e: Error) => e,
      );
      expect(error, 'the request was answered').to.be.instanceOf(Error);
    });

    it('answers 403 to a gate certificate of the same CA', async () => {
      const gate = issueFromSpool(f.spool, { role: 'gate', name: 'intruder' });
      const r = await as(gate, '/user/job');
      expect(r.status).to.equal(403);
      expect(errorCode(r)).to.equal(ErrorCode.Forbidden);
    });
  });

  it('GET /user answers the API version', async () => {
    const r = await as(alice, '/user');
    expect(r.status).to.equal(200);
    expect(r.headers['content-type']).to.equal('application/json');
    expect(r.json()).to.deep.equal({ api_version: 1 });
  });

  it('answers 404 for an unknown path and 405 with Allow for a wrong method', async () => {
    const missing = await as(alice, '/user/nothing');
    expect(missing.status).to.equal(404);
    expect(errorCode(missing)).to.equal(ErrorCode.NotFound);
    const wrong = await as(alice, '/user/flavor', { method: 'DELETE' });
    expect(wrong.status).to.equal(405);
    expect(wrong.headers.allow).to.equal('GET');
    const put = await as(alice, `/user/job/${crypto.randomUUID()}`, { method: 'PUT' });
    expect(put.status).to.equal(405);
    expect(put.headers.allow?.split(', ').sort()).to.deep.equal(['DELETE', 'GET', 'PATCH']);
  });

  describe('submit', () => {
    it('takes a raw body, answers the job id as the first line, and serves the job, its stdout and its stderr', async () => {
      const r = await as(alice, '/user/job', {
        method: 'POST',
        headers: { 'content-type': 'application/octet-stream' },
        body: '#!/bin/sh\n#SWM name raw-job\n#SWM comment from REST\n#SWM frobnicate yes\necho "out $SWM_JOB_ID"\necho err >&2\n',
      });
      expect(r.status).to.equal(200);
      expect(r.headers['content-type']).to.match(/^text\/plain/);
      const [id, warning] = r.text.split('\n');
      expect(id).to.match(UUID);
      expect(warning).to.match(/warning: line 4: unknown directive "frobnicate"/);
      expect((await finished(id!)).state).to.equal('F');

      const got = await as(alice, `/user/job/${id}`);
      expect(got.status).to.equal(200);
      const job = got.json<Record<string, unknown>>();
      expectJob(job);
      expect(job).to.include({ id, name: 'raw-job', state: 'F', exitcode: 0, comment: 'from REST' });
      expect(job.node_names).to.have.length(1);

      const stdout = await as(alice, `/user/job/${id}/stdout`);
      expect(stdout.status).to.equal(200);
      expect(stdout.headers['content-type']).to.match(/^text\/plain/);
      expect(stdout.text).to.equal(`out ${id}\n`);
      expect((await as(alice, `/user/job/${id}/stderr`)).text).to.equal('err\n');
    });

    it('takes script_content from a multipart form, as a field and as a file part, and from a URL-encoded form', async () => {
      const field = multipart([{ name: 'script_content', value: '#!/bin/sh\n#SWM name as-field\ntrue\n' }]);
      const file = multipart([
        { name: 'other', value: 'ignored' },
        { name: 'script_content', value: '#!/bin/sh\n#SWM name as-file\ntrue\n', filename: 'job.sh' },
      ]);
      const urlencoded = { body: new URLSearchParams({ script_content: '#!/bin/sh\n#SWM name as-urlencoded\ntrue\n' }).toString(), contentType: 'application/x-www-form-urlencoded' };
      for (const [name, form] of [
        ['as-field', field],
        ['as-file', file],
        ['as-urlencoded', urlencoded],
      ] as const) {
        const r = await as(alice, '/user/job', { method: 'POST', headers: { 'content-type': form.contentType }, body: form.body });
        expect(r.status, r.text).to.equal(200);
        const id = r.text.split('\n')[0]!;
        expect(id).to.match(UUID);
        expect((await as(alice, `/user/job/${id}`)).json<{ name: string }>().name).to.equal(name);
        await finished(id);
      }
    });

    it('answers 400 for an empty script, a malformed directive, an unknown remote and a form without script_content', async () => {
      const cases: [string, RestRequest, number][] = [
        ['empty', { body: '' }, ErrorCode.InvalidScript],
        ['malformed', { body: '#!/bin/sh\n#SWM nodes many\n' }, ErrorCode.InvalidScript],
        ['unknown remote', { body: '#!/bin/sh\n#SWM remote nowhere\ntrue\n' }, ErrorCode.Unschedulable],
        ['no field', (() => { const m = multipart([{ name: 'script', value: 'true' }]); return { body: m.body, headers: { 'content-type': m.contentType } }; })(), ErrorCode.InvalidParams],
      ];
      for (const [what, request, code] of cases) {
        const r = await as(alice, '/user/job', { method: 'POST', ...request });
        expect(r.status, what).to.equal(400);
        expect(errorCode(r), what).to.equal(code);
      }
      const malformed = await as(alice, '/user/job', { method: 'POST', body: '#!/bin/sh\n#SWM nodes many\n' });
      expect(malformed.json<{ error: { message: string } }>().error.message).to.contain('line 2');
    });

    it('refuses a script over 16 MB with 413, raw or in a form, and stays usable', async () => {
      const big = '#!/bin/sh\n' + '#'.repeat(MB16 - 10) + '\n';
      expect(Buffer.byteLength(big)).to.equal(MB16 + 1);
      const raw = await as(alice, '/user/job', { method: 'POST', body: big });
      expect(raw.status).to.equal(413);
      expect(errorCode(raw)).to.equal(ErrorCode.TooLarge);
      const form = multipart([{ name: 'script_content', value: big, filename: 'big.sh' }]);
      const multi = await as(alice, '/user/job', { method: 'POST', headers: { 'content-type': form.contentType }, body: form.body });
      expect(multi.status).to.equal(413);
      expect((await as(alice, '/user')).status).to.equal(200);
      const list = await as(alice, '/user/job');
      expect(list.json<unknown[]>().every((j) => (j as { name: string }).name !== 'big')).to.equal(true);
    });
  });

  describe('input files on the core host (compat.inputRoots)', () => {
    it('copies a file under an input root into the job before it is queued', async () => {
      writeFileSync(join(inputRoot, 'data.txt'), 'host data\n');
      const id = await submitRaw(alice, `#!/bin/sh\n#SWM input-files ${inputRoot}/data.txt\ncat data.txt\n`);
      expect((await finished(id)).state).to.equal('F');
      expect((await as(alice, `/user/job/${id}/stdout`)).text).to.equal('host data\n');
    });

    it('refuses a path outside the input roots, a link out of them, and a relative path, naming the path and the key', async () => {
      symlinkSync('/etc/hostname', join(inputRoot, 'escape'));
      for (const path of ['/etc/hostname', `${inputRoot}/escape`, `${inputRoot}/../etc/hostname`]) {
        const r = await as(alice, '/user/job', { method: 'POST', body: `#!/bin/sh\n#SWM input-files ${path}\ntrue\n` });
        expect(r.status, path).to.equal(400);
        const message = r.json<{ error: { message: string } }>().error.message;
        expect(message, path).to.contain('compat.inputRoots');
      }
      const relative = await as(alice, '/user/job', { method: 'POST', body: '#!/bin/sh\n#SWM input-files data.txt\ntrue\n' });
      expect(relative.status).to.equal(400);
      expect(relative.json<{ error: { message: string } }>().error.message).to.contain('"data.txt" is relative');
    });

    it('takes an empty input-files line (as spawner templates render no files) as no files', async () => {
      const id = await submitRaw(alice, '#!/bin/sh\n#SWM input-files \necho ok\n');
      const job = await finished(id);
      expect(job.state, job.state_details).to.equal('F');
    });
  });

  describe('jobs', () => {
    let aliceJob: string;
    before(async () => {
      aliceJob = await submitRaw(alice, '#!/bin/sh\n#SWM name alice-job\necho alice\n');
      await finished(aliceJob);
    });

    it("lists the caller's jobs, newest first, honouring limit", async () => {
      const all = await as(alice, '/user/job');
      expect(all.status).to.equal(200);
      const jobs = all.json<Record<string, unknown>[]>();
      expect(jobs.length).to.be.greaterThan(2);
      jobs.forEach(expectJob);
      expect(jobs.map((j) => j.id)).to.include(aliceJob);
      const one = (await as(alice, '/user/job?limit=1')).json<Record<string, unknown>[]>();
      expect(one).to.have.length(1);
      expect(one[0]!.id).to.equal(jobs[0]!.id);
      expect((await as(alice, '/user/job?limit=lots')).status).to.equal(400);
    });

    it("hides another user's job: 404 on every route, absent from the list", async () => {
      for (const [method, path] of [
        ['GET', ''],
        ['GET', '/stdout'],
        ['GET', '/stderr'],
        ['DELETE', ''],
        ['PATCH', ''],
      ] as const) {
        const r = await as(bob, `/user/job/${aliceJob}${path}`, { method, headers: { modification: 'requeue' } });
        expect(r.status, `${method} ${path}`).to.equal(404);
        expect(errorCode(r)).to.equal(ErrorCode.NotFound);
      }
      expect((await as(bob, '/user/job')).json<{ id: string }[]>().map((j) => j.id)).not.to.include(aliceJob);
      expect((await as(admin, `/user/job/${aliceJob}`)).status, 'an admin sees any job').to.equal(200);
    });

    it('answers 404 for an unknown job and 400 for an id that is not a UUID', async () => {
      expect((await as(alice, `/user/job/${crypto.randomUUID()}`)).status).to.equal(404);
      expect((await as(alice, `/user/job/${crypto.randomUUID()}/stdout`)).status).to.equal(404);
      const bad = await as(alice, '/user/job/not-a-uuid');
      expect(bad.status).to.equal(400);
      expect(errorCode(bad)).to.equal(ErrorCode.InvalidParams);
    });

    it('requeues with PATCH only with the header "modification: requeue"', async () => {
      const without = await as(alice, `/user/job/${aliceJob}`, { method: 'PATCH' });
      expect(without.status).to.equal(400);
      expect(without.json<{ error: { message: string } }>().error.message).to.contain('modification: requeue');
      const other = await as(alice, `/user/job/${aliceJob}`, { method: 'PATCH', headers: { modification: 'resize' } });
      expect(other.status).to.equal(400);
      expect((await as(alice, `/user/job/${aliceJob}`)).json<{ state: string }>().state, 'a refused PATCH changes nothing').to.equal('F');

      const r = await as(alice, `/user/job/${aliceJob}`, { method: 'PATCH', headers: { modification: 'requeue' } });
      expect(r.status).to.equal(200);
      expect(r.text).to.contain('requeued');
      expect((await as(alice, `/user/job/${aliceJob}`)).json<{ state: string }>().state).not.to.equal('F');
      expect((await finished(aliceJob)).state).to.equal('F');
    });

    it('cancels a running job with DELETE (200, text), which then ends C; a second DELETE is 409', async () => {
      const id = await submitRaw(alice, '#!/bin/sh\nexec sleep 60\n');
      await running(id);
      const r = await as(alice, `/user/job/${id}`, { method: 'DELETE' });
      expect(r.status).to.equal(200);
      expect(r.headers['content-type']).to.match(/^text\/plain/);
      expect(r.text).to.contain(id);
      expect((await finished(id)).state).to.equal('C');
      const again = await as(alice, `/user/job/${id}`, { method: 'DELETE' });
      expect(again.status).to.equal(409);
      expect(errorCode(again)).to.equal(ErrorCode.Conflict);
    });
  });

  describe('catalog', () => {
    it('lists flavors with id, name, remote_id, resources and price, honouring limit', async () => {
      const r = await as(alice, '/user/flavor?limit=1000');
      expect(r.status).to.equal(200);
      const flavors = r.json<Record<string, unknown>[]>();
      expect(flavors.length).to.be.greaterThan(1);
      for (const flavor of flavors) {
        expect(flavor).to.have.all.keys('id', 'name', 'remote_id', 'resources', 'price');
        expect(flavor.id).to.be.a('string');
        expect(flavor.remote_id).to.be.a('string');
        expect(flavor.price).to.be.a('number');
        expect(isResourceList(flavor.resources)).to.equal(true);
        expect((flavor.resources as { name: string }[]).map((x) => x.name)).to.include.members(['cpus', 'mem']);
      }
      expect((await as(alice, '/user/flavor?limit=1')).json<unknown[]>()).to.have.length(1);
      expect((await as(alice, '/user/flavor?limit=-1')).status).to.equal(400);
    });

    it('lists images as an array (the local gate offers none: their shape is checked in openapi.test.ts)', async () => {
      const r = await as(alice, '/user/image?limit=1000');
      expect(r.status).to.equal(200);
      expect(r.json()).to.be.an('array');
      expect((await as(alice, '/user/image?limit=x')).status).to.equal(400);
    });

    it('lists remotes with the reference fields, the gate as server and port', async () => {
      const r = await as(alice, '/user/remote?limit=10');
      expect(r.status).to.equal(200);
      const remotes = r.json<Record<string, unknown>[]>();
      expect(remotes.length).to.be.greaterThan(0);
      for (const remote of remotes)
        expect(remote).to.have.all.keys('id', 'name', 'account_id', 'server', 'port', 'kind', 'default_image_id', 'default_flavor_id');
      const local = remotes.find((x) => x.kind === 'local')!;
      const gate = f.spool.config.gates.find((g) => g.kind === 'local')!;
      expect(local).to.include({ server: gate.host, port: gate.port });
      expect((await as(alice, '/user/remote?limit=1')).json<unknown[]>()).to.have.length(1);
    });

    it("lists the nodes of the caller's running jobs as up and busy, and none to another user", async () => {
      const id = await submitRaw(alice, '#!/bin/sh\nexec sleep 60\n');
      try {
        const job = await running(id);
        const r = await as(alice, '/user/node?limit=1000');
        expect(r.status).to.equal(200);
        const nodes = r.json<Record<string, unknown>[]>();
        const node = nodes.find((n) => n.name === job.node_names[0]);
        expect(node, JSON.stringify(nodes)).to.exist;
        expect(node).to.have.all.keys('id', 'name', 'host', 'api_port', 'state_power', 'state_alloc', 'resources', 'roles');
        expect(node).to.include({ host: job.node_ips[0], state_power: 'up', state_alloc: 'busy' });
        expect(node!.api_port).to.be.a('number');
        expect(isResourceList(node!.resources)).to.equal(true);
        expect(node!.roles).to.deep.include.members([{ id: 'head', name: 'head', comment: (node!.roles as { comment: string }[])[0]!.comment }]);
        expect((await as(bob, '/user/node')).json<{ name: string }[]>().map((n) => n.name)).not.to.include(job.node_names[0]);
        expect((await as(admin, '/user/node')).json<{ name: string }[]>().map((n) => n.name)).to.include(job.node_names[0]);
        expect((await as(alice, '/user/node?limit=0')).json<unknown[]>()).to.deep.equal([]);
      } finally {
        await as(alice, `/user/job/${id}`, { method: 'DELETE' });
        await finished(id);
      }
    });
  });
});
