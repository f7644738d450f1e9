import { expect } from 'chai';
import type { Command } from 'commander';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { PassThrough } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { createCa } from '../spool-bootstrap/pki.js';
import { ErrorCode, RpcError } from '../terminal-protocol/errors.js';
import type { Job } from '../terminal-protocol/job.js';
import { loadBundle, normalizeCoreUrl } from '../terminal/connect.js';
import { PARTIAL_SUFFIX, destinationPath } from '../terminal/download.js';
import { CliError, ExitCode, exitCodeForError, exitCodeForJob, exitCodeForRpcError } from '../terminal/exit-codes.js';
import {
  describeJob,
  formatBytes,
  formatDuration,
  foldArrays,
  jobColumns,
  nodelistOrReason,
  jobEndLine,
  renderPairs,
  renderTable,
  type Column,
} from '../terminal/format.js';
import { globBase, globToRegExp, matchesGlob, selectByGlobs } from '../terminal-protocol/path-patterns.js';
import { readInputFilesDirective, scriptNamesItself } from '../terminal/input-files.js';
import { parseJobStates, parseSince } from '../terminal/job-arguments.js';
import { collectInputs, hashInputs, inputPathFor, type LocalInput } from '../terminal/local-inputs.js';
import { LogCursor, chunkStart, takeNew } from '../terminal/log-stream.js';
import { PendingUploads, uploadKey } from '../terminal/pending-uploads.js';
import { buildProgram, exitCodeForCommander } from '../terminal/program.js';
import { progressText } from '../terminal/progress.js';
import { remainingUploads } from '../terminal/upload.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const swmMain = join(repoRoot, 'dist', 'terminal', 'main.js');
const ID = '3f2b8c1e-5d4a-4e6f-9a7b-1c2d3e4f5a6b';

const job = (over: Partial<Job> = {}): Job => ({
  id: ID,
  name: 'train',
  owner: 'alice',
  state: 'R',
  state_details: 'running',
  submit_time: '2024-05-01T10:00:00.000Z',
  start_time: '2024-05-01T10:00:05.000Z',
  end_time: null,
  duration: 3600,
  exitcode: null,
  signal: null,
  node_names: ['node-0', 'node-1'],
  node_ips: ['10.0.0.4', '10.0.0.5'],
  remote_id: 'local',
  flavor_id: 'local.small',
  request: [{ name: 'cpus', count: 2 }],
  resources: [],
  comment: '',
  priority: 0,
  ports: ['8888/tcp/in'],
  ...over,
});

