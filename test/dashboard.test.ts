import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { request, type IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { writeBundle } from '../spool-bootstrap/users.js';
import type { TerminalClient } from '../terminal-protocol/client.js';
import type { Job } from '../terminal-protocol/job.js';
import { AccessGuard } from '../terminal/dashboard/access-guard.js';
import { jobActivity } from '../terminal/dashboard/activity.js';
import { estimateJobCost } from '../terminal/dashboard/job-cost.js';
import { redirectFile } from '../terminal/dashboard/open-browser.js';
import type { DashboardOverview } from '../terminal/dashboard/overview.js';
import { chromiumPath, launchHeadless, type HeadlessBrowser } from './harness/browser.js';
import { DIST, SWM_MAIN, connectTerminal, isFinal, startFixture, waitForJob, type CoreFixture } from './harness/core.js';
import { submitJob } from './harness/submit.js';

/** Where the browser test leaves its screenshot (the README's docs/dashboard.png is copied from it). */
const OUTPUT_DIR = join(DIST, 'test-output');
const SCREENSHOT = join(OUTPUT_DIR, 'dashboard.png');

const T0 = Date.parse('2030-01-01T12:00:00Z');
const at = (minutes: number): string => new Date(T0 + minutes * 60_000).toISOString();

function job(fields: Partial<Job>): Job {
  return {
    id: randomUUID(),
    name: 'job',
    owner: 'alice',
    state: 'Q',
    state_details: '',
    submit_time: at(-5),
    start_time: null,
    end_time: null,
    duration: 0,
    exitcode: null,
    signal: null,
    node_names: [],
    node_ips: [],
    remote_id: 'local',
    flavor_id: 'small',
    request: [],
    resources: [],
    comment: '',
    priority: 0,
    ports: [],
    ...fields,
  };
}

describe('dashboard figures: queue depth and throughput over the last hour', () => {
  it('counts a job as queued from its submission until it starts, and as throughput in the minute it ends', () => {
    const jobs = [
      job({ state: 'F', submit_time: at(-30), start_time: at(-20), end_time: at(-10) }),
      job({ state: 'Q', submit_time: at(-15) }),
      job({ state: 'C', submit_time: at(-40), end_time: at(-25) }),
      job({ state: 'E', submit_time: at(-90), start_time: at(-70), end_time: at(-65) }),
    ];
    const a = jobActivity(jobs, T0);
    expect(a.points).to.have.length(60);
    expect(a.points.at(-1)!.at).to.equal(at(0));
    const point = (minutesAgo: number) => a.points[59 - minutesAgo]!;
    expect(point(35).queued).to.equal(1); // the one canceled before it ran
    expect(point(28).queued).to.equal(2); // and the one that finished later
    expect(point(22).queued).to.equal(1);
    expect(point(12).queued).to.equal(1);
    expect(point(0).queued).to.equal(1);
    expect(a.queuedNow).to.equal(1);
    expect(point(10).ended).to.equal(1);
    expect(point(25).ended).to.equal(1);
    expect(a.ended).to.equal(2);
    expect(a.endedByState).to.deep.equal({ F: 1, C: 1 });
    expect(a.submitted).to.equal(3);
    expect(a.started).to.equal(1);
  });

  it('estimates a job\'s cost from its flavor\'s price per node-hour, its nodes and its run time', () => {
    const flavors = [{ name: 'small', remote: 'local', cpus: 1, gpus: 0, memMiB: 1024, diskMiB: 1024, pricePerHour: 0.5, currency: 'EUR' }];
    const running = job({ state: 'R', start_time: at(-30), node_names: ['a', 'b'] });
    expect(estimateJobCost(running, flavors, T0)).to.deep.equal({ amount: 0.5, currency: 'EUR' });
    expect(estimateJobCost(job({}), flavors, T0)).to.equal(null);
    expect(estimateJobCost(job({ start_time: at(-30), flavor_id: 'unpriced' }), flavors, T0)).to.equal(null);
  });
});

describe('dashboard access guard', () => {
  const guard = new AccessGuard(4567, 'the-token');
  const asked = (url: string, headers: Record<string, string>) => guard.check({ url, headers } as unknown as IncomingMessage);

  it('lets in the printed address, then its cookie, on 127.0.0.1 or localhost', () => {
    expect(asked('/?token=the-token', { host: '127.0.0.1:4567' })).to.deep.equal({ allowed: true, tokenInUrl: true });
    expect(asked('/api/overview', { host: 'localhost:4567', cookie: `other=1; ${guard.cookieName}=the-token` })).to.deep.equal({ allowed: true, tokenInUrl: false });
    expect(guard.cookie()).to.match(/HttpOnly/).and.match(/SameSite=Strict/);
  });

  it('refuses requests without the token, with a wrong one, or for another host', () => {
    expect(asked('/api/overview', { host: '127.0.0.1:4567' }).allowed).to.equal(false);
    expect(asked('/?token=the-tokeN', { host: '127.0.0.1:4567' }).allowed).to.equal(false);
    expect(asked('/api/overview', { host: '127.0.0.1:4567', cookie: 'swm-dashboard-4568=the-token' }).allowed).to.equal(false);
    expect(asked('/?token=the-token', { host: 'attacker.example:4567' }).allowed).to.equal(false);
    expect(asked('/?token=the-token', { host: '127.0.0.1:4568' }).allowed).to.equal(false);
  });

  it('lets the cookie in only from the dashboard\'s own page, not from another site or another port of this machine', () => {
    const cookie = `${guard.cookieName}=the-token`;
    expect(asked('/api/overview', { host: '127.0.0.1:4567', cookie, 'sec-fetch-site': 'same-origin' }).allowed).to.equal(true);
    expect(asked('/api/overview', { host: '127.0.0.1:4567', cookie, 'sec-fetch-site': 'same-site' }).allowed).to.equal(false);
    expect(asked('/api/overview', { host: '127.0.0.1:4567', cookie, 'sec-fetch-site': 'cross-site' }).allowed).to.equal(false);
    expect(asked('/api/overview', { host: '127.0.0.1:4567', cookie, origin: 'http://127.0.0.1:9999' }).allowed).to.equal(false);
    // Whoever holds the token itself may come from anywhere: the printed address opened through --open's file.
    expect(asked('/?token=the-token', { host: '127.0.0.1:4567', 'sec-fetch-site': 'cross-site' }).allowed).to.equal(true);
  });
});

interface Answer {
  status: number;
  headers: IncomingMessage['headers'];
  body: string;
}

/** One HTTP request to the dashboard, with whatever Host header the test chooses (fetch cannot). */
function ask(port: number, path: string, headers: Record<string, string> = {}, method = 'GET'): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, headers: { host: `127.0.0.1:${port}`, ...headers } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.once('error', reject);
    req.end();
  });
}

