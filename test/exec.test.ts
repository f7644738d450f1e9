import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { spawn as spawnPty } from 'node-pty';
import { fileURLToPath } from 'node:url';
import { SWM_MAIN, isFinal, startFixture, waitForJob, waitForOutput, type CoreFixture } from './harness/core.js';
import { ensureTestImage, podmanWorks } from './harness/podman-image.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The real `swm` with pipes (no terminal), stdin fed from `input`. */
function swm(home: string, args: string[], input = ''): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [SWM_MAIN, ...args], { cwd: REPO, env: { ...process.env, SWM_HOME: home }, stdio: ['pipe', 'pipe', 'pipe'] });
    child.stdin.end(input);
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

/** `swm` on a real pseudo-terminal: what a person typing in a terminal emulator gets. */
class PtySwm {
  output = '';
  readonly exited: Promise<number>;
  private readonly pty;
  private waiters: Array<{ pattern: RegExp; from: number; resolve: (match: RegExpMatchArray) => void }> = [];
  private mark = 0;

  constructor(home: string, args: string[], size: { cols: number; rows: number }) {
    this.pty = spawnPty(process.execPath, [SWM_MAIN, ...args], { cwd: REPO, env: { ...process.env, SWM_HOME: home, TERM: 'xterm' } as Record<string, string>, ...size });
    this.pty.onData((data) => {
      this.output += data;
      this.check();
    });
    this.exited = new Promise((resolve) => this.pty.onExit(({ exitCode }) => resolve(exitCode)));
  }

  type(text: string): void {
    this.pty.write(text);
  }

  resize(cols: number, rows: number): void {
    this.pty.resize(cols, rows);
  }

