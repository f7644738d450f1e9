import type { Logger } from 'pino';
import type { ArmClients } from './arm-clients.js';
import { groupNameOf } from './naming.js';
import type { PartitionJournal, JournalEntry } from './partition-journal.js';
import { listCoreGroups, readGroup, type ObservedGroup } from './partition-reader.js';
import { lostNodesReason } from './partition-view.js';
import { createdOf, expiryOf, ownedBy, TAG, tagOf } from './tags.js';

/** What one reconciliation did. */
export interface ReconcileReport {
  /** Partitions whose deletion it started, with why. */
  deleted: { name: string; reason: string }[];
  /** Journal entries it dropped: their group was never made (or is long gone). */
  forgotten: string[];
}

export interface ReconcileContext {
  arm: ArmClients;
  coreId: string;
  gateName: string;
  /** This gate process (journal entries of another one were left by a gate that stopped). */
  incarnation: string;
  journal: PartitionJournal;
  /** How long a group may go unlisted after its intent, and how young an unknown group may be, before acting. */
  graceMs: number;
  /** This gate is creating or deleting the partition right now: leave it alone. */
  busy(name: string): boolean;
  /** Deletes a partition (the gate's own deletion: tagged-ownership check, journal, read-back); false when it could not. */
  delete(name: string, reason: string): Promise<boolean>;
  log: Logger;
}

/** The groups that are partitions of this core (by their ownership tags), by partition name. */
function corePartitions(groups: ObservedGroup[], coreId: string): Map<string, ObservedGroup> {
  const out = new Map<string, ObservedGroup>();
  for (const g of groups) {
    const name = tagOf(g.tags, TAG.partition);
    if (name && g.name.toLowerCase() === groupNameOf(name).toLowerCase() && ownedBy(g.tags, coreId, name)) out.set(name, g);
  }
  return out;
}

/**
 * Why the gate deletes a partition of its core on its own, or null to leave it:
 * - past its expiry (whoever made it: the expiry is the partition's own limit, and its nodes are off by now);
 * - made by this gate (its gate tag), older than the grace period, and unknown to its journal: the gate recorded
 *   every partition before making it and forgets one only once it is deleted, so this one is an orphan;
 * - its deletion was asked for and interrupted;
 * - its creation was interrupted: a gate that stopped left it not ready (a failed one, which the core deletes and
 *   may ask for again, only once the grace period is over).
 */
export function deletionReason(g: ObservedGroup, entry: JournalEntry | undefined, ctx: Pick<ReconcileContext, 'gateName' | 'incarnation' | 'graceMs'>, now: number): string | null {
  const expires = expiryOf(g.tags);
  if (expires && expires.getTime() <= now) return `expired at ${expires.toISOString()}`;
  if (!entry) {
    if (tagOf(g.tags, TAG.gate) !== ctx.gateName) return null;
    const created = createdOf(g.tags);
    if (created && now - created.getTime() < ctx.graceMs) return null;
    return 'made by this gate, unknown to its journal (an orphan)';
  }
  if (entry.intent === 'delete') return 'its deletion was interrupted';
  if (entry.incarnation === ctx.incarnation || tagOf(g.tags, TAG.ready) === 'true') return null;
  if (tagOf(g.tags, TAG.error) !== undefined && now - entry.at < ctx.graceMs) return null;
  return 'its creation was interrupted (the gate stopped)';
}

/**
 * One pass: lists the core's groups (one paged read), deletes those `deletionReason` names, and forgets journal
 * entries whose group ARM has not listed for the grace period and a read by name confirms absent.
 */