interface DashboardProcess {
  child: ChildProcess;
  url: string;
  port: number;
  token: string;
  stderr: () => string;
  /** Resolves once swm has written `text` to stderr (its output arriving: no polling). */
  untilStderr: (text: string) => Promise<void>;
  exit: Promise<number | null>;
}

/** Runs the real `swm dashboard` and resolves with the address it prints (its output arriving: no polling). */
function startDashboard(home: string, children: ChildProcess[]): Promise<DashboardProcess> {
  const child = spawn(process.execPath, [SWM_MAIN, 'dashboard'], { env: { ...process.env, SWM_HOME: home }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let stdout = '';
  let stderr = '';
  const exit = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`swm dashboard printed no address within 30 s:\n${stdout}${stderr}`)), 30_000);
    void exit.then((code) => reject(new Error(`swm dashboard exited with ${code}:\n${stderr}`)));
    child.stdout!.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      const m = /^(http:\/\/127\.0\.0\.1:(\d+)\/\?token=([A-Za-z0-9_-]+))$/m.exec(stdout);
      if (!m) return;
      clearTimeout(timer);
      const untilStderr = (text: string) =>
        new Promise<void>((done) => {
          const look = () => {
            if (!stderr.includes(text)) return;
            child.stderr!.off('data', look);
            done();
          };
          child.stderr!.on('data', look);
          look();
        });
      resolve({ child, url: m[1]!, port: Number(m[2]), token: m[3]!, stderr: () => stderr, untilStderr, exit });
    });
  });
}