const tempDirs: string[] = [];
const tempDir = (): string => {
  const dir = mkdtempSync(join(tmpdir(), 'swm-cli-'));
  tempDirs.push(dir);
  return dir;
};
after(() => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}
const runSwm = (args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> =>
  new Promise((done) => {
    execFile(process.execPath, [swmMain, ...args], { env: { ...process.env, ...env } }, (error, stdout, stderr) => {
      const code = error ? ((error as { code?: unknown }).code as number) : 0;
      done({ code: typeof code === 'number' ? code : -1, stdout, stderr });
    });
  });

describe('swm output formatting', () => {
  const columns: Column<{ name: string; n: number; note: string }>[] = [
    { header: 'NAME', value: (r) => r.name },
    { header: 'COUNT', value: (r) => String(r.n), align: 'right' },
    { header: 'NOTE', value: (r) => r.note },
  ];

  it('aligns columns to the widest cell, numbers to the right, with no trailing spaces', () => {
    const text = renderTable(columns, [
      { name: 'a', n: 5, note: '' },
      { name: 'longer-name', n: 1234, note: 'x' },
    ]);
    expect(text).to.equal(['NAME         COUNT  NOTE', 'a                5', 'longer-name   1234  x', ''].join('\n'));
  });

  it('keeps each row on one line when a cell holds newlines or control characters', () => {
    const text = renderTable(columns, [{ name: 'a', n: 1, note: 'line one\nline two\ttab\u001b[31m' }]);
    expect(text.trimEnd().split('\n')).to.have.length(2);
    expect(text).to.not.include('\u001b');
    expect(text).to.include('line one line two tab');
  });

  it('prints only the header for an empty table', () => {
    expect(renderTable(columns, [])).to.equal('NAME  COUNT  NOTE\n');
  });

  it('aligns key/value pairs and shows empty values as "-"', () => {
    expect(renderPairs([['id', 'x'], ['exit code', '']])).to.equal('id         x\nexit code  -\n');
  });

  it('formats sizes in binary units and durations in two units at most', () => {
    expect(formatBytes(512)).to.equal('512 B');
    expect(formatBytes(1536)).to.equal('1.5 KiB');
    expect(formatBytes(300 * 1024 * 1024)).to.equal('300 MiB');
    expect(formatBytes(1024 ** 3 * 1.25)).to.equal('1.3 GiB');
    expect(formatDuration(45)).to.equal('45s');
    expect(formatDuration(725)).to.equal('12m05s');
    expect(formatDuration(11220)).to.equal('3h07m');
    expect(formatDuration(187200)).to.equal('2d04h');
  });

  it('lists jobs with full ids, an owner column only for --all, and elapsed time', () => {
    const now = new Date('2024-05-01T10:02:05.000Z');
    const mine = renderTable(jobColumns(false, now), [job()]);
    expect(mine.split('\n')[0]).to.match(/^ID\s+NAME\s+ST\s+SUBMITTED\s+ELAPSED\s+REMOTE\s+NODELIST\(REASON\)\s+DETAILS$/);
    expect(mine).to.include(ID).and.include(' 2m00s ');
    const all = renderTable(jobColumns(true, now), [job()]);
    expect(all.split('\n')[0]).to.include('OWNER');
    expect(all).to.include('alice');
  });

  it('shows why a queued job waits and its place in line, a running job its nodes, an ended one the code of its end', () => {
    expect(nodelistOrReason(job({ state: 'Q', reason: 'Priority', position: 3 }))).to.equal('(Priority) #3');
    expect(nodelistOrReason(job({ state: 'R', node_names: ['n0', 'n1'] }))).to.equal('n0,n1');
    expect(nodelistOrReason(job({ state: 'E', reason: 'TimeLimit' }))).to.equal('(TimeLimit)');
    expect(nodelistOrReason(job({ state: 'F' }))).to.equal('-');
  });

  it('folds an array to one line with its tasks counted per state, where its newest task is', () => {
    const A = '11111111-2222-4333-8444-555555555555';
    const task = (i: number, state: Job['state']): Job => job({ id: `00000000-0000-4000-8000-00000000000${i}`, array_id: A, array_index: i, state, reason: state === 'Q' ? 'ArrayTaskLimit' : null });
    const lone = job({ id: '99999999-0000-4000-8000-000000000000' });
    const rows = foldArrays([task(3, 'Q'), task(2, 'R'), lone, task(1, 'F'), task(0, 'F')]);
    expect(rows.map((r) => r.id)).to.deep.equal([A, lone.id]);
    expect(rows[0]).to.include({ state: 'R', state_details: '4 tasks: 1 R, 1 Q, 2 F', reason: 'ArrayTaskLimit' });
    expect(rows[0]!.tasks).to.have.length(4);
  });

  it('reads --since as a date, a date and time, or a time ago', () => {
    const now = new Date('2025-05-10T12:00:00.000Z');
    expect(parseSince('7d', now)).to.equal('2025-05-03T12:00:00.000Z');
    expect(parseSince('90m', now)).to.equal('2025-05-10T10:30:00.000Z');
    expect(parseSince('2025-05-01T08:00:00Z', now)).to.equal('2025-05-01T08:00:00.000Z');
    expect(new Date(parseSince('2025-05-01', now)).getDate()).to.equal(1);
    expect(() => parseSince('yesterday', now)).to.throw(/expected a date/);
  });

  it('describes a job field by field for swm show', () => {
    const pairs = new Map(describeJob(job({ state: 'E', exitcode: 3, end_time: '2024-05-01T10:01:05.000Z' })));
    expect(pairs.get('state')).to.equal('E error');
    expect(pairs.get('exit code')).to.equal('3');
    expect(pairs.get('elapsed')).to.equal('1m00s');
    expect(pairs.get('time limit')).to.equal('1h00m');
    expect(pairs.get('nodes')).to.equal('node-0 (10.0.0.4), node-1 (10.0.0.5)');
    expect(pairs.get('requested')).to.equal('cpus=2');
  });

  it('says how a job ended', () => {
    expect(jobEndLine(job({ state: 'E', signal: 9, state_details: 'killed' }))).to.equal(`${ID}  E error (signal 9)  killed\n`);
    expect(jobEndLine(job({ state: 'F', exitcode: 0, state_details: '' }))).to.equal(`${ID}  F finished (exit code 0)\n`);
  });

  it('reports transfer figures: bytes, rate not counting resumed bytes, ETA', () => {
    const mib = 1024 * 1024;
    const text = progressText({ label: 'upload', value: 30 * mib, total: 50 * mib, startValue: 10 * mib, elapsedMs: 2000 });
    expect(text).to.equal('30 MiB / 50 MiB  10 MiB/s  ETA 2s');
    expect(progressText({ label: 'x', value: 0, total: 10, startValue: 0, elapsedMs: 0 })).to.include('ETA ?');
    // Files counted beside bytes: many small files move few bytes each.
    expect(progressText({ label: 'x', value: 5, total: 10, startValue: 0, elapsedMs: 1000, files: { done: 3, total: 12 } })).to.match(/^5 B \/ 10 B {2}3\/12 files {2}/);
    expect(progressText({ label: 'x', value: 5, total: 10, startValue: 0, elapsedMs: 1000, files: { done: 0, total: 1 } })).to.contain(' 0/1 file ');
  });
});

describe('swm exit codes', () => {
  it('maps the core\'s error codes: not found 3, forbidden 4, invalid params 2, others 1', () => {
    expect(exitCodeForRpcError(ErrorCode.NotFound)).to.equal(3);
    expect(exitCodeForRpcError(ErrorCode.Forbidden)).to.equal(4);
    expect(exitCodeForRpcError(ErrorCode.InvalidParams)).to.equal(2);
    for (const code of [ErrorCode.Conflict, ErrorCode.InvalidScript, ErrorCode.Internal, ErrorCode.Unavailable, ErrorCode.Integrity])
      expect(exitCodeForRpcError(code), String(code)).to.equal(1);
  });

  it('uses the code a CliError carries, and 1 for anything unexpected', () => {
    expect(exitCodeForError(new CliError('down', ExitCode.Unreachable))).to.equal(5);
    expect(exitCodeForError(new RpcError(ErrorCode.NotFound, 'job x not found'))).to.equal(3);
    expect(exitCodeForError(new Error('boom'))).to.equal(1);
  });

  it('gives swm wait the job\'s exit code, 128+signal, 130 when canceled, 1 for an error without a code', () => {
    const end = (state: Job['state'], exitcode: number | null, signal: number | null) => exitCodeForJob({ state, exitcode, signal });
    expect(end('F', 0, null)).to.equal(0);
    expect(end('E', 3, null)).to.equal(3);
    expect(end('E', null, 9)).to.equal(137);
    expect(end('E', 143, 15)).to.equal(143);
    expect(end('C', null, 15)).to.equal(130);
    expect(end('E', null, null)).to.equal(1);
    expect(end('E', 0, null)).to.equal(1, 'an error after a clean exit (e.g. stage-out failed) is still an error');
    expect(exitCodeForJob({ state: 'E', exitcode: null, signal: null, reason: 'TimeLimit' })).to.equal(ExitCode.TimeLimit).and.to.equal(193);
    expect(exitCodeForJob({ state: 'E', exitcode: null, signal: 9, reason: 'TimeLimit' })).to.equal(193, 'the time limit, not the signal that enforced it');
    expect(end('E', 300, null)).to.equal(1, 'not a valid exit status');
    for (const s of ['Q', 'W', 'T', 'R'] as const) expect(end(s, null, null)).to.equal(null);
  });

  it('treats help and version as success and commander\'s other exits as usage errors', () => {
    expect(exitCodeForCommander(0)).to.equal(0);
    expect(exitCodeForCommander(1)).to.equal(2);
  });
});

describe('swm arguments', () => {
  it('reads job states as letters or names, comma separated or repeated', () => {
    expect(parseJobStates(['R,q', 'finished', 'R'])).to.deep.equal(['R', 'Q', 'F']);
    expect(() => parseJobStates(['done'])).to.throw(CliError, /unknown job state "done"/);
  });
});

describe('input-files directive reader', () => {
  it('reads space and comma separated values over several lines', () => {
    const script = [
      '#!/bin/sh',
      '#SWM name demo',
      '#SWM input-files data.csv, params.json',
      '  #SWM input-files images/  more.txt,,last.bin\r',
      '#SWM output-files out.csv',
      '# SWM input-files not-a-directive',
      '#SWM input-filesx nope',
      '#SWM input-files',
      'echo "#SWM input-files inside-a-command"',
    ].join('\n');
    expect(readInputFilesDirective(script)).to.deep.equal(['data.csv', 'params.json', 'images/', 'more.txt', 'last.bin']);
  });

  it('returns nothing for a script without the directive, and knows whether the script names itself', () => {
    expect(readInputFilesDirective('#!/bin/sh\necho hi\n')).to.deep.equal([]);
    expect(scriptNamesItself('#SWM name demo\n')).to.equal(true);
    expect(scriptNamesItself('#SWM name\n#SWM names x\n')).to.equal(false);
  });
});

describe('input file collection', () => {
  let cwd: string;
  beforeEach(() => {
    cwd = join(tempDir(), 'work');
    mkdirSync(join(cwd, 'data', 'sub', 'deeper'), { recursive: true });
    writeFileSync(join(cwd, 'data', 'a.txt'), 'alpha');
    writeFileSync(join(cwd, 'data', 'sub', 'b.csv'), 'x,y\n1,2\n');
    writeFileSync(join(cwd, 'data', 'sub', 'deeper', 'c.csv'), '');
    writeFileSync(join(cwd, 'params.json'), '{}');
    writeFileSync(join(dirname(cwd), 'outside.txt'), 'secret');
  });

  it('walks directories recursively and keeps each file\'s path relative to the current directory', async () => {
    const inputs = await collectInputs(['data', 'params.json'], cwd);
    expect(inputs.map((i) => [i.path, i.size])).to.deep.equal([
      ['data/a.txt', 5],
      ['data/sub/b.csv', 8],
      ['data/sub/deeper/c.csv', 0],
      ['params.json', 2],
    ]);
    expect(inputs[0]!.absolute).to.equal(join(cwd, 'data', 'a.txt'));
  });

  it('merges duplicates and accepts absolute paths inside the current directory', async () => {
    const inputs = await collectInputs(['./data/sub', join(cwd, 'data', 'sub', 'b.csv'), 'data/sub/'], cwd);
    expect(inputs.map((i) => i.path)).to.deep.equal(['data/sub/b.csv', 'data/sub/deeper/c.csv']);
  });

  it('expands glob patterns from input-files', async () => {
    const inputs = await collectInputs(['data/**/*.csv'], cwd);
    expect(inputs.map((i) => i.path)).to.deep.equal(['data/sub/b.csv', 'data/sub/deeper/c.csv']);
    await collectInputs(['data/*.nothing'], cwd).then(
      () => expect.fail('a pattern matching nothing must be refused'),
      (error: Error) => expect(error.message).to.match(/matches no file/),
    );
  });

  it('refuses paths that leave the current directory by "..", by absolute path or by a symbolic link', async () => {
    for (const spec of ['../outside.txt', join(dirname(cwd), 'outside.txt'), 'data/../../outside.txt']) {
      await collectInputs([spec], cwd).then(
        () => expect.fail(`${spec} must be refused`),
        (error: Error) => expect(error.message).to.match(/outside the current directory/),
      );
    }
    expect(() => inputPathFor(cwd, '..')).to.throw(CliError, /outside the current directory/);
    symlinkSync(join(dirname(cwd), 'outside.txt'), join(cwd, 'data', 'sub', 'link.txt'));
    await collectInputs(['data'], cwd).then(
      () => expect.fail('a link leading outside must be refused'),
      (error: Error) => expect(error.message).to.match(/symbolic link, outside the current directory/),
    );
  });

  it('follows a symbolic link that stays inside, and reports a missing input by name', async () => {
    symlinkSync(join(cwd, 'params.json'), join(cwd, 'data', 'params-link.json'));
    const inputs = await collectInputs(['data'], cwd);
    expect(inputs.map((i) => i.path)).to.include('data/params-link.json');
    await collectInputs(['nope.txt'], cwd).then(
      () => expect.fail('missing input accepted'),
      (error: Error) => expect(error.message).to.equal('input "nope.txt" does not exist'),
    );
  });

  it('hashes every input with SHA-256, streamed, counting the bytes read', async () => {
    let bytes = 0;
    const hashed = await hashInputs(await collectInputs(['data/sub'], cwd), (n) => (bytes += n));
    expect(hashed[0]!.sha256).to.equal(createHash('sha256').update('x,y\n1,2\n').digest('hex'));
    expect(hashed[1]!.sha256).to.equal(createHash('sha256').digest('hex'));
    expect(bytes).to.equal(8);
  });
});

describe('download selection and destination', () => {
  it('matches globs on the relative path: * within a segment, ** across, classes, directories', () => {
    expect(matchesGlob('out/a.csv', 'out/*.csv')).to.equal(true);
    expect(matchesGlob('out/x/a.csv', 'out/*.csv')).to.equal(false);
    expect(matchesGlob('out/x/y/a.csv', 'out/**/*.csv')).to.equal(true);
    expect(matchesGlob('out/a.csv', 'out/**/*.csv')).to.equal(true);
    expect(matchesGlob('a.csv', '**/*.csv')).to.equal(true);
    expect(matchesGlob('stdout.log', '*.log')).to.equal(true);
    expect(matchesGlob('run/stdout.log', '*.log')).to.equal(false);
    expect(matchesGlob('out/run1/result.csv', 'out')).to.equal(true, 'a directory selects what is below it');
    expect(matchesGlob('output.txt', 'out')).to.equal(false);
    expect(matchesGlob('r1.txt', 'r[0-9].txt')).to.equal(true);
    expect(matchesGlob('ra.txt', 'r[!0-9].txt')).to.equal(true);
    expect(matchesGlob('r1.txt', 'r[!0-9].txt')).to.equal(false);
    expect(matchesGlob('a+b(1).txt', 'a+b(?).txt')).to.equal(true, 'regular expression characters are literal');
    expect(matchesGlob('data.csv', 'data?csv')).to.equal(true);
    expect(globToRegExp('./a//b').source).to.equal('^a\\/b$');
  });

  it('selects the files any pattern matches and names patterns that matched nothing', () => {
    const files = [{ path: 'stdout.log' }, { path: 'out/a.csv' }, { path: 'script.sh' }];
    expect(selectByGlobs(files, [])).to.deep.equal({ selected: files, unmatched: [] });
    const { selected, unmatched } = selectByGlobs(files, ['*.log', 'out', 'missing/*']);
    expect(selected.map((f) => f.path)).to.deep.equal(['stdout.log', 'out/a.csv']);
    expect(unmatched).to.deep.equal(['missing/*']);
  });

  it('finds where a pattern walk starts', () => {
    expect(globBase('data/sub/*.csv')).to.equal('data/sub');
    expect(globBase('**/*.csv')).to.equal('');
    expect(globBase('./plain/file')).to.equal('plain/file');
  });

  it('never writes outside --to, whatever path the core sends', () => {
    const to = tempDir();
    expect(destinationPath(to, 'out/a.csv')).to.equal(join(to, 'out', 'a.csv'));
    for (const path of ['../evil', 'out/../../evil', '/etc/passwd', 'a//b', '.', `x${PARTIAL_SUFFIX}`])
      expect(() => destinationPath(to, path), path).to.throw(CliError, /refusing to write/);
  });
});

describe('log chunks', () => {
  const buf = (s: string) => Buffer.from(s);

  it('prints in-order chunks, drops repeats, trims overlaps and holds back chunks beyond a gap', () => {
    expect(takeNew(0, 0, buf('hello'))).to.deep.include({ next: 5, gap: false });
    expect(takeNew(5, 0, buf('hello')).fresh).to.equal(null);
    expect(takeNew(3, 0, buf('hello')).fresh!.toString()).to.equal('lo');
    expect(takeNew(5, 8, buf('later'))).to.deep.equal({ fresh: null, next: 5, gap: true });
  });

  it('reads a job.logs answer the same whether its offset is the start or the end of the data', () => {
    expect(chunkStart(10, { data: 'abc', offset: 10 })).to.equal(10);
    expect(chunkStart(10, { data: 'abc', offset: 13 })).to.equal(10);
    expect(chunkStart(10, { data: 'é', offset: 12 })).to.equal(10, 'offsets count bytes, not characters');
  });

  it('writes each byte once to its stream, across notifications and reads', () => {
    const out = new PassThrough();
    const cursor = new LogCursor('stdout', out);
    expect(cursor.accept(0, buf('one\n'))).to.equal(true);
    expect(cursor.accept(0, buf('one\ntwo\n'))).to.equal(true);
    expect(cursor.accept(20, buf('far\n'))).to.equal(false);
    expect(cursor.next).to.equal(8);
    expect(out.read().toString()).to.equal('one\ntwo\n');
  });
});

describe('upload resume', () => {
  const input = (path: string, size: number): LocalInput => ({ path, size, absolute: `/x/${path}`, sha256: '0'.repeat(64) });

  it('sends only what the core has not received', () => {
    const steps = remainingUploads(
      [input('a', 10), input('b', 5), input('c', 0), input('d', 7)],
      [
        { path: 'a', size: 10, received: 4 },
        { path: 'b', size: 5, received: 5 },
        { path: 'c', size: 0, received: 0 },
        { path: 'd', size: 7, received: 0 },
      ],
    );
    expect(steps.map((s) => [s.input.path, s.from])).to.deep.equal([
      ['a', 4],
      ['d', 0],
    ]);
  });

  it('refuses to resume against a job declared with other inputs', () => {
    expect(() => remainingUploads([input('a', 10)], [])).to.throw(CliError, /does not expect input "a"/);
    expect(() => remainingUploads([input('a', 10)], [{ path: 'a', size: 11, received: 0 }])).to.throw(CliError, /11 bytes/);
  });

  it('recognises the same submission whatever the order of its inputs, and forgets it once done', () => {
    const a = { path: 'a', size: 1, sha256: '1'.repeat(64) };
    const b = { path: 'b', size: 2, sha256: '2'.repeat(64) };
    const key = uploadKey({ coreUrl: 'wss://c', script: 's', inputs: [a, b] });
    expect(uploadKey({ coreUrl: 'wss://c', script: 's', inputs: [b, a] })).to.equal(key);
    expect(uploadKey({ coreUrl: 'wss://c', script: 's', inputs: [a, { ...b, sha256: '3'.repeat(64) }] })).to.not.equal(key);
    expect(uploadKey({ coreUrl: 'wss://c', script: 's2', inputs: [a, b] })).to.not.equal(key);
    const pending = new PendingUploads(tempDir());
    expect(pending.recall(key)).to.equal(null);
    pending.remember(key, ID);
    expect(pending.recall(key)).to.equal(ID);
    pending.forget(key);
    expect(pending.recall(key)).to.equal(null);
  });
});

describe('swm bundle loading', () => {
  let pems: Record<string, string>;
  before(() => {
    const ca = createCa('swm test CA');
    pems = { 'cert.pem': ca.certPem, 'key.pem': ca.keyPem, 'ca.pem': ca.certPem };
  });
  const writeBundle = (dir: string, config: unknown): void => {
    mkdirSync(dir, { recursive: true });
    for (const [f, pem] of Object.entries(pems)) writeFileSync(join(dir, f), pem);
    if (config !== undefined) writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  };

  it('says what to do when there is no certificate', () => {
    const home = tempDir();
    expect(() => loadBundle({ home })).to.throw(CliError, `no certificate in ${home}: run swm-setup or ask an admin for a bundle`);
  });

  it('reads the core URL from config.json, and SWM_CORE_URL overrides it', () => {
    const home = tempDir();
    writeBundle(home, { coreUrl: 'wss://core.example:8443', user: 'alice' });
    const bundle = loadBundle({ home });
    expect(bundle).to.deep.include({ coreUrl: 'wss://core.example:8443/', user: 'alice', home });
    expect(bundle.credentials.key).to.equal(pems['key.pem']);
    expect(loadBundle({ home, coreUrl: 'https://other:9443' }).coreUrl).to.equal('wss://other:9443/');
  });

  it('names the bad key of an invalid config.json, refuses a core URL without TLS, and names a damaged PEM file', () => {
    const home = tempDir();
    writeBundle(home, { coreUrl: 'wss://core:8443', extra: 1 });
    expect(() => loadBundle({ home })).to.throw(CliError, /config\.json.*extra|Unrecognized key/);
    expect(() => normalizeCoreUrl('ws://core:8443', 'SWM_CORE_URL')).to.throw(CliError, /must start with wss:\/\//);
    writeFileSync(join(home, 'key.pem'), 'not a pem');
    expect(() => loadBundle({ home, coreUrl: 'wss://core:8443' })).to.throw(CliError, /key\.pem is not a valid PEM key/);
  });

  it('exits 5 when the core cannot be reached', async () => {
    const home = tempDir();
    writeBundle(home, undefined);
    // Port 1 on loopback: nothing listens there, the connection is refused at once.
    const unreachable = await runSwm(['--home', home, 'jobs'], { SWM_CORE_URL: 'wss://127.0.0.1:1' });
    expect(unreachable.code).to.equal(5);
    expect(unreachable.stderr).to.equal('swm: cannot reach the core at wss://127.0.0.1:1/: connect ECONNREFUSED 127.0.0.1:1\n');
  });
});

describe('swm command line', () => {
  const allCommands = (command: Command): Command[] => command.commands.flatMap((c) => [c, ...allCommands(c)]);
  const helpOf = (command: Command): string => {
    let text = '';
    command.configureOutput({ writeOut: (s) => (text += s), writeErr: (s) => (text += s) });
    command.outputHelp();
    return text;
  };

  it('gives every command a description and an example in its --help', () => {
    const commands = allCommands(buildProgram());
    const names = commands.map((c) => c.name());
    for (const expected of ['status', 'submit', 'jobs', 'show', 'logs', 'wait', 'cancel', 'requeue', 'download', 'remotes', 'flavors', 'images', 'partitions', 'add', 'revoke'])
      expect(names).to.include(expected);
    for (const command of commands) {
      expect(command.description(), command.name()).to.not.equal('');
      expect(helpOf(command), command.name()).to.match(/Examples?:\n {2}\$ swm /);
    }
  });

  it('documents the exit status of swm wait in its --help: printed by default, passed on with --exit-code', async () => {
    const run = await runSwm(['wait', '--help']);
    expect(run.code).to.equal(0);
    expect(run.stdout).to.include('128+N').and.include('130').and.include('124').and.include('--exit-code');
    expect(run.stdout).to.include('a non-zero exit is always swm\'s own failure');
  });

  it('exits 2 with "swm: <message>" on stderr for usage errors', async () => {
    const unknown = await runSwm(['frobnicate']);
    expect(unknown.code).to.equal(2);
    expect(unknown.stderr).to.match(/^swm: unknown command 'frobnicate'/);
    const noScript = await runSwm(['submit'], { SWM_HOME: tempDir() });
    expect(noScript.code).to.equal(2);
    expect(noScript.stderr).to.match(/^swm: which job script\?/);
    const noJobs = await runSwm(['cancel'], { SWM_HOME: tempDir() });
    expect(noJobs.code).to.equal(2);
    expect(noJobs.stderr).to.match(/^swm: which jobs\?/);
    const both = await runSwm(['submit', 'job.sh', '--wrap', 'true'], { SWM_HOME: tempDir() });
    expect(both.code).to.equal(2);
    const ended = await runSwm(['cancel', '--state', 'F'], { SWM_HOME: tempDir() });
    expect(ended.code).to.equal(2);
    expect(ended.stderr).to.include('have ended');
  });

  it('exits 1 and says what to do when the bundle is missing', async () => {
    const home = tempDir();
    const missing = await runSwm(['jobs'], { SWM_HOME: home });
    expect(missing.code).to.equal(1);
    expect(missing.stderr).to.equal(`swm: no certificate in ${home}: run swm-setup or ask an admin for a bundle\n`);
  });
});
