import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { PartitionJournal } from '../gates/azure/partition-journal.js';
import { deletionReason } from '../gates/azure/reconciler.js';
import { FakeArm } from './fakes/azure-arm/index.js';
import { partitionRequest, startAzureGate, type GateHarness } from './fakes/azure-arm/gate-harness.js';
import { testKeyPair } from './harness/keys.js';

const CORE = 'core-azure-test';
const VM = 'Microsoft.Compute/virtualMachines';
const sshKey = testKeyPair();
const request = (name: string, overrides: Parameters<typeof partitionRequest>[2] = {}) => partitionRequest(name, sshKey.public, overrides);
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Cost safety that does not depend on the core: every resource carries its expiry, every node powers itself off
 * then, and the gate reconciles on its own (expired partitions, orphans, creations a stopped gate left), recording
 * each intent before acting and forgetting a partition only once its deletion is read back.
 */
describe('azure gate: cost safety without the core', function () {
  this.timeout(30_000);
  let fake: FakeArm;
  let dir: string;
  const open: GateHarness[] = [];

  before(async () => {
    fake = await FakeArm.start({ provisioningDelayMs: 40, deletionDelayMs: 30, operationRetryAfterSec: null, throttling: false });
  });
  beforeEach(() => {
    // A spool (and journal) per test: each plays one gate's life, or its restart.
    dir = mkdtempSync(join(tmpdir(), 'azure-cost-'));
  });
  afterEach(async () => {
    fake.clearFaults();
    await Promise.all(open.splice(0).map((h) => h.gate.close()));
    rmSync(dir, { recursive: true, force: true });
  });
  after(() => fake.stop());

  const start = async (overrides: Record<string, unknown> = {}): Promise<GateHarness> => {
    const h = await startAzureGate(fake, dir, overrides);
    open.push(h);
    return h;
  };
  const inGroup = (group: string): Record<string, any>[] => fake.resources().filter((r) => r.id.toLowerCase().includes(`/resourcegroups/${group.toLowerCase()}/`));
  const groupOf = (name: string) => fake.groups().find((g) => g.name === `${name}-rg`);
  const journal = (): PartitionJournal => new PartitionJournal(join(dir, 'gates', 'azure', 'azure-partitions.json'));
  const until = async (what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> => {
    const end = Date.now() + timeoutMs;
    while (!check()) {
      if (Date.now() > end) throw new Error(`${what}: not within ${timeoutMs} ms`);
      await sleep(20);
    }
  };

  describe('expiry', () => {
    it('tags everything with its core, job, partition, gate and expiry: the job\'s duration or the remote\'s maximum, plus the margin', async () => {
      const h = await start({ maxLifetimeSec: 3600, expiryMarginSec: 600 });
      const before = Date.now();
      await h.gate.create(request('longest', { nodeCount: 2 }));
      await h.gate.create(request('short', { tags: { 'skyport-lifetime-sec': '120' } }));
      await Promise.all([h.waitFor('longest', 'up'), h.waitFor('short', 'up')]);
      const expiry = (name: string): number => Date.parse(groupOf(name)!.tags['skyport-expires']!);
      expect(expiry('longest') - before).to.be.within(4200_000 - 1000, 4200_000 + 5000);
      expect(expiry('short') - before).to.be.within(720_000 - 1000, 720_000 + 5000);
      for (const name of ['longest', 'short']) {
        const resources = inGroup(`${name}-rg`).filter((r) => r.type !== 'Microsoft.Compute/disks');
        expect(resources.length).to.be.at.least(name === 'longest' ? 9 : 4);
        for (const r of [...resources, groupOf(name)!])
          expect(r.tags, r.id).to.include({
            'skyport-core': CORE,
            'skyport-job': `job-${name}`,
            'skyport-partition': name,
            'skyport-gate': 'azure',
            'skyport-expires': groupOf(name)!.tags['skyport-expires'],
          });
      }
      await Promise.all(['longest', 'short'].map(async (n) => (await h.gate.delete(n), h.waitFor(n, 'deleted'))));
    });

    it('arms a power-off timer at the expiry on every node, in cloud-init', async () => {
      const h = await start({ maxLifetimeSec: 600, expiryMarginSec: 0 });
      await h.gate.create(request('timed'));
      await h.waitFor('timed', 'up');
      const vm = inGroup('timed-rg').find((r) => r.type === VM)!;
      const config = JSON.parse(Buffer.from(fake.customDataOf(vm.id)!, 'base64').toString('utf8').replace(/^#cloud-config\n/, ''));
      const file = (path: string): string => config.write_files.find((f: { path: string }) => f.path === path).content;
      const at = new Date(vm.tags['skyport-expires']);
      expect(file('/etc/systemd/system/skyport-expiry.timer')).to.include(`OnCalendar=${at.toISOString().slice(0, 10)} ${at.toISOString().slice(11, 19)} UTC`).and.include('Persistent=true');
      expect(file('/etc/systemd/system/skyport-expiry.service')).to.include('ExecStart=/usr/sbin/shutdown -P now');
      expect(config.runcmd).to.deep.include(['systemctl', 'enable', '--now', 'skyport-expiry.timer']);
      await h.gate.delete('timed');
      await h.waitFor('timed', 'deleted');
    });

    it('powers off at its expiry with the core and its gate gone, and the next reconciliation deletes it', async () => {
      const maker = await start({ maxLifetimeSec: 1.5, expiryMarginSec: 0 });
      await maker.gate.create(request('expiring', { nodeCount: 2 }));
      await maker.waitFor('expiring', 'up');
      // The gate that made it stops (and no core is there): nothing but the node itself acts at the expiry.
      await maker.gate.close();
      const vms = inGroup('expiring-rg').filter((r) => r.type === VM);
      await until('the nodes powered off', () => vms.every((vm) => fake.powerStateOf(vm.id) === 'stopped'));
      expect(groupOf('expiring'), 'powered off, still there (and allocated)').to.not.equal(undefined);
      // A gate (the same one, started again) watches and reconciles.
      const h = await start();
      expect(await h.gate.watchNodes()).to.deep.equal(['expiring']);
      expect((await h.waitFor('expiring', 'failed')).error).to.match(/^node 0, node 1 powered off \(the partition expired at /);
      const report = await h.gate.reconcile();
      expect(report.deleted).to.have.length(1);
      expect(report.deleted[0]).to.include({ name: 'expiring' });
      expect(report.deleted[0]!.reason).to.match(/^expired at /);
      await h.waitFor('expiring', 'deleted');
      expect(groupOf('expiring')).to.equal(undefined);
      expect(inGroup('expiring-rg')).to.deep.equal([]);
      expect(journal().get('expiring'), 'forgotten once its deletion was read back').to.equal(undefined);
    });

    it('reconciles on its own, at start and every reconcileIntervalSec', async () => {
      const maker = await start({ maxLifetimeSec: 1, expiryMarginSec: 0 });
      await maker.gate.create(request('lapsed'));
      await maker.waitFor('lapsed', 'up');
      await maker.gate.close();
      const h = await start({ reconcileIntervalSec: 0.3 });
      await h.waitFor('lapsed', 'deleted', 8_000);
      expect(groupOf('lapsed')).to.equal(undefined);
    });

    it('moves the expiry when asked: the tag, and every node\'s timer through a run command', async () => {
      const h = await start({ maxLifetimeSec: 60, expiryMarginSec: 0 });
      await h.gate.create(request('extended', { nodeCount: 2 }));
      await h.waitFor('extended', 'up');
      const later = new Date(Date.now() + 7200_000);
      await h.gate.extend('extended', later);
      expect(groupOf('extended')!.tags['skyport-expires']).to.equal(later.toISOString());
      const commands = fake.runCommands().filter((c: any) => /\/runCommands\/skyport-expiry$/i.test(c.id)) as any[];
      expect(commands).to.have.length(2);
      for (const c of commands) expect(c.properties.source.script).to.include(`OnCalendar=${later.toISOString().slice(0, 10)} ${later.toISOString().slice(11, 19)} UTC`);
      expect(journal().get('extended')!.expiresAt).to.equal(later.getTime());
      await h.gate.delete('extended');
      await h.waitFor('extended', 'deleted');
    });
  });

  describe("the core's lease", () => {
    it('is renewed only once half of it is used up: the expiry, and every node\'s timer, move then', async () => {
      const h = await start({ maxLifetimeSec: 3600, expiryMarginSec: 0 });
      await h.gate.create(request('leased', { nodeCount: 2, tags: { 'skyport-lifetime-sec': '600' } }));
      await h.waitFor('leased', 'up');
      const first = Date.parse(groupOf('leased')!.tags['skyport-expires']);
      expect(first - Date.now()).to.be.within(500_000, 601_000);
      const timers = () => fake.runCommands().filter((c: any) => c.id.toLowerCase().includes('/resourcegroups/leased-rg/') && /\/runCommands\/skyport-expiry$/i.test(c.id)).length;
      // 600 s left of a 600 s lease: more than half, nothing is written.
      expect((await h.gate.renewLease('leased', 600))!.getTime()).to.equal(first);
      expect(timers()).to.equal(0);
      // A lease of 3000 s: less than half of it is left, the expiry moves to now + 3000 s, on every node.
      const renewed = (await h.gate.renewLease('leased', 3000))!;
      expect(renewed.getTime() - Date.now()).to.be.within(2_990_000, 3_001_000);
      expect(groupOf('leased')!.tags['skyport-expires']).to.equal(renewed.toISOString());
      expect(timers()).to.equal(2);
      // Never past the gate's maximum, whatever the core asks.
      const capped = (await h.gate.renewLease('leased', 100_000))!;
      expect(capped.getTime() - Date.now()).to.be.at.most(3_601_000);
      await h.gate.delete('leased');
      await h.waitFor('leased', 'deleted');
    });
  });

  describe('reconciliation', () => {
    it('records the intent to create before asking Azure for anything', async () => {
      const h = await start({ retry: { maxRetries: 0, retryDelayMs: 10, maxRetryDelayMs: 10 } });
      fake.inject({ kind: 'server-error', method: 'PUT', path: /\/resourcegroups\/intent-rg$/i, times: Infinity });
      fake.clearRequests();
      await h.gate.create(request('intent'));
      await h.waitFor('intent', 'failed');
      const put = fake.requests.find((r) => r.method === 'PUT' && /\/resourcegroups\/intent-rg$/i.test(r.path))!;
      const entry = journal().get('intent')!;
      expect(entry).to.include({ intent: 'create', jobId: 'job-intent', incarnation: h.gate.incarnation });
      expect(entry.at).to.be.at.most(performance.timeOrigin + put.at);
      // Nothing was made: the deletion finds no group, and forgets it.
      expect(await h.gate.delete('intent')).to.deep.equal({ id: 'intent', status: 'deleted' });
      expect(journal().get('intent')).to.equal(undefined);
    });

    it('finds the group of a gate that stopped in the middle of creating it, and deletes it', async () => {
      const crashed = await start();
      fake.inject({ kind: 'hang-operation', method: 'PUT', path: /networkSecurityGroups\/halfway-nsg$/i, times: Infinity });
      await crashed.gate.create(request('halfway', { nodeCount: 2 }));
      await until('the group made', () => groupOf('halfway') !== undefined);
      // The gate stops there (as a killed process would: nothing more is sent to Azure, nothing is cleaned).
      await crashed.gate.close();
      expect(groupOf('halfway')!.tags).to.include({ 'skyport-ready': 'false' });
      expect(journal().get('halfway')).to.include({ intent: 'create', incarnation: crashed.gate.incarnation });
      fake.clearFaults();
      const h = await start();
      expect((await h.gate.get({ id: 'halfway' })).status).to.equal('failed');
      const report = await h.gate.reconcile();
      expect(report.deleted).to.deep.equal([{ name: 'halfway', reason: 'its creation was interrupted (the gate stopped)' }]);
      await h.waitFor('halfway', 'deleted');
      expect(groupOf('halfway')).to.equal(undefined);
      expect(journal().get('halfway')).to.equal(undefined);
    });

    it('deletes an old group this gate made but does not know, and leaves young ones, other gates\' and other cores\'', async () => {
      const old = new Date(Date.now() - 3600_000).toISOString();
      const young = new Date().toISOString();
      const far = new Date(Date.now() + 3600_000).toISOString();
      const tags = (name: string, extra: Record<string, string>) => ({ 'skyport-core': CORE, 'skyport-partition': name, 'skyport-job': `job-${name}`, 'skyport-expires': far, ...extra });
      fake.addGroup('orphan-rg', tags('orphan', { 'skyport-gate': 'azure', 'skyport-created': old }));
      fake.addGroup('newborn-rg', tags('newborn', { 'skyport-gate': 'azure', 'skyport-created': young }));
      fake.addGroup('neighbour-rg', tags('neighbour', { 'skyport-gate': 'azure-west', 'skyport-created': old }));
      fake.addGroup('foreign-rg', { ...tags('foreign', { 'skyport-gate': 'azure', 'skyport-created': old }), 'skyport-core': 'another-core' });
      const h = await start({ orphanGraceSec: 600 });
      const report = await h.gate.reconcile();
      expect(report.deleted).to.deep.equal([{ name: 'orphan', reason: 'made by this gate, unknown to its journal (an orphan)' }]);
      await h.waitFor('orphan', 'deleted');
      expect(fake.groups().map((g) => g.name).filter((n) => n !== 'orphan-rg')).to.include.members(['newborn-rg', 'neighbour-rg', 'foreign-rg']);
    });

    it('waits the grace period before taking an intent ARM does not list as never made, and confirms it by a read', async () => {
      const h = await start({ orphanGraceSec: 1.5 });
      const j = journal();
      j.record('ghost', { jobId: 'job-ghost', intent: 'create', incarnation: 'gone', at: Date.now(), expiresAt: Date.now() + 3600_000 });
      // Listed as failed meanwhile, so that the core's reaper deletes it (which would forget it).
      expect((await h.gate.list()).find((p) => p.name === 'ghost')).to.include({ status: 'failed' });
      expect((await h.gate.reconcile()).forgotten).to.deep.equal([]);
      expect(j.get('ghost')).to.not.equal(undefined);
      await sleep(1600);
      fake.clearRequests();
      expect((await h.gate.reconcile()).forgotten).to.deep.equal(['ghost']);
      expect(fake.requests.some((r) => r.method === 'GET' && /\/resourcegroups\/ghost-rg$/i.test(r.path) && r.status === 404), 'read back').to.equal(true);
      expect(j.get('ghost')).to.equal(undefined);
    });

    it('forgets a deleted partition only once a read confirms its group gone', async () => {
      const h = await start();
      await h.gate.create(request('confirmed'));
      await h.waitFor('confirmed', 'up');
      fake.clearRequests();
      await h.gate.delete('confirmed');
      expect(journal().get('confirmed')).to.include({ intent: 'delete' });
      await h.waitFor('confirmed', 'deleted');
      const op = fake.operations().find((o) => o.kind === 'delete' && /\/resourceGroups\/confirmed-rg$/i.test(o.target))!;
      const readBack = fake.requests.find((r) => r.method === 'GET' && /\/resourcegroups\/confirmed-rg$/i.test(r.path) && r.status === 404);
      expect(readBack, 'a read of the group after its deletion').to.not.equal(undefined);
      expect(readBack!.at).to.be.at.least(op.endedAt!);
      expect(journal().get('confirmed')).to.equal(undefined);
    });

    it('decides from the tags and the journal alone (pure)', () => {
      const now = Date.now();
      const ctx = { gateName: 'azure', incarnation: 'me', graceMs: 60_000 };
      const g = (tags: Record<string, string>) => ({ name: 'p-rg', tags: { 'skyport-partition': 'p', ...tags } });
      const entry = (e: Partial<Parameters<typeof deletionReason>[1] & object> = {}) => ({ jobId: 'j', intent: 'create' as const, incarnation: 'me', at: now - 120_000, expiresAt: now + 1, ...e });
      expect(deletionReason(g({ 'skyport-expires': new Date(now - 1).toISOString() }), entry(), ctx, now)).to.match(/^expired at /);
      expect(deletionReason(g({ 'skyport-expires': new Date(now + 60_000).toISOString(), 'skyport-ready': 'true' }), entry(), ctx, now)).to.equal(null);
      expect(deletionReason(g({ 'skyport-ready': 'false' }), entry(), ctx, now), 'being created by this very gate').to.equal(null);
      expect(deletionReason(g({ 'skyport-ready': 'false' }), entry({ incarnation: 'before' }), ctx, now)).to.equal('its creation was interrupted (the gate stopped)');
      expect(deletionReason(g({ 'skyport-ready': 'false', 'skyport-error': 'Capacity: …' }), entry({ incarnation: 'before', at: now - 1000 }), ctx, now), 'failed: the core deletes it').to.equal(null);
      expect(deletionReason(g({ 'skyport-ready': 'true' }), entry({ intent: 'delete' }), ctx, now)).to.equal('its deletion was interrupted');
      expect(deletionReason(g({ 'skyport-gate': 'azure' }), undefined, ctx, now)).to.equal('made by this gate, unknown to its journal (an orphan)');
      expect(deletionReason(g({ 'skyport-gate': 'other' }), undefined, ctx, now)).to.equal(null);
      expect(deletionReason(g({}), undefined, ctx, now), 'made before gates tagged theirs').to.equal(null);
    });
  });
});