export async function reconcilePartitions(ctx: ReconcileContext): Promise<ReconcileReport> {
  const partitions = corePartitions(await listCoreGroups(ctx.arm, ctx.coreId), ctx.coreId);
  const journal = ctx.journal.entries();
  const now = Date.now();
  const report: ReconcileReport = { deleted: [], forgotten: [] };
  for (const [name, g] of partitions) {
    if (ctx.busy(name) || g.provisioningState === 'Deleting') continue;
    const reason = deletionReason(g, journal[name], ctx, now);
    if (reason && (await ctx.delete(name, reason))) report.deleted.push({ name, reason });
  }
  for (const [name, entry] of Object.entries(journal)) {
    // ARM's lists lag behind its writes: a group just made may not be listed yet.
    if (partitions.has(name) || ctx.busy(name) || now - entry.at < ctx.graceMs) continue;
    if (await readGroup(ctx.arm, groupNameOf(name))) continue;
    ctx.journal.forget(name);
    report.forgotten.push(name);
    ctx.log.info({ partition: name, intent: entry.intent }, 'azure: forgot a partition whose resource group does not exist');
  }
  if (report.deleted.length || report.forgotten.length) ctx.log.info({ deleted: report.deleted, forgotten: report.forgotten }, 'azure: reconciliation');
  return report;
}

export interface WatchContext {
  arm: ArmClients;
  coreId: string;
  /** Being created, deleted, or already reported failed by this gate: leave it alone. */
  busy(name: string): boolean;
  /** An up partition lost nodes, for `reason`. */
  lost(group: ObservedGroup, reason: string): Promise<void>;
  log: Logger;
}

const collect = async <T>(items: AsyncIterable<T>): Promise<T[]> => {
  const all: T[] = [];
  for await (const item of items) all.push(item);
  return all;
};

/** The resource group of a resource id, lower case. */
const groupOfId = (id: string | undefined): string | undefined => /\/resourceGroups\/([^/]+)\//i.exec(id ?? '')?.[1]?.toLowerCase();

/**
 * Finds up partitions that lost nodes: a VM missing (a Spot VM evicted with policy Delete, or deleted behind the
 * gate's back) or not running (deallocated by an eviction with policy Deallocate, or powered off by its expiry
 * timer). Two reads whatever the number of partitions: the core's groups, and the subscription's VMs with their
 * power states (`statusOnly`). Returns the partitions it reported.
 */
export async function watchNodes(ctx: WatchContext): Promise<string[]> {
  const up = [...corePartitions(await listCoreGroups(ctx.arm, ctx.coreId), ctx.coreId)].filter(
    ([name, g]) => tagOf(g.tags, TAG.ready) === 'true' && tagOf(g.tags, TAG.error) === undefined && g.provisioningState !== 'Deleting' && !ctx.busy(name),
  );
  if (!up.length) return [];
  const vms = await collect(ctx.arm.compute.virtualMachines.listAll({ statusOnly: 'true' }));
  const reported: string[] = [];
  for (const [name, g] of up) {
    if (ctx.busy(name)) continue;
    const expected = Number(tagOf(g.tags, TAG.nodes) ?? '1');
    const mine = vms.filter((vm) => groupOfId(vm.id) === g.name.toLowerCase());
    const present = new Map(mine.map((vm) => [Number(tagOf(vm.tags ?? {}, TAG.node) ?? -1), vm]));
    const missing = Array.from({ length: expected }, (_, i) => i).filter((i) => !present.has(i));
    const powerOf = (i: number): string | undefined =>
      present.get(i)?.instanceView?.statuses?.find((s) => s.code?.startsWith('PowerState/'))?.code?.slice('PowerState/'.length);
    const deallocated = [...present.keys()].filter((i) => powerOf(i) === 'deallocated');
    const stopped = [...present.keys()].filter((i) => powerOf(i) === 'stopped');
    let reason: string | null = null;
    const spot = tagOf(g.tags, TAG.priority) === 'spot';
    if (missing.length || (spot && deallocated.length)) reason = lostNodesReason(g.tags, [...missing, ...(spot ? deallocated : [])].sort((a, b) => a - b));
    else if (deallocated.length || stopped.length) {
      const off = [...deallocated, ...stopped].sort((a, b) => a - b).map((i) => `node ${i}`).join(', ');
      const expires = expiryOf(g.tags);
      reason = `${off} powered off${expires && expires.getTime() <= Date.now() ? ` (the partition expired at ${expires.toISOString()})` : ' behind the gate\'s back'}`;
    }
    if (reason === null) continue;
    await ctx.lost(g, reason);
    reported.push(name);
  }
  return reported;
}
