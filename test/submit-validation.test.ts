import { expect } from 'chai';
import { createHash } from 'node:crypto';
import { runnerScript } from '../core/jobs/node-layout.js';
import { parseJobScript } from '../core/jobs/job-script.js';
import { notYetRun, ownJob, type JobRecord } from '../core/store/job-record.js';
import type { TerminalClient } from '../terminal-protocol/client.js';
import { ErrorCode } from '../terminal-protocol/errors.js';
import { imageReferenceProblem } from '../terminal-protocol/image-reference.js';
import { jobPathProblem } from '../terminal-protocol/path-patterns.js';
import type { InputFile } from '../terminal-protocol/terminal-methods.js';
import { adminBundle, connectAs, type ClientBundle } from './harness/certs.js';
import { startFixture, type CoreFixture } from './harness/core.js';
import { rest, type RestResponse } from './harness/rest-client.js';
import { rejection } from './harness/rpc.js';
import { freePort, unreachableGates } from './harness/spool.js';

const script = (...directives: string[]): string => ['#!/bin/sh', ...directives, 'echo hello'].join('\n') + '\n';
const EMPTY_SHA256 = createHash('sha256').update('').digest('hex');
const declared = (path: string): InputFile => ({ path, size: 0, sha256: EMPTY_SHA256 });

describe('job paths (jobPathProblem)', () => {
  it('accepts relative paths inside the job directory', () => {
    for (const path of ['a.txt', 'dir/b.csv', './c', 'out/**/*.h5', '.swmrc', 'x/.swm/y', 'n'.repeat(255)]) expect(jobPathProblem(path), path).to.equal(null);
  });

  it('tells an escape, the runner directory and a malformed name apart', () => {
    expect(jobPathProblem('/etc/passwd')?.kind).to.equal('escape');
    expect(jobPathProblem('a/../../b')?.kind).to.equal('escape');
    expect(jobPathProblem('.swm/run.sh')?.kind).to.equal('reserved');
    expect(jobPathProblem('./.swm')?.kind).to.equal('reserved');
    expect(jobPathProblem('a\0b')?.kind).to.equal('malformed');
    expect(jobPathProblem('n'.repeat(256))?.kind).to.equal('malformed');
    expect(jobPathProblem('d/'.repeat(2049))?.kind).to.equal('malformed');
    expect(jobPathProblem('./')?.kind).to.equal('malformed');
  });
});

describe('container image references (imageReferenceProblem)', () => {
  const digest = `sha256:${'ab'.repeat(32)}`;
  it('accepts [registry[:port]/]name[:tag][@digest]', () => {
    for (const ref of [
      'alpine',
      'alpine:3',
      'docker.io/library/python:3.12',
      'quay.io/jupyter/base-notebook:latest',
      'localhost/skyport-test:latest',
      'localhost:5000/team/app:1.0',
      'registry.example.org/a/b/c_d__e-f:v1.2-rc.3',
      `alpine@${digest}`,
      `ghcr.io/org/app:1@${digest}`,
      '[::1]:5000/app',
    ])
      expect(imageReferenceProblem(ref), ref).to.equal(null);
  });

  it('refuses options, blanks, control characters and what the grammar does not allow, saying why', () => {
    expect(imageReferenceProblem('--privileged')).to.include('never an option');
    expect(imageReferenceProblem('-v/:/host')).to.include('never an option');
    expect(imageReferenceProblem('alpine --privileged')).to.include('blank');
    expect(imageReferenceProblem('alpine\n')).to.include('control');
    for (const ref of ['', 'Alpine', 'alpine:', ':tag', 'a//b', 'a/-b', 'alpine@sha256:abc', 'alpine:-x', `${'a'.repeat(256)}:1`, 'a;b', '$(id)'])
      expect(imageReferenceProblem(ref), ref).to.be.a('string');
  });
});

