import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Job } from '../terminal-protocol/job.js';
import { SWM_MAIN, connectTerminal, startFixture, type CoreFixture } from './harness/core.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

interface RunOptions {
  cwd?: string;
  /** Written to swm's stdin (else stdin is empty). */
  stdin?: string;
}

/** Run the real `swm` binary with a bundle, from the repository's root (or `cwd`). */
function swm(home: string, args: string[], options: RunOptions = {}): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [SWM_MAIN, ...args], {
      cwd: options.cwd ?? REPO,
      env: { ...process.env, SWM_HOME: home },
      stdio: [options.stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    if (options.stdin !== undefined) child.stdin!.end(options.stdin);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
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
    // The phases, on stderr, as they happen.
    const phases = run.stderr.split('\n').filter((l) => /^swm: [QWTR] \w+/.test(l)).map((l) => l.slice(5, 6));
    expect(phases[0]).to.equal('Q');
    expect(phases).to.include('R');
    const jobs = JSON.parse((await swm(admin, ['jobs', '--json'])).stdout) as { id: string; state: string }[];
    expect(jobs[0]!.state).to.equal('F');
    const to = join(scratch, 'results');
    const download = await swm(admin, ['download', jobs[0]!.id, '--to', to]);
    expect(download.code, download.stderr).to.equal(0);
    expect(readFileSync(join(to, 'result.txt'), 'utf8').trim()).to.equal('12');
    const partitions = await swm(admin, ['partitions', '--json']);
    expect(JSON.parse(partitions.stdout)).to.deep.equal([]);
  });

  it('lists partitions and their nodes, and deletes an idle partition', async () => {
    // The harness keeps no partition by default: this job asks for its own to stay.
    const script = join(scratch, 'keep.sh');
    writeFileSync(script, '#!/bin/sh\n#SWM keep-partition 300\n#SWM nodes 2\ntrue\n');
    expect((await swm(admin, ['submit', '--wait', script])).code).to.equal(0);
    const partitions = JSON.parse((await swm(admin, ['partitions', '--json'])).stdout) as { name: string; state: string; jobsRun: number; keepSec: number }[];
    expect(partitions).to.have.length(1);
    expect(partitions[0]).to.include({ state: 'idle', jobsRun: 1, keepSec: 300 });
    const nodes = JSON.parse((await swm(admin, ['nodes', '--json'])).stdout) as { node: string; partition: string; role: string; state: string }[];
    expect(nodes.map((n) => [n.partition, n.role, n.state])).to.deep.equal([
      [partitions[0]!.name, 'head', 'idle'],
      [partitions[0]!.name, 'compute', 'idle'],
    ]);
    const table = await swm(admin, ['nodes']);
    expect(table.stdout.split('\n')[0]).to.match(/^NODE\s+PARTITION\s+ROLE\s+STATE/);
    const deleted = await swm(admin, ['partition', 'delete', partitions[0]!.name]);
    expect(deleted.code, deleted.stderr).to.equal(0);
    expect(deleted.stdout).to.include('deleting');
    const missing = await swm(admin, ['partition', 'delete', 'no-such-partition']);
    expect(missing.code).to.equal(3);
  });

  it('prints the job id before uploading; Ctrl-C says the job waits and how to resume or cancel; the same command resumes', async () => {
    const data = join(scratch, 'big.bin');
    writeFileSync(data, Buffer.alloc(256 * 1024 * 1024, 7));
    const args = ['submit', '--wrap', 'wc -c big.bin', '--input', 'big.bin'];
    const child = spawn(process.execPath, [SWM_MAIN, ...args], { cwd: scratch, env: { ...process.env, SWM_HOME: admin }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    const closed = new Promise<number | null>((resolve) => child.on('close', resolve));
    const id = await new Promise<string>((resolve) =>
      child.stderr!.on('data', (c: Buffer) => {
        stderr += c.toString();
        const m = /job ([0-9a-f-]{36}) submitted; uploading 1 input file \(256 MiB\)/.exec(stderr);
        if (m) resolve(m[1]!);
      }),
    );
    child.kill('SIGINT');
    expect(await closed).to.equal(130);
    expect(stderr).to.include(`interrupted: job ${id} keeps waiting for its input files`).and.include(`swm cancel ${id}`);
    const again = await swm(admin, args, { cwd: scratch });
    expect(again.code, again.stderr).to.equal(0);
    expect(again.stderr).to.include(`resuming the upload of job ${id}`);
    expect(again.stdout.trim()).to.equal(id);
    rmSync(data);
  });

  it('exits with the exit code of the job it waits for', async () => {
    const script = join(scratch, 'fail.sh');
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
  /** Jobs that wait for inputs nobody sends: they exist, never run, and cost nothing to make. */
  const parkJobs = async (count: number, name: string): Promise<string[]> => {
    const script = '#!/bin/sh\ntrue\n';
    const inputs = [{ path: 'never-sent.txt', size: 1, sha256: '0'.repeat(64) }];
    const answers = await Promise.all(Array.from({ length: count }, () => f.admin.call('job.submit', { script, name, inputs })));
    return answers.map((a) => a.id);
  };

  const json = <T>(run: Run): T => {
    expect(run.code, run.stderr).to.equal(0);
    return JSON.parse(run.stdout) as T;
  };

  it('names jobs by a unique id prefix or a unique name; an ambiguous prefix is refused listing the candidates', async function () {
    // Some hundred jobs are made and canceled, and a dozen swm processes run: slow on a loaded machine.
    this.timeout(120_000);
    // Park jobs until two ids share their first 4 characters (a few hundred, by the birthday bound).
    const byPrefix = new Map<string, string[]>();
    let shared: string[] | undefined;
    while (!shared && byPrefix.size < 5000) {
      for (const id of await parkJobs(100, 'parked')) {
        const same = [...(byPrefix.get(id.slice(0, 4)) ?? []), id];
        byPrefix.set(id.slice(0, 4), same);
        if (same.length === 2) shared ??= same;
      }
    }
    expect(shared, 'two ids sharing 4 characters').to.not.equal(undefined);
    const [first, second] = shared!;

    const ambiguous = await swm(admin, ['show', first!.slice(0, 4)]);
    expect(ambiguous.code).to.equal(2);
    expect(ambiguous.stderr).to.match(new RegExp(`^swm: "${first!.slice(0, 4)}" names 2 jobs`));
    for (const id of shared!) expect(ambiguous.stderr).to.include(id.slice(0, 8));

    // Enough characters to tell them apart name one job.
    let unique = 5;
    while (first!.slice(0, unique) === second!.slice(0, unique)) unique++;
    const shown = json<Job>(await swm(admin, ['show', first!.slice(0, unique).toUpperCase(), '--json']));
    expect(shown.id).to.equal(first);

    const tooShort = await swm(admin, ['show', first!.slice(0, 3)]);
    expect(tooShort.code).to.equal(2);
    expect(tooShort.stderr).to.include('at least 4 characters');
    let free = 0;
    while (byPrefix.has(free.toString(16).padStart(4, '0'))) free++;
    const unknown = await swm(admin, ['show', free.toString(16).padStart(4, '0')]);
    expect(unknown.code).to.equal(3);

    // A name borne by one job names it; a name borne by many is ambiguous, like a prefix.
    const run = await swm(admin, ['submit', '--wrap', 'echo named job', '--name', 'only-one', '--wait']);
    expect(run.code, run.stderr).to.equal(0);
    const logs = await swm(admin, ['logs', 'only-one']);
    expect(logs.stdout).to.equal('named job\n');
    const many = await swm(admin, ['wait', 'parked']);
    expect(many.code).to.equal(2);
    expect(many.stderr).to.match(/"parked" names \d+ jobs/);

    // Tables show short ids; --long the whole ones.
    const table = (await swm(admin, ['jobs', '--state', 'F', '--limit', '5'])).stdout;
    const onlyOne = json<Job>(await swm(admin, ['show', 'only-one', '--json']));
    expect(table).to.include(onlyOne.id.slice(0, 8)).and.not.include(onlyOne.id);
    expect((await swm(admin, ['jobs', '--state', 'F', '--long'])).stdout).to.include(onlyOne.id);

    // Several jobs at once, then every job of a name: the parked ones go, nothing else does.
    const some = await swm(admin, ['cancel', first!, second!.slice(0, unique)]);
    expect(some.code, some.stderr).to.equal(0);
    expect(some.stdout.trim().split('\n')).to.have.length(2).and.satisfy((lines: string[]) => lines.every((l) => / C canceled/.test(l)));
    const parkedCount = [...byPrefix.values()].flat().length;
    const canceled = json<Job[]>(await swm(admin, ['cancel', '--name', 'parked', '--json']));
    expect(canceled).to.have.length(parkedCount - 2);
    expect(canceled.every((j) => j.state === 'C' && j.name === 'parked')).to.equal(true);
    expect(json<Job[]>(await swm(admin, ['jobs', '--state', 'Q,W,T,R', '--json']))).to.deep.equal([]);
  });

  it('cancels by state and name, and --all every job of yours that has not ended; admins reach a user with --user', async () => {
    const queued = await parkJobs(3, 'batch');
    const others = await parkJobs(2, 'other');
    const carolHome = join(scratch, 'carol');
    expect((await swm(admin, ['admin', 'user', 'add', 'carol', '--out', carolHome])).code).to.equal(0);
    const carol = await connectTerminal(carolHome);
    try {
      const inputs = [{ path: 'never-sent.txt', size: 1, sha256: '0'.repeat(64) }];
      const theirs = await carol.call('job.submit', { script: '#!/bin/sh\ntrue\n', name: 'carols', inputs });
      const denied = await swm(carolHome, ['cancel', '--user', 'carol']);
      expect(denied.code).to.equal(4);
      const byState = json<Job[]>(await swm(admin, ['cancel', '--state', 'Q', '--name', 'batch', '--json']));
      expect(byState.map((j) => j.id).sort()).to.deep.equal([...queued].sort());
      const all = json<Job[]>(await swm(admin, ['cancel', '--all', '--json']));
      expect(all.map((j) => j.id)).to.include.members(others);
      expect(all.every((j) => j.state === 'C' && j.owner !== 'carol')).to.equal(true);
      expect((await carol.call('job.get', { id: theirs.id })).state, "another user's job is not the admin's own").to.equal('Q');
      const nothing = await swm(admin, ['cancel', '--all']);
      expect(nothing.code).to.equal(0);
      expect(nothing.stderr).to.include('no job matches');
      const forCarol = json<Job[]>(await swm(admin, ['cancel', '--user', 'carol', '--json']));
      expect(forCarol.map((j) => j.id)).to.deep.equal([theirs.id]);
      const again = json<Job[]>(await swm(carolHome, ['cancel', '--all', '--json']));
      expect(again).to.deep.equal([]);
    } finally {
      await carol.close();
    }
  });

  it('overrides directives from the command line, reads a script from stdin, and takes several inputs after one --input', async () => {
    const work = mkdtempSync(join(scratch, 'work-'));
    writeFileSync(join(work, 'a.txt'), 'alpha\n');
    writeFileSync(join(work, 'b.txt'), 'beta\n');
    const flavor = json<{ name: string; remote: string }[]>(await swm(admin, ['flavors', '--json']))[0]!;
    const script = [
      '#!/bin/sh',
      '#SWM name from-script',
      '#SWM duration 00:01:00',
      '#SWM output-files never.txt',
      '#SWM env GREETING=hi',
      '#SWM input-files', // empty lists, as the original's templates write them, over the WebSocket API too
      '#SWM ports ',
      'cat a.txt b.txt > both.txt',
      'echo "$GREETING $PLACE"',
      '',
    ].join('\n');
    const run = await swm(
      admin,
      ['submit', '-', '--name', 'stdin-job', '--duration', '00:05:00', '--env', 'GREETING=hello', '--env', 'PLACE=world',
        '--output-files', 'both.txt', '--remote', flavor.remote, '--flavor', flavor.name, '--nodes', '1', '--wait', '--input', 'a.txt', 'b.txt'],
      { cwd: work, stdin: script },
    );
    expect(run.code, run.stderr).to.equal(0);
    expect(run.stdout).to.equal('hello world\n');
    const job = json<Job>(await swm(admin, ['show', 'stdin-job', '--json']));
    expect(job).to.include({ duration: 300, remote_id: flavor.remote, flavor_id: flavor.name, state: 'F' });
    const to = join(work, 'results');
    expect((await swm(admin, ['download', 'stdin-job', '--to', to])).code).to.equal(0);
    expect(readFileSync(join(to, 'both.txt'), 'utf8')).to.equal('alpha\nbeta\n');

    const wrapped = await swm(admin, ['submit', '--wrap', 'echo wrapped $((6 * 7))', '--wait']);
    expect(wrapped.code, wrapped.stderr).to.equal(0);
    expect(wrapped.stdout).to.equal('wrapped 42\n');

    // A value the core refuses is named by its flag, not by a line of a script the user never wrote.
    const badNodes = await swm(admin, ['submit', '--wrap', 'true', '--nodes', '0']);
    expect(badNodes.code).to.equal(2);
    expect(badNodes.stderr).to.match(/^swm: --nodes 0: nodes must be between 1/);
    const badImage = await swm(admin, ['submit', '--wrap', 'true', '--image', '--privileged']);
    expect(badImage.code).to.equal(2);
  });

  it('prints the last lines of a log, JSON on request; swm wait prints the exit status and exits 0 unless --exit-code', async () => {
    const counted = await swm(admin, ['submit', '--wrap', 'seq 1 10; exit 3', '--name', 'counted', '--wait']);
    expect(counted.code).to.equal(3);
    expect((await swm(admin, ['logs', 'counted', '--tail', '3'])).stdout).to.equal('8\n9\n10\n');
    const logs = json<{ data: string; final: boolean; stream: string }>(await swm(admin, ['logs', 'counted', '--json', '--tail', '2']));
    expect(logs).to.include({ data: '9\n10\n', final: true, stream: 'stdout' });
    const followed = await swm(admin, ['logs', 'counted', '-f', '--json', '--tail', '1']);
    expect(followed.stdout.trim().split('\n').map((l) => (JSON.parse(l) as { data: string }).data)).to.deep.equal(['10\n']);

    const waited = await swm(admin, ['wait', 'counted']);
    expect(waited.code, waited.stderr).to.equal(0);
    expect(waited.stdout).to.equal('3\n');
    expect(waited.stderr).to.include('E error (exit code 3)');
    expect((await swm(admin, ['wait', '--exit-code', 'counted'])).code).to.equal(3);
  });

  it('prints a bash completion script that completes commands and the ids of your jobs', async () => {
    const script = await swm(admin, ['completion', 'bash']);
    expect(script.code, script.stderr).to.equal(0);
    const [newest] = json<Job[]>(await swm(admin, ['jobs', '--limit', '1', '--json']));
    const complete = (words: string[]): string[] =>
      execFileSync('bash', ['-c', `${script.stdout}\nCOMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _swm; printf '%s\\n' "\${COMPREPLY[@]}"`], {
        encoding: 'utf8',
        env: { ...process.env, SWM_HOME: admin },
      })
        .split('\n')
        .filter(Boolean);
    expect(complete(['swm', 'compl'])).to.deep.equal(['completion']);
    expect(complete(['swm', 'logs', newest!.id.slice(0, 4)])).to.include(newest!.id.slice(0, 8));
    const zsh = await swm(admin, ['completion', 'zsh']);
    expect(zsh.stdout).to.match(/^#compdef swm/);
    expect((await swm(admin, ['completion', 'fish'])).code).to.equal(2);
  });
});
