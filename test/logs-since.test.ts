import { expect } from 'chai';
import type { TerminalClient } from '../terminal-protocol/client.js';
import { clockOffset } from '../core/jobs/job-logs.js';
import { runSwm } from './harness/pty.js';
import { SWM_MAIN, isFinal, startFixture, waitForJob, type CoreFixture } from './harness/core.js';

/** The real `swm` as a script runs it, with `home` as its SWM_HOME. */
const swm = (home: string, args: string[]) => runSwm(SWM_MAIN, args, { env: { SWM_HOME: home } });

/** Resolves with the time a job.log push carrying `text` arrived (the job is subscribed to by the caller). */
function whenLogged(client: TerminalClient, id: string, text: string): Promise<number> {
  return new Promise((resolve) => {
    const listener = (name: string, params: { id: string; data: string }) => {
      if (name !== 'job.log' || params.id !== id || !params.data.includes(text)) return;
      client.off('notification', listener);
      resolve(Date.now());
    };
    client.on('notification', listener);
  });
}

describe('swm logs --since: output from a moment on, by the log clock the node keeps', function () {
  this.timeout(90_000);

  it('finds the offset of the last note of the clock before the moment (pure)', () => {
    const clock = '1000 0 0\n1005 6 0\n1010 11 4\n';
    expect(clockOffset(clock, 'stdout', 999_000)).to.equal(0);
    expect(clockOffset(clock, 'stdout', 1_007_500)).to.equal(6);
    expect(clockOffset(clock, 'stderr', 1_012_000)).to.equal(4);
    expect(clockOffset(clock, 'stdout', 2_000_000)).to.equal(11);
    expect(clockOffset('garbage\n', 'stdout', 2_000_000)).to.equal(0);
  });

  describe('against a real core', () => {
    let f: CoreFixture;
    before(async () => {
      f = await startFixture();
    });
    after(async () => f?.stop());

    it('prints what the job wrote since then, while it runs and once it has ended', async () => {
      const home = f.spool.homeDir;
      const { id } = await f.admin.call('job.submit', { script: '#!/bin/sh\necho early\nsleep 7\necho late\nexec sleep 300\n' });
      const late = whenLogged(f.admin, id, 'late');
      await waitForJob(f.admin, id, (j) => j.state === 'R' || isFinal(j), 60_000);
      const lateAt = await late;
      // A moment after "early" was noted (5 s in) and before "late" was (10 s in): only "late" is newer.
      const since = new Date(lateAt).toISOString();
      const running = await swm(home, ['logs', id, '--since', since]);
      expect(running.code, running.stderr).to.equal(0);
      expect(running.stdout).to.equal('late\n');
      const everything = await swm(home, ['logs', id, '--since', '1h']);
      expect(everything.stdout).to.equal('early\nlate\n');
      await f.admin.call('job.cancel', { id });
      await waitForJob(f.admin, id, isFinal, 60_000);
      const ended = await swm(home, ['logs', id, '--since', since, '--json']);
      expect(JSON.parse(ended.stdout)).to.include({ data: 'late\n', final: true });
    });
  });
});