describe('the runner script (runnerScript)', () => {
  const job = (directives: string[]): JobRecord => ({
    id: '00000000-0000-4000-8000-000000000001',
    owner: 'alice',
    name: 'job',
    state: 'T',
    stateDetails: '',
    step: 'stage-in',
    script: '',
    directives: parseJobScript(script(...directives)).directives,
    inputs: [],
    priority: 0,
    submitTime: new Date(0).toISOString(),
    ...notYetRun(),
    ...ownJob(),
    runtime: 'podman',
  });

  it('ends the options before the image ("--"), and never asks for --privileged', () => {
    for (const ports of [[], [{ port: 8888, direction: 'in' as const, nodePort: 40001 }], [{ port: 5432, direction: 'out' as const, nodePort: 40002 }]]) {
      const runner = runnerScript(job(['#SWM container-image alpine:3', '#SWM env OPT=--privileged']), 'alpine:3', ports);
      const runs = runner.split('\n').filter((line) => / run --rm /.test(line));
      expect(runs.length).to.be.greaterThan(0);
      for (const line of runs) {
        expect(line).to.match(/ -- 'alpine:3' \/bin\/sh \/job\/\.swm\/job\.sh$/);
        expect(line.split(' -- ')[0]).not.to.match(/(^|\s)--privileged(\s|$)/);
      }
    }
  });
});

