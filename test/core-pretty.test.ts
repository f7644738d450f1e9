import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CORE_MAIN, connectTerminal, isFinal, killGates, waitForJob } from './harness/core.js';
import { makeTestSpool, type TestSpool } from './harness/spool.js';
import { submitJob } from './harness/submit.js';

describe('swm-core --pretty', function () {
  this.timeout(60_000);
  let spool: TestSpool;
  before(async () => (spool = await makeTestSpool()));
  after(() => {
    killGates(spool);
    spool.cleanup();
  });

  it('prints the log for a person on stderr, job and partition first, and keeps JSON lines in the spool', async () => {
    const child = spawn(process.execPath, [CORE_MAIN, '--spool', spool.spoolDir, '--pretty'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    const exited = new Promise((resolve) => child.once('exit', resolve));
    try {
      await new Promise<void>((resolve, reject) => {
        child.stderr!.on('data', (chunk: Buffer) => {
          stderr += chunk.toString();
          if (/listening on port/.test(stderr)) resolve();
        });
        child.once('exit', (code) => reject(new Error(`swm-core exited with ${code}:\n${stderr}`)));
      });
      const terminal = await connectTerminal(spool.homeDir);
      const id = await submitJob(terminal, '#!/bin/sh\necho pretty\n');
      expect((await waitForJob(terminal, id, isFinal)).state).to.equal('F');
      await terminal.close();
      child.kill('SIGTERM');
      await exited;
    } finally {
      child.kill('SIGKILL');
    }
    const moved = stderr.split('\n').filter((line) => line.includes(`job ${id(stderr)}`));
    expect(moved.length, stderr).to.be.greaterThan(2);
    expect(stderr).to.match(/INFO.*: job [0-9a-f-]{36} \[job-[0-9a-f-]{36}\] job moved/);
    expect(stderr).to.not.include('{"level"');
    const file = readFileSync(join(spool.spoolDir, 'logs', 'core.log'), 'utf8').trim().split('\n');
    expect(file.every((line) => line.startsWith('{'))).to.equal(true);
  });
});

/** The first job id the log names. */
const id = (log: string): string => /job ([0-9a-f-]{36})/.exec(log)![1]!;
