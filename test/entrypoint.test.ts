import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadCoreConfig } from '../spool-bootstrap/config.js';
import { readIssued } from '../spool-bootstrap/issued.js';
import { spoolPaths } from '../spool-bootstrap/paths.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const entrypoint = join(repoRoot, 'container', 'entrypoint.sh');
const setupMain = join(repoRoot, 'dist', 'spool-bootstrap', 'main.js');

interface Run {
  code: number | null;
  pid: number;
  stdout: string;
  stderr: string;
}

describe('release container entry point', function () {
  this.timeout(30_000);
  let dir: string;
  let spoolDir: string;
  let homeDir: string;
  let coreRecord: string;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'skyport-entrypoint-'));
    spoolDir = join(dir, 'swm', 'spool');
    homeDir = join(dir, 'swm');
    coreRecord = join(dir, 'core-ran');
    // Stands in for swm-core: records its pid (same as the entry point's if it was exec'd) and its spool.
    writeFileSync(join(dir, 'fake-core.sh'), `#!/bin/sh\necho "$$ $SWM_SPOOL $SWM_HOME" > '${coreRecord}'\nexit 7\n`, { mode: 0o755 });
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  /** Run the entry point with sh, as the image does, with the spool and both commands in the temporary directory. */
  const runEntrypoint = (env: Record<string, string> = {}, args: string[] = []): Promise<Run> =>
    new Promise((done, fail) => {
      const { SWM_SPOOL, SWM_HOME, SKYPORT_USER, SKYPORT_USER_ID, SKYPORT_REMOTE_LOCATION, SKYPORT_RECREATE, ...inherited } = process.env;
      const child = spawn('sh', [entrypoint, ...args], {
        env: {
          ...inherited,
          SWM_SPOOL: spoolDir,
          SWM_HOME: homeDir,
          SWM_SETUP_CMD: `${process.execPath} ${setupMain}`,
          SWM_CORE_CMD: join(dir, 'fake-core.sh'),
          ...env,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      child.on('error', fail);
      child.on('close', (code) => done({ code, pid: child.pid!, stdout, stderr }));
    });

  const bootstrapOnce = async (): Promise<string> => {
    const run = await runEntrypoint({ SKYPORT_USER: 'alice' });
    expect(run.code, run.stderr).to.equal(0);
    return loadCoreConfig(spoolPaths(spoolDir).config).core.id;
  };

  it('creates the spool from the SKYPORT_* variables on first start, says what to do next, and does not start the core', async () => {
    const uid = process.getuid?.() ?? 0;
    const run = await runEntrypoint({ SKYPORT_USER: 'alice', SKYPORT_USER_ID: String(uid), SKYPORT_REMOTE_LOCATION: 'westeurope' });
    expect(run.code, run.stderr).to.equal(0);
    const spool = spoolPaths(spoolDir);
    const config = loadCoreConfig(spool.config);
    expect(config.remotes.find((r) => r.name === 'azure')!.location).to.equal('westeurope');
    expect(readIssued(spool.issued).find((c) => c.role === 'admin')!.name).to.equal('alice');
    expect(JSON.parse(readFileSync(join(homeDir, 'config.json'), 'utf8'))).to.include({ user: 'alice' });
    expect(run.stdout).to.include('gates/azure/README.md').and.to.include('start skyport');
    // One set of next steps, the container's: not swm-setup's own (start swm-core by hand).
    expect(run.stdout).not.to.include('start the core:');
    expect(existsSync(coreRecord), 'the core must not start on first start').to.equal(false);
  });

  it('execs the core when the spool exists, passing it the spool', async () => {
    await bootstrapOnce();
    const run = await runEntrypoint();
    expect(run.code, 'the exit code is the core’s own').to.equal(7);
    const [pid, spool, home] = readFileSync(coreRecord, 'utf8').trim().split(' ');
    expect(Number(pid), 'exec replaces the entry point, so the core keeps its pid').to.equal(run.pid);
    expect(spool).to.equal(spoolDir);
    expect(home).to.equal(homeDir);
  });

  it('recreates an existing spool when SKYPORT_RECREATE=yes, then stops without starting the core', async () => {
    const firstId = await bootstrapOnce();
    const run = await runEntrypoint({ SKYPORT_RECREATE: 'yes', SKYPORT_USER: 'bob' });
    expect(run.code, run.stderr).to.equal(0);
    const config = loadCoreConfig(spoolPaths(spoolDir).config);
    expect(config.core.id).to.not.equal(firstId);
    expect(readIssued(spoolPaths(spoolDir).issued).map((c) => c.name)).to.include('bob').and.not.include('alice');
    expect(existsSync(coreRecord)).to.equal(false);
  });

  it('keeps the spool and starts the core when SKYPORT_RECREATE=no', async () => {
    const firstId = await bootstrapOnce();
    const run = await runEntrypoint({ SKYPORT_RECREATE: 'no' });
    expect(run.code).to.equal(7);
    expect(loadCoreConfig(spoolPaths(spoolDir).config).core.id).to.equal(firstId);
    expect(existsSync(coreRecord)).to.equal(true);
  });

  it('runs a command given as arguments instead (`run skyport swm status`)', async () => {
    const run = await runEntrypoint({}, ['sh', '-c', 'echo "$SWM_SPOOL"; exit 3']);
    expect(run.code).to.equal(3);
    expect(run.stdout.trim()).to.equal(spoolDir);
    expect(existsSync(spoolPaths(spoolDir).config), 'no spool is created for a one-off command').to.equal(false);
  });

  it('stops with the failure of the bootstrap prompt', async () => {
    const run = await runEntrypoint({ SKYPORT_USER: 'not a name' });
    expect(run.code).to.equal(2);
    expect(run.stderr).to.include('invalid user name');
    expect(existsSync(spoolPaths(spoolDir).config)).to.equal(false);
    expect(existsSync(coreRecord)).to.equal(false);
  });
});