  /** The next output (after what earlier waits matched) that matches; rejects after 20 s with what was seen. */
  next(pattern: RegExp): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${pattern} in the terminal after 20 s:\n${this.output.slice(this.mark)}`)), 20_000);
      this.waiters.push({
        pattern,
        from: this.mark,
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
      });
      this.check();
    });
  }

  private check(): void {
    const waiter = this.waiters[0];
    if (!waiter) return;
    const match = waiter.pattern.exec(this.output.slice(waiter.from));
    if (!match) return;
    this.waiters.shift();
    this.mark = waiter.from + match.index! + match[0].length;
    waiter.resolve(match);
  }

  kill(): void {
    this.pty.kill();
  }
}

/** Submit a job that prints "started" and keeps running; resolves once it has printed it. */
async function runningJob(f: CoreFixture, script: string): Promise<string> {
  const { id } = await f.admin.call('job.submit', { script });
  await waitForOutput(f.admin, id, 'started');
  return id;
}

describe('swm exec: a command or a shell inside a running job', function () {
  this.timeout(120_000);
  let f: CoreFixture;
  let home: string;
  let job: string;

  before(async () => {
    f = await startFixture();
    home = f.spool.homeDir;
    job = await runningJob(f, '#!/bin/sh\n#SWM name exec-target\n#SWM env GREETING=hello-from-the-job\necho started\nexec sleep 300\n');
  });
  after(async () => {
    await f?.admin.call('job.cancel', { id: job }).catch(() => undefined);
    await f?.stop();
  });

  it("runs a command in the job's environment: its variables, its directory, stdout and stderr apart, its exit status", async () => {
    const run = await swm(home, ['exec', job.slice(0, 8), '--', 'sh', '-c', 'echo "$SWM_JOB_ID $GREETING"; pwd; echo oops >&2; exit 7']);
    expect(run.code, run.stderr).to.equal(7);
    const [line, dir] = run.stdout.trim().split('\n');
    expect(line).to.equal(`${job} hello-from-the-job`);
    expect(dir).to.match(new RegExp(`/swm/${job}$`));
    expect(run.stderr).to.equal('oops\n');
  });

  it('passes stdin through, and a job name works as the reference', async () => {
    const payload = Array.from({ length: 2000 }, (_, i) => `line ${i}`).join('\n');
    const run = await swm(home, ['exec', 'exec-target', '--', 'wc', '-l'], payload);
    expect(run.code, run.stderr).to.equal(0);
    expect(run.stdout.trim()).to.equal('1999');
  });

  it('reports a command killed by a signal as 128+N, and keeps its own failures at 255 with a message', async () => {
    const killed = await swm(home, ['exec', job, '--', 'sh', '-c', 'kill -TERM $$']);
    expect(killed.code).to.equal(128 + 15);
    const noNode = await swm(home, ['exec', job, '--node', '3', '--', 'true']);
    expect(noNode.code).to.equal(255);
    expect(noNode.stderr).to.match(/^swm: job .* has 1 node \(ranks 0-0\): no node 3/);
    const ended = await swm(home, ['submit', '--wait', '--wrap', 'true']);
    expect(ended.code, ended.stderr).to.equal(0);
    const done = (JSON.parse((await swm(home, ['jobs', '--json'])).stdout) as { id: string; state: string }[]).find((j) => j.state === 'F')!;
    const notRunning = await swm(home, ['exec', done.id, '--', 'true']);
    expect(notRunning.code).to.equal(255);
    expect(notRunning.stderr).to.contain('is not running');
  });

  it('passes Ctrl-C (SIGINT) of swm on to a command without a terminal', async () => {
    const child = spawn(process.execPath, [SWM_MAIN, 'exec', job, '--', 'sh', '-c', 'echo ready; exec sleep 100'], {
      cwd: REPO,
      env: { ...process.env, SWM_HOME: home },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const started = Date.now();
    let stderrText = '';
    child.stderr.on('data', (c: Buffer) => (stderrText += c.toString()));
    await new Promise<void>((resolve) => child.stdout.on('data', (c: Buffer) => c.toString().includes('ready') && resolve()));
    child.kill('SIGINT');
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(code, stderrText).to.equal(128 + 2);
    expect(Date.now() - started).to.be.below(30_000);
  });

  it('gives a shell a pseudo-terminal: its size follows the window, Ctrl-C interrupts, the exit status comes back', async () => {
    const term = new PtySwm(home, ['exec', job], { cols: 100, rows: 30 });
    try {
      term.type('stty size; tty\r');
      await term.next(/30 100\r*\n/);
      await term.next(/\/dev\/pts\/\d+/);
      term.resize(120, 40);
      // The window change travels to the core and on to the node, beside what is typed: the shell waits
      // until its terminal has the new size (or the test's time runs out), then prints it.
      term.type(`until [ "$(stty size)" != '30 100' ]; do sleep 0.1; done; stty size\r`);
      await term.next(/40 120\r*\n/);
      // Ctrl-C reaches the remote terminal's foreground job, not swm: the shell lives on. (Arithmetic and
      // quotes keep the echo of what is typed apart from what the commands print.)
      term.type(`echo sleeping-$((6*7)); sleep 100; echo sl''ept\r`);
      await term.next(/sleeping-42/);
      term.type('\x03');
      term.type('echo after-$((6*7))\r');
      await term.next(/after-42/);
      expect(term.output).not.to.contain('slept');
      term.type('exit 3\r');
      expect(await term.exited).to.equal(3);
    } finally {
      term.kill();
    }
  });

  it('runs a command inside the job container (podman exec)', async function () {
    if (!podmanWorks()) {
      console.warn('    podman is not installed: run `make test` as root on Debian to install it');
      return this.skip();
    }
    const image = ensureTestImage();
    const id = await runningJob(f, `#!/bin/sh\n#SWM container-image ${image}\necho started\nexec sleep 300\n`);
    try {
      // /run/.containerenv exists only inside a podman container; /job is where the job's directory is mounted.
      const run = await swm(home, ['exec', id, '--', 'sh', '-c', 'test -e /run/.containerenv && pwd && echo "$SWM_JOB_ID"']);
      expect(run.code, run.stderr).to.equal(0);
      expect(run.stdout.trim().split('\n')).to.deep.equal(['/job', id]);
    } finally {
      await f.admin.call('job.cancel', { id });
    }
  });
});
