import { expect } from 'chai';
import { dryRunText } from '../terminal/commands/submit.js';
import { runSwm } from './harness/pty.js';
import { SWM_MAIN, isFinal, startFixture, waitForJob, type CoreFixture } from './harness/core.js';

/** The real `swm` as a script runs it, with `home` as its SWM_HOME. */
const swm = (home: string, args: string[]) => runSwm(SWM_MAIN, args, { env: { SWM_HOME: home } });

describe('swm submit --dry-run, and --wait on an array', function () {
  this.timeout(90_000);
  let f: CoreFixture;
  let home: string;
  before(async () => {
    f = await startFixture();
    home = f.spool.homeDir;
    // Once a first job has run, the local gate has told the core its flavors: a plan can place a job now.
    const first = await f.admin.call('job.submit', { script: '#!/bin/sh\ntrue\n' });
    await waitForJob(f.admin, first.id, isFinal);
  });
  after(async () => f?.stop());

  it('prints the price of all the nodes an hour, per task for an array (pure)', () => {
    const plan = { warnings: [], tasks: 10, remote: 'azure', flavor: 'Standard_D2s_v5', nodes: 2, starts: false, never: false, reuse: null, reason: 'Priority', position: 3, pricePerHour: 0.192, currency: 'USD' };
    expect(dryRunText(plan)).to.equal(
      'valid: 10 tasks of 2 nodes of Standard_D2s_v5 on remote azure\nwould wait: Priority (#3 in line)\nprice: 0.1920 USD per hour per task\nnothing was submitted (--dry-run)\n',
    );
  });

  const jobCount = async (): Promise<number> => (await f.admin.call('job.list', {})).jobs.length;

  it('checks the script, says where the scheduler would start it now and at what price, and submits nothing', async () => {
    const before = await jobCount();
    const run = await swm(home, ['submit', '--wrap', 'true', '--nodes', '2', '--dry-run']);
    expect(run.code, run.stderr).to.equal(0);
    expect(run.stdout).to.match(/^valid: 2 nodes of \S+ on remote local\n/);
    expect(run.stdout, run.stdout).to.contain('would start now, on a new partition');
    const json = JSON.parse((await swm(home, ['submit', '--wrap', 'true', '--nodes', '2', '--dry-run', '--json'])).stdout);
    expect(json).to.include({ starts: true, never: false, nodes: 2, remote: 'local', tasks: 1 });
    // The price is the flavor's per node-hour, times the nodes; the local gate publishes none.
    const flavor = (await f.admin.call('flavor.list', { remote: 'local' })).find((x) => x.name === json.flavor)!;
    expect(json.pricePerHour).to.equal(flavor.pricePerHour === undefined ? null : flavor.pricePerHour * 2);
    expect(await jobCount()).to.equal(before);
  });

  it('says a job would never run when its dependency failed, exiting 1; a malformed script is refused as at submit', async () => {
    const failed = await f.admin.call('job.submit', { script: '#!/bin/sh\nexit 2\n' });
    await waitForJob(f.admin, failed.id, isFinal);
    const never = await swm(home, ['submit', '--wrap', 'true', '--depends', `afterok:${failed.id}`, '--dry-run']);
    expect(never.code).to.equal(1);
    expect(never.stdout).to.match(/would never run: DependencyNeverSatisfied \(afterok:[0-9a-f-]+ ended failed\)/);
    const bad = await swm(home, ['submit', '--wrap', 'true', '--nodes', 'many', '--dry-run']);
    expect(bad.code).to.equal(2);
  });

  it('waits for every task of an array and exits with the first status that is not 0', async () => {
    const run = await swm(home, ['submit', '--wrap', 'exit $SWM_ARRAY_TASK_ID', '--array', '0-2', '--wait']);
    expect(run.code, run.stderr).to.equal(1);
    expect(run.stderr).to.match(/submitted array [0-9a-f-]{36} \(3 tasks\)/);
    expect(run.stderr.match(/ F finished| E /g)).to.have.length(3);
  });
});