describe('swm dashboard: a user\'s jobs, partitions and gates in a real browser', function () {
  this.timeout(180_000);
  const MARKER = `dashboard-line-${randomUUID().slice(0, 8)}`;
  const LIVE_SCRIPT = `#!/bin/sh\necho "hello from the dashboard test ${MARKER}"\ni=1\nwhile [ $i -le 240 ]; do echo "tick $i"; i=$((i+1)); sleep 1; done\n`;
  const children: ChildProcess[] = [];
  let f: CoreFixture;
  let scratch: string;
  let alice: TerminalClient;
  let aliceHome: string;
  let liveId: string;
  let finishedId: string;
  let othersId: string;
  let dashboard: DashboardProcess;
  let headless: HeadlessBrowser | null = null;

  before(async () => {
    f = await startFixture();
    scratch = mkdtempSync(join(tmpdir(), 'skyport-dashboard-'));
    // An ordinary user: the dashboard shows what the core shows them, not an admin's view.
    aliceHome = join(scratch, 'alice');
    writeBundle(aliceHome, await f.admin.call('admin.user.add', { name: 'alice' }));
    alice = await connectTerminal(aliceHome);
    othersId = await submitJob(f.admin, '#!/bin/sh\necho not yours\n');
    const submit = async (name: string, script: string) => (await alice.call('job.submit', { script, name })).id;
    const finished = (finishedId = await submit('prepare-data', '#!/bin/sh\necho prepared\n'));
    const failed = await submit('broken-step', '#!/bin/sh\necho broken >&2\nexit 3\n');
    liveId = await submit('live-demo', LIVE_SCRIPT);
    await Promise.all([
      waitForJob(alice, finished, isFinal, 60_000),
      waitForJob(alice, failed, isFinal, 60_000),
      waitForJob(f.admin, othersId, isFinal, 60_000),
      waitForJob(alice, liveId, (j) => j.state === 'R', 60_000),
    ]);
    dashboard = await startDashboard(aliceHome, children);
  });

  after(async () => {
    await headless?.close();
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    // The admin's connection survives the core's restart (the fixture renews it); an admin may cancel any job.
    if (liveId) await f?.admin.call('job.cancel', { id: liveId }).catch(() => undefined);
    await alice?.close();
    await f?.stop();
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  });

  it('refuses requests without the token, with a wrong one, with a foreign Host header or from another site', async () => {
    expect((await ask(dashboard.port, '/api/overview')).status).to.equal(403);
    expect((await ask(dashboard.port, '/')).status).to.equal(403);
    expect((await ask(dashboard.port, `/api/overview?token=${'x'.repeat(dashboard.token.length)}`)).status).to.equal(403);
    const rebinding = await ask(dashboard.port, `/?token=${dashboard.token}`, { host: `attacker.example:${dashboard.port}` });
    expect(rebinding.status).to.equal(403);
    expect(rebinding.body).to.include('Host');
    // The cookie, which the browser sends whoever asks, only from the dashboard's own page.
    const cookie = String((await ask(dashboard.port, `/?token=${dashboard.token}`)).headers['set-cookie']).split(';')[0]!;
    expect((await ask(dashboard.port, '/api/overview', { cookie, origin: 'http://attacker.example' })).status).to.equal(403);
    expect((await ask(dashboard.port, '/api/overview', { cookie, 'sec-fetch-site': 'same-site' })).status).to.equal(403);
    expect((await ask(dashboard.port, '/api/overview', { cookie, 'sec-fetch-site': 'same-origin' })).status).to.equal(200);
    expect((await ask(dashboard.port, `/api/overview?token=${dashboard.token}`, {}, 'POST')).status).to.equal(405);
    expect((await ask(dashboard.port, `/api/jobs/%E0%A4%A/log?token=${dashboard.token}`)).status).to.equal(400);
    // The token is for the user's eyes: printed on stdout, never in what swm writes to stderr.
    expect(dashboard.stderr()).to.not.include(dashboard.token);
  });

  it('turns the printed address into a cookie and shows only what the core shows this user', async () => {
    const first = await ask(dashboard.port, `/?token=${dashboard.token}`);
    expect(first.status).to.equal(200);
    const cookie = String(first.headers['set-cookie']).split(';')[0]!;
    const page = await ask(dashboard.port, '/', { cookie });
    expect(page.status).to.equal(200);
    expect(page.headers['content-security-policy']).to.include("script-src 'self'");
    const overview = JSON.parse((await ask(dashboard.port, '/api/overview', { cookie })).body) as DashboardOverview;
    expect(overview.user).to.equal('alice');
    const ids = overview.jobs.map((j) => j.id);
    expect(ids).to.include(liveId);
    expect(ids).to.not.include(othersId);
    expect(overview.jobs.map((j) => j.state).sort()).to.deep.equal(['E', 'F', 'R']);
    expect(overview.gates.map((g) => [g.name, g.health])).to.deep.include(['local', 'healthy']);
    expect(overview.activity.points).to.have.length(60);
    expect(overview.activity.ended).to.equal(2);
  });

  it('lists the job in headless Chromium, streams its live output when clicked, and saves a screenshot', async function () {
    const executable = chromiumPath();
    if (!executable) {
      console.log('      skipped: no chromium binary (/usr/bin/chromium or $CHROMIUM_PATH); scripts/install-system-deps.sh installs it as root on Debian');
      return this.skip();
    }
    headless = await launchHeadless(executable);
    const page = await headless.browser.newPage();
    await page.setViewport({ width: 1360, height: 900 });
    await page.goto(dashboard.url, { waitUntil: 'domcontentloaded' });
    // The token leaves the address bar (and history) for a cookie.
    await page.waitForFunction(() => location.search === '', { timeout: 30_000 });
    expect(page.url()).to.equal(`http://127.0.0.1:${dashboard.port}/`);

    const row = await page.waitForSelector(`tr[data-job-id="${liveId}"]`, { timeout: 30_000 });
    expect(await row!.evaluate((r) => r.textContent)).to.include('live-demo').and.include('R running');
    expect(await page.$(`tr[data-job-id="${othersId}"]`)).to.equal(null);
    await page.waitForSelector('#gates-table tr[data-gate="local"] .health-healthy', { timeout: 30_000 });

    // An ended job: its whole output, then the stream says it is complete.
    await page.click(`tr[data-job-id="${finishedId}"]`);
    await page.waitForFunction(() => document.getElementById('log-status')?.textContent?.startsWith('ended'), { timeout: 30_000, polling: 'mutation' });
    expect(await page.$eval('#log-stdout', (pre) => pre.textContent)).to.equal('prepared\n');

    await row!.click();
    await page.waitForFunction((marker: string) => document.getElementById('log-stdout')?.textContent?.includes(marker), { timeout: 30_000, polling: 'mutation' }, MARKER);
    // Live: lines the job writes after the click arrive too.
    const ticks = (text: string) => Math.max(0, ...[...text.matchAll(/tick (\d+)/g)].map((m) => Number(m[1])));
    const seen = ticks(await page.$eval('#log-stdout', (pre) => pre.textContent ?? ''));
    await page.waitForFunction(
      (after: number) => [...(document.getElementById('log-stdout')?.textContent ?? '').matchAll(/tick (\d+)/g)].some((m) => Number(m[1]) >= after),
      { timeout: 30_000, polling: 'mutation' },
      seen + 2,
    );
    expect(await page.$eval('#log-status', (s) => s.textContent)).to.equal('live');

    mkdirSync(OUTPUT_DIR, { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    expect(statSync(SCREENSHOT).size).to.be.greaterThan(10_000);
    console.log(`      screenshot: ${SCREENSHOT}`);
  });

  it('opens through the private file that --open hands the desktop\'s browser', async function () {
    if (!headless) return this.skip();
    const { file, remove } = redirectFile(dashboard.url);
    try {
      expect(statSync(file).mode & 0o077).to.equal(0);
      const page = await headless.browser.newPage();
      await page.goto(pathToFileURL(file).href);
      await page.waitForSelector(`tr[data-job-id="${liveId}"]`, { timeout: 30_000 });
      expect(page.url()).to.equal(`http://127.0.0.1:${dashboard.port}/`);
      // A reload goes on with the cookie alone.
      await page.reload({ waitUntil: 'domcontentloaded' });
      await page.waitForSelector(`tr[data-job-id="${liveId}"]`, { timeout: 30_000 });
      await page.close();
    } finally {
      remove();
    }
  });

  it('reconnects by itself when the core restarts', async () => {
    const lost = dashboard.untilStderr('lost the connection to the core');
    const restored = dashboard.untilStderr('connection to the core restored');
    await f.restart('SIGTERM');
    await lost;
    await restored;
    const answer = await ask(dashboard.port, `/api/overview?token=${dashboard.token}`);
    expect(answer.status, answer.body).to.equal(200);
    expect((JSON.parse(answer.body) as DashboardOverview).jobs.map((j) => j.id)).to.include(liveId);
  });

  it('refuses --all to a user who is not an admin', async () => {
    const child = spawn(process.execPath, [SWM_MAIN, 'dashboard', '--all'], { env: { ...process.env, SWM_HOME: aliceHome }, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
    expect(code, stderr).to.equal(4);
    expect(stderr).to.include("only admins see everyone's jobs");
  });

  it('stops on Ctrl-C with exit status 0', async () => {
    dashboard.child.kill('SIGINT');
    expect(await dashboard.exit).to.equal(0);
  });
});