describe('submit-time validation (real swm-core, WebSocket and REST)', function () {
  this.timeout(30_000);
  let f: CoreFixture;
  let alice: TerminalClient;
  let bob: TerminalClient;
  let aliceBundle: ClientBundle;
  let admin: ClientBundle;

  before(async () => {
    // Gates nobody answers: accepted jobs stay queued, so only the submit path is exercised.
    f = await startFixture({ configure: unreachableGates(await freePort()) });
    admin = adminBundle(f.spool);
    aliceBundle = await f.admin.call('admin.user.add', { name: 'alice' });
    alice = await connectAs(f.core.port, aliceBundle);
    bob = await connectAs(f.core.port, await f.admin.call('admin.user.add', { name: 'bob' }));
  });
  after(async () => {
    await alice?.close();
    await bob?.close();
    await f?.stop();
  });

  const refusedScripts: [string, string, number, string][] = [
    ['stdout at an absolute path', script('#SWM stdout /etc/cron.d/owned'), ErrorCode.InvalidScript, 'inside the job directory'],
    ['stdin escaping with ..', script('#SWM stdin ../../secure/ca/key.pem'), ErrorCode.InvalidScript, 'inside the job directory'],
    ['stderr into the runner directory', script('#SWM stderr .swm/exitcode'), ErrorCode.InvalidScript, "runner's own directory"],
    ['stdout onto the runner script', script('#SWM stdout ./.swm/run.sh'), ErrorCode.InvalidScript, "runner's own directory"],
    ['--privileged as the container image', script('#SWM container-image --privileged'), ErrorCode.InvalidScript, 'never an option'],
    ['an option after the container image', script('#SWM container-image alpine --privileged'), ErrorCode.InvalidScript, 'blank'],
    ['an option as the cloud image', script('#SWM cloud-image --privileged'), ErrorCode.InvalidScript, 'cloud-image'],
    ['an input in the runner directory', script('#SWM input-files .swm/run.sh'), ErrorCode.InvalidScript, "runner's own directory"],
    ['an input name with a NUL byte', script('#SWM input-files a\0b'), ErrorCode.InvalidScript, 'NUL byte'],
    ['an input name over 255 bytes', script(`#SWM input-files ${'n'.repeat(256)}`), ErrorCode.InvalidScript, '255 bytes'],
    ['a priority above the default', script('#SWM priority 999999'), ErrorCode.Forbidden, 'admins only'],
    ['a priority of 1', script('#SWM priority 1'), ErrorCode.Forbidden, 'admins only'],
  ];
  for (const [what, text, code, mentions] of refusedScripts) {
    it(`refuses ${what} (code ${code})`, async () => {
      const error = await rejection(alice.call('job.submit', { script: text }));
      expect(error.code, error.message).to.equal(code);
      expect(error.message).to.include(mentions);
    });
  }

  const refusedInputs: [string, string, number, string][] = [
    ['an input in the runner directory', '.swm/run.sh', ErrorCode.PathEscape, "runner's own directory"],
    ['an input named as the runner directory', '.swm', ErrorCode.PathEscape, "runner's own directory"],
    ['an input behind ./ in the runner directory', './.swm/job.sh', ErrorCode.PathEscape, "runner's own directory"],
    ['an input name with a NUL byte', 'data\0.txt', ErrorCode.InvalidParams, 'NUL byte'],
    ['an input name over 255 bytes', `dir/${'é'.repeat(128)}`, ErrorCode.InvalidParams, '255 bytes'],
    ['an input path over 4096 bytes', Array.from({ length: 20 }, () => 'é'.repeat(125)).join('/'), ErrorCode.InvalidParams, '4096 bytes'],
  ];
  for (const [what, path, code, mentions] of refusedInputs) {
    it(`refuses a declared input: ${what} (code ${code})`, async () => {
      const error = await rejection(alice.call('job.submit', { script: script(), inputs: [declared('ok.txt'), declared(path)] }));
      expect(error.code, error.message).to.equal(code);
      expect(error.message).to.include(mentions);
    });
  }

  it('stores nothing it refused, and accepts what is allowed: a user at or below the default priority', async () => {
    expect((await alice.call('job.list')).jobs).to.deep.equal([]);
    const zero = await alice.call('job.submit', { script: script('#SWM priority 0', '#SWM stdout logs/out.log', '#SWM container-image docker.io/library/alpine:3') });
    const low = await alice.call('job.submit', { script: script('#SWM priority -5'), inputs: [declared('data/in.txt')] });
    expect((await alice.call('job.get', { id: zero.id })).priority).to.equal(0);
    expect((await alice.call('job.get', { id: low.id })).priority).to.equal(-5);
    expect((await alice.call('job.list')).jobs.map((j) => j.id).sort()).to.deep.equal([zero.id, low.id].sort());
  });

  it('lets an admin raise a priority (up to 1000)', async () => {
    const { id } = await f.admin.call('job.submit', { script: script('#SWM priority 500') });
    expect((await f.admin.call('job.get', { id })).priority).to.equal(500);
    const capped = await f.admin.call('job.submit', { script: script('#SWM priority 999999') });
    expect((await f.admin.call('job.get', { id: capped.id })).priority).to.equal(1000);
  });

  describe('over REST, the same refusals with the same codes', () => {
    const errorOf = (r: RestResponse) => r.json<{ error: { code: number; message: string } }>().error;
    const post = (who: ClientBundle, body: string) => rest(f.core.port, who, '/user/job', { method: 'POST', headers: { 'content-type': 'text/plain' }, body });

    const cases: [string, string, number, number][] = [
      ['--privileged as the container image', script('#SWM container-image --privileged'), 400, ErrorCode.InvalidScript],
      ['stdout at an absolute path', script('#SWM stdout /etc/cron.d/owned'), 400, ErrorCode.InvalidScript],
      ['stdin in the runner directory', script('#SWM stdin .swm/job.sh'), 400, ErrorCode.InvalidScript],
      ['a user priority above the default', script('#SWM priority 999999'), 403, ErrorCode.Forbidden],
    ];
    for (const [what, body, status, code] of cases) {
      it(`refuses ${what} with ${status}`, async () => {
        const r = await post(aliceBundle, body);
        expect(r.status, r.text).to.equal(status);
        expect(errorOf(r).code).to.equal(code);
      });
    }

    it('accepts an admin priority above the default', async () => {
      const r = await post(admin, script('#SWM priority 10'));
      expect(r.status, r.text).to.equal(200);
      expect((await f.admin.call('job.get', { id: r.text.split('\n')[0]! })).priority).to.equal(10);
    });
  });

  describe('status counts', () => {
    it("shows a user the counts of their own jobs, and an admin everyone's", async () => {
      await bob.call('job.submit', { script: script('#SWM name bob-1') });
      const everyone = (await f.admin.call('job.list', { all: true, limit: 1000 })).jobs;
      const count = (owner?: string) => everyone.filter((j) => !owner || j.owner === owner).length;
      const total = (counts: Record<string, number>) => Object.values(counts).reduce((a, b) => a + b, 0);

      const ofAlice = (await alice.call('status')).jobs;
      const ofBob = (await bob.call('status')).jobs;
      const ofAdmin = (await f.admin.call('status')).jobs;
      expect(ofAlice).to.deep.equal({ Q: count('alice') });
      expect(ofBob).to.deep.equal({ Q: 1 });
      expect(total(ofAdmin)).to.equal(count());
      expect(total(ofAdmin)).to.be.greaterThan(total(ofAlice) + total(ofBob));
    });
  });
});
