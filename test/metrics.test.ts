import { expect } from 'chai';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { adminBundle, closeCodeOf, openRawSocket, spoolCaPem, type ClientBundle } from './harness/certs.js';
import { isFinal, startFixture, waitForJob, type CoreFixture } from './harness/core.js';
import { rest } from './harness/rest-client.js';
import { submitJob } from './harness/submit.js';

describe('GET /metrics (Prometheus text format, monitor certificates)', function () {
  this.timeout(60_000);
  let f: CoreFixture;
  let monitor: ClientBundle;
  let user: ClientBundle;

  before(async () => {
    f = await startFixture();
    monitor = await f.admin.call('admin.user.add', { name: 'prometheus', monitor: true });
    user = await f.admin.call('admin.user.add', { name: 'carol' });
  });
  after(async () => {
    await f?.stop();
  });

  let lastText = '';
  const scrape = async (bundle: ClientBundle = monitor) => {
    const response = await rest(f.core.port, bundle, '/metrics');
    expect(response.status, response.text).to.equal(200);
    expect(response.headers['content-type']).to.match(/^text\/plain; version=0\.0\.4/);
    lastText = response.text;
    return parsePrometheusTextFormat(response.text);
  };
  /**
   * One labelled series of a histogram. The parser reads histograms whose only label is `le`: the series is
   * handed to it on its own, its other label taken off.
   */
  const histogramSeries = (text: string, name: string, label: string, value: string) => {
    const mark = `${label}="${value}"`;
    const lines = text
      .split('\n')
      .filter((line) => line.startsWith(`# HELP ${name} `) || line.startsWith(`# TYPE ${name} `) || (line.startsWith(`${name}_`) && line.includes(mark)))
      .map((line) => line.replace(new RegExp(`,?${mark}`), '').replace('{}', ''));
    return parsePrometheusTextFormat(lines.join('\n') + '\n')[0]?.metrics[0];
  };
  const family = (families: ReturnType<typeof parsePrometheusTextFormat>, name: string) => {
    const found = families.find((m) => m.name === name);
    if (!found) throw new Error(`no metric ${name}`);
    return found;
  };
  const valueOf = (families: ReturnType<typeof parsePrometheusTextFormat>, name: string, labels: Record<string, string> = {}): number => {
    const sample = family(families, name).metrics.find((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v));
    return sample ? Number(sample.value) : 0;
  };

  it('counts the jobs run, by state and remote, their submissions and step durations, and the partitions', async () => {
    const before = await scrape();
    const finishedBefore = valueOf(before, 'swm_jobs', { state: 'F', remote: 'local' });
    const submittedBefore = valueOf(before, 'swm_jobs_submitted_total');
    const moved = (families: ReturnType<typeof parsePrometheusTextFormat>, direction: string) => valueOf(families, 'swm_transfer_bytes_total', { direction });
    const input = { path: 'data.bin', content: Buffer.alloc(300_000, 1) };
    const ids = [await submitJob(f.admin, '#!/bin/sh\n#SWM input-files data.bin\ncp data.bin out.bin\n#SWM output-files out.bin\n', [input]), await submitJob(f.admin, '#!/bin/sh\nexit 3\n')];
    for (const id of ids) await waitForJob(f.admin, id, isFinal);
    const after = await scrape();
    expect(valueOf(after, 'swm_jobs', { state: 'F', remote: 'local' })).to.equal(finishedBefore + 1);
    expect(valueOf(after, 'swm_jobs', { state: 'E', remote: 'local' })).to.be.at.least(1);
    expect(valueOf(after, 'swm_jobs_submitted_total')).to.equal(submittedBefore + 2);
    // The input went up to the core and on to the node; the copy came back (its stdout and stderr besides).
    expect(moved(after, 'upload') - moved(before, 'upload')).to.equal(300_000);
    expect(moved(after, 'stage-in') - moved(before, 'stage-in')).to.equal(300_000);
    expect(moved(after, 'stage-out') - moved(before, 'stage-out')).to.be.at.least(300_000);
    expect(family(after, 'swm_job_step_seconds').type).to.equal('HISTOGRAM');
    for (const step of ['queue', 'partition', 'connect', 'stage-in', 'run', 'stage-out', 'teardown']) {
      const series = histogramSeries(lastText, 'swm_job_step_seconds', 'step', step);
      expect(Number(series?.count), `jobs timed in ${step}`).to.be.at.least(2);
      expect(Number(series?.buckets?.['+Inf'])).to.equal(Number(series?.count));
    }
    // The harness deletes partitions as jobs end: none left, every state listed for the remote.
    const partitions = family(after, 'swm_partitions').metrics.filter((m) => m.labels?.remote === 'local');
    expect(partitions.map((m) => m.labels!.state).sort()).to.deep.equal(['busy', 'creating', 'deleting', 'failed', 'idle', 'ready', 'requested', 'retrying']);
    expect(partitions.every((m) => Number(m.value) === 0)).to.equal(true);
    expect(Number(family(after, 'swm_store_commit_seconds').metrics[0]!.count)).to.be.greaterThan(0);
    expect(valueOf(after, 'swm_gate_up', { gate: 'local' })).to.equal(1);
    expect(valueOf(after, 'swm_core_nodejs_eventloop_lag_seconds')).to.be.a('number');
  });

  it('is refused to user certificates, and a monitor certificate gets nothing else', async () => {
    expect((await rest(f.core.port, user, '/metrics')).status).to.equal(403);
    expect((await rest(f.core.port, { ...monitor }, '/user/job')).status).to.equal(403);
    // Admins may look; without a certificate, the TLS handshake itself is refused.
    expect((await rest(f.core.port, adminBundle(f.spool), '/metrics')).status).to.equal(200);
    const anonymous = await rest(f.core.port, { caPem: spoolCaPem(f.spool) }, '/metrics').then(
      (r) => r.status,
      () => 'refused',
    );
    expect(anonymous).to.not.equal(200);
    const socket = await openRawSocket(f.core.port, monitor);
    expect(await closeCodeOf(socket)).to.equal(4003);
  });
});
