import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import type { Job } from '../terminal-protocol/job.js';
import { completionScript } from '../terminal/completion.js';
import { CliError } from '../terminal/exit-codes.js';
import { idShortener, shortIdLength } from '../terminal/format.js';
import { ambiguityMessage, fullJobId, matchJobs } from '../terminal/job-reference.js';
import { checkActiveStates, selectJobs } from '../terminal/job-selection.js';
import { lastLines } from '../terminal/log-stream.js';
import { buildProgram } from '../terminal/program.js';
import { applyOverrides, wrapCommand } from '../terminal/script-overrides.js';

const job = (id: string, over: Partial<Job> = {}): Job => ({
  id,
  name: 'job',
  owner: 'alice',
  state: 'R',
  state_details: '',
  submit_time: '2024-05-01T10:00:00.000Z',
  start_time: null,
  end_time: null,
  duration: 0,
  exitcode: null,
  signal: null,
  node_names: [],
  node_ips: [],
  remote_id: null,
  flavor_id: null,
  request: [],
  resources: [],
  comment: '',
  priority: 0,
  ports: [],
  ...over,
});

const A = '3f2b8c1e-5d4a-4e6f-9a7b-1c2d3e4f5a6b';
const B = '3f2b9d00-0000-4000-8000-000000000001';
const C = '9a0d1111-0000-4000-8000-000000000002';

describe('job references (id, prefix, name)', () => {
  const jobs = [job(A, { name: 'train' }), job(B, { name: 'eval' }), job(C, { name: 'eval' })];

  it('takes a full id as it is, in any case', () => {
    expect(fullJobId(A.toUpperCase())).to.equal(A);
    expect(fullJobId('3f2b8c1e')).to.equal(null);
  });

  it('finds a job by a unique prefix of 4 characters or more, or by a unique name', () => {
    expect(matchJobs(jobs, '3f2b8')).to.deep.equal({ kind: 'one', job: jobs[0] });
    expect(matchJobs(jobs, '9A0D')).to.deep.equal({ kind: 'one', job: jobs[2] });
    expect(matchJobs(jobs, 'train')).to.deep.equal({ kind: 'one', job: jobs[0] });
    expect(matchJobs(jobs, '3f2b8c1e-5d')).to.deep.equal({ kind: 'one', job: jobs[0] });
  });

  it('reports an ambiguous prefix or a name borne by several jobs with every candidate', () => {
    const prefix = matchJobs(jobs, '3f2b');
    expect(prefix).to.deep.equal({ kind: 'many', jobs: [jobs[0], jobs[1]] });
    expect(matchJobs(jobs, 'eval')).to.deep.equal({ kind: 'many', jobs: [jobs[1], jobs[2]] });
    const message = ambiguityMessage('3f2b', [jobs[0]!, jobs[1]!]);
    expect(message).to.match(/^"3f2b" names 2 jobs/);
    expect(message).to.include('3f2b8c1e  R').and.include('train').and.include('3f2b9d00  R').and.include('eval');
  });

  it('refuses a prefix under 4 characters, and finds nothing for an unknown one', () => {
    expect(matchJobs(jobs, '3f2')).to.deep.equal({ kind: 'too-short' });
    expect(matchJobs(jobs, 'ffff')).to.deep.equal({ kind: 'none' });
    expect(matchJobs(jobs, 'nightly')).to.deep.equal({ kind: 'none' });
  });
});

describe('short ids in tables', () => {
  it('shows 8 characters, more only where two ids shown would share them', () => {
    expect(shortIdLength([A, C])).to.equal(8);
    expect(shortIdLength([A, '3f2b8c1e-9999-4000-8000-000000000000'])).to.equal(10);
    expect(shortIdLength([])).to.equal(8);
    expect(idShortener([A, C], false)(A)).to.equal('3f2b8c1e');
    expect(idShortener([A, C], true)(A)).to.equal(A);
  });
});

describe('choosing jobs to cancel', () => {
  const jobs = [
    job(A, { name: 'sweep', state: 'Q' }),
    job(B, { name: 'sweep', state: 'R', owner: 'bob' }),
    job(C, { name: 'sweep', state: 'F' }),
  ];

  it('selects by state, name and owner together, never a job that ended', () => {
    expect(selectJobs(jobs, { states: [] }).map((j) => j.id)).to.deep.equal([A, B]);
    expect(selectJobs(jobs, { states: ['R'] }).map((j) => j.id)).to.deep.equal([B]);
    expect(selectJobs(jobs, { states: [], name: 'sweep', owner: 'alice' }).map((j) => j.id)).to.deep.equal([A]);
    expect(selectJobs(jobs, { states: [], name: 'other' })).to.deep.equal([]);
  });

  it('refuses to choose by a state in which jobs have ended', () => {
    expect(() => checkActiveStates(['F', 'Q'])).to.throw(CliError, /F \(finished\) have ended/).with.property('exitCode', 2);
    expect(() => checkActiveStates(['Q', 'R'])).to.not.throw();
  });
});

describe('swm logs --tail', () => {
  it('keeps the last N lines, with or without a final newline', () => {
    expect(lastLines('a\nb\nc\n', 2)).to.equal('b\nc\n');
    expect(lastLines('a\nb\nc', 2)).to.equal('b\nc');
    expect(lastLines('a\n', 5)).to.equal('a\n');
    expect(lastLines('a\nb\n', 0)).to.equal('');
    expect(lastLines('', 3)).to.equal('');
  });
});

