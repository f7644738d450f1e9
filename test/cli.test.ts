import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SWM_MAIN, startFixture, type CoreFixture } from './harness/core.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run the real `swm` binary with a bundle, from the repository's root. */
function swm(home: string, args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [SWM_MAIN, ...args], { cwd: REPO, env: { ...process.env, SWM_HOME: home }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe('the swm terminal against a real core', function () {
  this.timeout(60_000);
  let f: CoreFixture;
  let scratch: string;
  let admin: string;

  before(async () => {
    f = await startFixture();
    admin = f.spool.homeDir;
    scratch = mkdtempSync(join(tmpdir(), 'skyport-cli-'));
  });
  after(async () => {
    await f?.stop();
    rmSync(scratch, { recursive: true, force: true });
  });

  it('runs the quick start: submit --wait prints the output, download returns the result, nothing is left', async () => {
    const run = await swm(admin, ['submit', '--wait', 'examples/hello.sh', '--input', 'examples/data.txt']);
    expect(run.code, run.stderr).to.equal(0);
    expect(run.stdout).to.match(/^Hello from Sky Port: job [0-9a-f-]{36} on /);
    expect(run.stdout).to.contain('examples/data.txt has 12 words');
    const jobs = JSON.parse((await swm(admin, ['jobs', '--json'])).stdout) as { id: string; state: string }[];
    expect(jobs[0]!.state).to.equal('F');
    const to = join(scratch, 'results');
    const download = await swm(admin, ['download', jobs[0]!.id, '--to', to]);
    expect(download.code, download.stderr).to.equal(0);
    expect(readFileSync(join(to, 'result.txt'), 'utf8').trim()).to.equal('12');
    const partitions = await swm(admin, ['partitions', '--json']);
    expect(JSON.parse(partitions.stdout)).to.deep.equal([]);
  });

  it('exits with the exit code of the job it waits for', async () => {
    const script = join(scratch, 'fail.sh');
    const { writeFileSync } = await import('node:fs');
    writeFileSync(script, '#!/bin/sh\necho failing >&2\nexit 4\n');
    const run = await swm(admin, ['submit', '--wait', script]);
    expect(run.code).to.equal(4);
    expect(run.stderr).to.contain('failing');
  });

  it('issues a user who sees nothing of the admin, then revokes them: refused from then on', async () => {
    const mine = JSON.parse((await swm(admin, ['jobs', '--json'])).stdout) as { id: string }[];
    expect(mine.length).to.be.greaterThan(0);
    const bob = join(scratch, 'bob');
    const add = await swm(admin, ['admin', 'user', 'add', 'bob', '--out', bob]);
    expect(add.code, add.stderr).to.equal(0);
    expect((await swm(bob, ['status'])).stdout).to.contain('bob (user)');
    expect(JSON.parse((await swm(bob, ['jobs', '--json'])).stdout)).to.deep.equal([]);
    const peek = await swm(bob, ['show', mine[0]!.id]);
    expect(peek.code).to.equal(3);
    expect(peek.stderr).to.contain('not found');
    const denied = await swm(bob, ['admin', 'user', 'add', 'eve', '--out', join(scratch, 'eve')]);
    expect(denied.code).to.equal(4);
    const revoke = await swm(admin, ['admin', 'user', 'revoke', 'bob']);
    expect(revoke.code, revoke.stderr).to.equal(0);
    const refused = await swm(bob, ['jobs']);
    expect(refused.code).to.equal(5);
    expect(refused.stderr).to.contain('cannot reach the core');
  });

  it('gives a clear usage error and exit code 2 for a bad command line', async () => {
    const run = await swm(admin, ['show']);
    expect(run.code).to.equal(2);
    expect(run.stderr).to.match(/missing required argument/);
  });
});
