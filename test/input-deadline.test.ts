import { expect } from 'chai';
import { isFinal, startFixture, waitForJob, type CoreFixture } from './harness/core.js';

describe('a job whose inputs never arrive', function () {
  this.timeout(30_000);
  let f: CoreFixture;
  before(async () => (f = await startFixture({ configure: (config) => (config.limits.inputsTimeoutSec = 2) })));
  after(async () => f?.stop());

  it('is canceled once its inputs are late past limits.inputsTimeoutSec, with that reason', async () => {
    const { id, awaitingInputs } = await f.admin.call('job.submit', {
      script: '#!/bin/sh\n#SWM input-files data.bin\ncat data.bin\n',
      inputs: [{ path: 'data.bin', size: 10, sha256: 'a'.repeat(64) }],
    });
    expect(awaitingInputs).to.equal(true);
    const started = Date.now();
    const job = await waitForJob(f.admin, id, isFinal, 15_000);
    expect(job.state).to.equal('C');
    expect(job.state_details).to.include('input files did not all arrive within 2 s');
    expect(Date.now() - started, 'not before its time').to.be.at.least(1_500);
  });
});