describe('submit-time overrides of directives', () => {
  const script = ['#!/bin/sh', '#SWM flavor big', '#SWM env A=1', '#SWM output-files a.txt', '#swm nodes 4', 'echo hi', ''].join('\n');

  it('leaves a script without overrides as it is', () => {
    expect(applyOverrides(script, {}).script).to.equal(script);
  });

  it("turns the script's overridden lines into comments, keeping line numbers, and appends the flags' directives", () => {
    const { script: out, flagOfLine } = applyOverrides(script, {
      nodes: '2',
      flavor: 'local.small',
      remote: 'local',
      image: 'docker.io/library/alpine:3',
      duration: '00:10:00',
      env: ['B=2', 'A=3'],
      outputFiles: ['x.bin,y.txt', 'z'],
    });
    const lines = out.split('\n');
    expect(lines.slice(0, 6)).to.deep.equal(['#!/bin/sh', '##SWM flavor big', '#SWM env A=1', '##SWM output-files a.txt', '##swm nodes 4', 'echo hi']);
    expect(lines.slice(7)).to.deep.equal([
      '#SWM nodes 2',
      '#SWM flavor local.small',
      '#SWM remote local',
      '#SWM container-image docker.io/library/alpine:3',
      '#SWM duration 00:10:00',
      '#SWM output-files x.bin,y.txt z',
      '#SWM env B=2',
      '#SWM env A=3',
      '',
    ]);
    expect(flagOfLine.get(8)).to.equal('--nodes 2');
    expect(flagOfLine.get(15)).to.equal('--env A=3');
  });

  it('refuses values that would add lines of their own, and env entries that are not NAME=VALUE', () => {
    expect(() => applyOverrides(script, { flavor: 'a\n#SWM priority 1000' })).to.throw(CliError, /line break/).with.property('exitCode', 2);
    expect(() => applyOverrides(script, { env: ['NOVALUE'] })).to.throw(CliError, /NAME=VALUE/);
    expect(() => applyOverrides(script, { env: ['1A=x'] })).to.throw(CliError, /NAME=VALUE/);
  });

  it('wraps a command into a script run by /bin/sh', () => {
    expect(wrapCommand('echo "$HOME" | wc -c')).to.equal('#!/bin/sh\necho "$HOME" | wc -c\n');
  });
});

describe('shell completion', () => {
  const swm = ['/usr/bin/env', 'echo', 'job-one', 'job-two'];
  const bash = completionScript('bash', buildProgram(), swm);

  /** What bash offers after `words` (the last one is the word being completed). */
  const complete = (words: string[]): string[] => {
    const line = `${bash}\nCOMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _swm; printf '%s\\n' "\${COMPREPLY[@]}"`;
    return execFileSync('bash', ['-c', line], { encoding: 'utf8' }).split('\n').filter(Boolean);
  };

  it('completes commands, subcommands and options in bash', () => {
    expect(complete(['swm', 'su'])).to.deep.equal(['submit']);
    expect(complete(['swm', 'admin', 'user', ''])).to.deep.equal(['add', 'revoke']);
    expect(complete(['swm', 'submit', '--wr'])).to.deep.equal(['--wrap']);
    expect(complete(['swm', 'cancel', '--st'])).to.deep.equal(['--state']);
    expect(complete(['swm', 'logs', '--t'])).to.deep.equal(['--tail']);
  });

  it('completes job arguments with what swm jobs --quiet prints', () => {
    // The stand-in for swm prints its arguments: "jobs --quiet job-one job-two".
    expect(complete(['swm', 'logs', 'job-'])).to.deep.equal(['job-one', 'job-two']);
    expect(complete(['swm', 'cancel', '--all', 'jobs'])).to.deep.equal(['jobs']);
  });

  it('completes in zsh from the same tree (where zsh is installed)', function () {
    const zshPath = ['/usr/bin/zsh', '/bin/zsh'].find((p) => existsSync(p));
    if (!zshPath) this.skip();
    const zsh = completionScript('zsh', buildProgram(), swm);
    // compadd and _files only work inside a completion widget: stand-ins print what would be offered.
    const offered = (words: string[]): string[] =>
      execFileSync(zshPath!, ['-f', '-c', `${zsh}\ncompadd() { shift; print -l -- "$@"; }; _files() { print FILES; }\nwords=(${words.map((w) => `'${w}'`).join(' ')}); CURRENT=${words.length}; _swm`], {
        encoding: 'utf8',
      })
        .split('\n')
        .filter(Boolean);
    expect(offered(['swm', 'admin', 'user', ''])).to.deep.equal(['add', 'revoke']);
    expect(offered(['swm', 'submit', '--w'])).to.include('--wrap').and.include('--wait');
    expect(offered(['swm', 'logs', ''])).to.deep.equal(['job-one job-two jobs --quiet']);
    expect(offered(['swm', 'submit', ''])).to.deep.equal(['FILES']);
  });

  it('writes a zsh script from the same tree', () => {
    const zsh = completionScript('zsh', buildProgram(), swm);
    expect(zsh).to.match(/^#compdef swm\n/);
    expect(zsh).to.include("'submit') echo").and.include('--wrap').and.include('compdef _swm swm');
    expect(zsh).to.include("'logs'|").and.include('_files');
  });
});
