import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import type { Logger } from 'pino';
import ssh2 from 'ssh2';
import type { Flavor, Image, Partition } from '../../terminal-protocol/common.js';
import { ErrorCode, notFound, RpcError } from '../../terminal-protocol/errors.js';
import type { PartitionRequest } from '../../terminal-protocol/gate-methods.js';
import type { Gate, GateContext } from '../gate.js';
import type { ArmClients } from './arm-clients.js';
import { describeAzureError, failureReason, isNotFound } from './azure-errors.js';
import type { FlavorCatalog } from './flavor-catalog.js';
import { guestCheck } from './guest-ready.js';
import { hostKeysFor } from './host-keys.js';
import { Limiter } from './limiter.js';
import { imageTraits, listImages, type ImageTraits } from './image-catalog.js';
import { chooseImage, type ImageChoice } from './image-reference.js';
import { completeOperation, OperationCancelled, type OperationLimits } from './long-running.js';
import { groupNameOf } from './naming.js';
import { allowedSources, type AzureGateOptions } from './options.js';
import { PartitionJournal, type JournalEntry } from './partition-journal.js';
import { describePlacement, placementsFor, planPartition, type PartitionPlan, type Placement, type PlanSettings } from './partition-plan.js';
import { listCoreGroups, readGroup, readPartition, type ObservedGroup } from './partition-reader.js';
import { partitionView } from './partition-view.js';
import { provisionPartition } from './provisioner.js';
import { reconcilePartitions, watchNodes, type ReconcileReport } from './reconciler.js';
import { planSharedNetwork, SharedNetworks, type SharedNetworkPlan } from './shared-network.js';
import { expiryOf, lifetimeSecOf, ownedBy, TAG, tagOf, tagValue } from './tags.js';

const PARTITION_NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;
/** The types a resource group deletion may force-delete (the only ones ARM supports). */
const FORCE_DELETION_TYPES = 'Microsoft.Compute/virtualMachines,Microsoft.Compute/virtualMachineScaleSets';
/** Key types Azure accepts for a VM's authorized key. */
const AZURE_SSH_KEY_TYPES = new Set(['ssh-rsa', 'ssh-ed25519']);
/** The OS disk of the images the gate boots (Ubuntu's marketplace images: 30 GiB): what an ephemeral OS disk must hold. */
const OS_DISK_GIB = 30;
/** Reads after a group deletion finished, until ARM no longer shows the group (its replicas lag a little). */
const DELETION_READ_BACKS = 5;

interface Creation {
  jobId: string;
  controller: AbortController;
  done: Promise<void>;
}

type CreateResult = { id: string; status: 'creating' | 'up' };
type DeleteResult = { id: string; status: 'deleting' | 'deleted' };

/**
 * The azure gate: one resource group per partition, everything in it tagged with the job, the partition, the core,
 * the gate and the partition's expiry. Azure is the state: get and list read the resources (a restarted gate
 * forgets nothing); this object remembers what it is doing right now (creations and deletions in progress) and
 * failures Azure could not be told about, and a small journal (partition-journal.ts) records each intent before the
 * call that acts on it. A reconciliation (reconciler.ts) deletes, on the gate's own authority, what expired, what
 * the gate does not know and what a stopped gate left half made; a watch reports up partitions that lost nodes
 * (Spot evictions).
 */
export class AzureGate implements Gate {
  readonly kind = 'azure';
  private readonly listeners: ((partition: Partition) => void)[] = [];
  private readonly creations = new Map<string, Creation>();
  private readonly deletions = new Map<string, Promise<void>>();
  private readonly failures = new Map<string, { jobId: string; error: string }>();
  /** Calls in progress, so that concurrent calls for one partition take turns. */
  private readonly pendingCreates = new Map<string, Promise<CreateResult>>();
  private readonly pendingDeletes = new Map<string, Promise<DeleteResult>>();
  private readonly closing = new AbortController();
  /** Traits of the images asked for (architecture, generation, plan), by reference, cached as the catalog is. */
  private readonly traits = new Map<string, { at: number; value: Promise<ImageTraits | null> }>();
  private readonly log: Logger;
  /** VM creations in flight, across partitions. */
  private readonly vmSlots: Limiter;
  private readonly sharedNetworks: SharedNetworks;
  private readonly journal: PartitionJournal;
  /** This process: a journal entry of another one that is still being created was interrupted. */
  readonly incarnation = randomUUID();
  private readonly timers: NodeJS.Timeout[] = [];
  private reconciling: Promise<ReconcileReport> | null = null;
  private watching: Promise<string[]> | null = null;

  constructor(
    private readonly context: GateContext,
    private readonly options: AzureGateOptions,
    private readonly arm: ArmClients,
    private readonly catalog: FlavorCatalog,
  ) {
    this.log = context.logger;
    this.vmSlots = new Limiter(options.maxConcurrentVmCreations);
    this.sharedNetworks = new SharedNetworks(arm, this.log, options.freshGroupGraceSec * 1000, this.closing.signal);
    // Made (or brought up to date) now, in the background: the first job of the region does not wait for it.
    if (options.sharedNetwork)
      this.sharedNetworks.ensure(this.sharedNetworkOf(options.location), { ...this.limits(), cancel: this.closing.signal }).catch((error: unknown) => {
        if (!this.closing.signal.aborted) this.log.warn({ error: describeAzureError(error) }, 'cannot make the shared network yet; the first partition that joins it will try again');
      });
    this.journal = new PartitionJournal(join(context.spool.gateState(context.name), 'azure-partitions.json'), context.coreId);
    const every = (sec: number, run: () => void): void => {
      if (sec <= 0) return;
      const first = setTimeout(run, 0);
      const timer = setInterval(run, sec * 1000);
      first.unref();
      timer.unref();
      this.timers.push(first, timer);
    };
    every(options.reconcileIntervalSec, () => void this.reconcile().catch(() => undefined));
    every(options.watchIntervalSec, () => void this.watchNodes().catch(() => undefined));
  }

  onEvent(listener: (partition: Partition) => void): void {
    this.listeners.push(listener);
  }

  async create(request: PartitionRequest): Promise<CreateResult> {
    this.assertOpen();
    const pending = this.pendingCreates.get(request.name);
    if (pending) return pending;
    const call = this.startCreate(request).finally(() => this.pendingCreates.delete(request.name));
    this.pendingCreates.set(request.name, call);
    return call;
  }

  async get(ref: { id: string } | { name: string }): Promise<Partition> {
    const name = 'id' in ref ? ref.id : ref.name;
    const partition = PARTITION_NAME.test(name) ? await this.find(name) : null;
    if (!partition) throw notFound(`partition ${name}`);
    return partition;
  }

  async list(): Promise<Partition[]> {
    const groups = (await listCoreGroups(this.arm, this.context.coreId)).filter((g) => {
      const name = tagOf(g.tags, TAG.partition);
      return name !== undefined && g.name.toLowerCase() === groupNameOf(name).toLowerCase() && ownedBy(g.tags, this.context.coreId, name);
    });
    const seen = await Promise.all(groups.map((g) => this.viewOf(g).catch((error: unknown) => (isNotFound(error) ? null : Promise.reject(error)))));
    const partitions = seen.filter((p): p is Partition => p !== null);
    const known = new Set(partitions.map((p) => p.name));
    // Partitions whose group does not exist (yet, or ever): created just now, or failed before their group.
    for (const [name, c] of this.creations) if (!known.has(name)) partitions.push(this.withoutGroup(name, 'creating', c.jobId));
    for (const [name, f] of this.failures) if (!known.has(name) && !this.creations.has(name)) partitions.push(this.withoutGroup(name, 'failed', f.jobId, f.error));
    for (const [name, entry] of Object.entries(this.journalEntries()))
      if (!known.has(name) && !this.creations.has(name) && !this.failures.has(name)) partitions.push(this.journalOnly(name, entry));
    return partitions;
  }

  async delete(id: string): Promise<DeleteResult> {
    this.assertOpen();
    const pending = this.pendingDeletes.get(id);
    if (pending) return pending;
    const call = this.startDelete(id).finally(() => this.pendingDeletes.delete(id));
    this.pendingDeletes.set(id, call);
    return call;
  }

  async flavors(): Promise<Flavor[]> {
    const o = this.options;
    try {
      // Only sizes that can boot the default image.
      const traits = await this.traitsOf({ publisher: o.imagePublisher, offer: o.imageOffer, sku: o.imageSku, version: 'latest' });
      return await this.catalog.flavors(traits);
    } catch (error) {
      throw this.unavailable('flavors', error);
    }
  }

  async images(): Promise<Image[]> {
    const { imagePublisher: publisher, imageOffer: offer, imageSku: sku, location } = this.options;
    try {
      return await listImages(this.arm, location, { publisher, offer, sku }, this.context.name);
    } catch (error) {
      throw this.unavailable('images', error);
    }
  }

  async close(): Promise<void> {
    this.closing.abort();
    for (const timer of this.timers) clearTimeout(timer);
    await Promise.allSettled([...[...this.creations.values()].map((c) => c.done), ...this.deletions.values(), this.reconciling, this.watching, this.sharedNetworks.settled()]);
  }

  /** The core's shared network of a region, as this gate's settings make it (shared-network.ts). */
  private sharedNetworkOf(location: string): SharedNetworkPlan {
    const o = this.options;
    return planSharedNetwork({
      subscriptionId: o.subscriptionId,
      coreId: this.context.coreId,
      gateName: this.context.name,
      location,
      sources: allowedSources(o),
      sshPort: o.sshPort,
      outboundAccess: o.outboundAccess,
    });
  }

  /**
   * Deletes, on the gate's own authority, its core's partitions that are past their expiry, that this gate made
   * but does not know (their journal entry is gone), or whose creation a stopped gate left unfinished; forgets
   * intents whose group ARM has not listed for `orphanGraceSec` (and a read confirms it absent). Runs at start
   * and every `reconcileIntervalSec`; one pass at a time.
   */
  reconcile(): Promise<ReconcileReport> {
    if (this.closing.signal.aborted) return Promise.resolve({ deleted: [], forgotten: [] });
    this.reconciling ??= reconcilePartitions({
      arm: this.arm,
      coreId: this.context.coreId,
      gateName: this.context.name,
      incarnation: this.incarnation,
      journal: this.journal,
      graceMs: this.options.orphanGraceSec * 1000,
      busy: (name) => this.creations.has(name) || this.deletions.has(name) || this.pendingCreates.has(name) || this.pendingDeletes.has(name),
      delete: (name, reason) => this.deleteFor(name, reason),
      log: this.log,
    })
      .catch((error: unknown) => {
        this.log.warn({ error: describeAzureError(error) }, 'azure: reconciliation failed; trying again later');
        return { deleted: [], forgotten: [] };
      })
      .finally(() => (this.reconciling = null));
    return this.reconciling;
  }

  /**
   * Looks at the VMs of every up partition (one read of the subscription's VMs with their power states): a partition
   * that lost a node (a Spot eviction, a VM deleted or powered off behind the gate's back) is reported `failed`, with
   * a reason that starts with `Preempted: ` for an eviction, and the reason is kept on its group. Returns the
   * partitions it reported.
   */
  watchNodes(): Promise<string[]> {
    if (this.closing.signal.aborted) return Promise.resolve([]);
    this.watching ??= watchNodes({
      arm: this.arm,
      coreId: this.context.coreId,
      busy: (name) => this.creations.has(name) || this.deletions.has(name) || this.pendingCreates.has(name) || this.pendingDeletes.has(name) || this.failures.has(name),
      lost: (group, reason) => this.reportLost(group, reason),
      log: this.log,
    })
      .catch((error: unknown) => {
        this.log.warn({ error: describeAzureError(error) }, 'azure: watching the nodes failed; trying again later');
        return [];
      })
      .finally(() => (this.watching = null));
    return this.watching;
  }

  /**
   * Moves a partition's expiry (the core keeps a partition longer than it first asked: a reused partition, a longer
   * job): the group's expiry tag, and every node's power-off timer through a run command. Not on the wire yet.
   */
  /**
   * partition.extend, the core's lease: the partition may live `lifetimeSec` more (within maxLifetimeSec), plus
   * the margin. Nothing is written while the expiry is further away than half the lease: the nodes' timers
   * (a run command on each) move about twice a lease, however often the core renews.
   */
  async renewLease(id: string, lifetimeSec: number): Promise<Date | null> {
    const group = await this.readGroupOrUnavailable(groupNameOf(id));
    if (!group || !ownedBy(group.tags, this.context.coreId, id)) throw notFound(`partition ${id}`);
    const leaseMs = Math.min(lifetimeSec, this.options.maxLifetimeSec) * 1000;
    const marginMs = this.options.expiryMarginSec * 1000;
    const now = Date.now();
    const current = expiryOf(group.tags);
    if (current && current.getTime() - now > leaseMs / 2 + marginMs) return current;
    const expiresAt = new Date(Math.ceil((now + leaseMs + marginMs) / 1000) * 1000);
    await this.extend(id, expiresAt);
    return expiresAt;
  }

  async extend(name: string, expiresAt: Date): Promise<void> {
    const group = await this.readGroupOrUnavailable(groupNameOf(name));
    if (!group || !ownedBy(group.tags, this.context.coreId, name)) throw notFound(`partition ${name}`);
    const observed = await readPartition(this.arm, group);
    const limits: OperationLimits = { ...this.limits(), cancel: this.closing.signal };
    await Promise.all(
      observed.vms.map((vm) =>
        completeOperation(`expiry of virtual machine ${vm.name}`, limits, (o) =>
          this.arm.compute.virtualMachineRunCommands.createOrUpdate(
            group.name,
            vm.name,
            'skyport-expiry',
            {
              location: vm.location ?? this.options.location,
              source: { script: extendScript(expiresAt) },
              asyncExecution: false,
              treatFailureAsDeploymentFailure: true,
              timeoutInSeconds: 120,
            },
            o,
          ),
        ),
      ),
    );
    await this.arm.resources.resourceGroups.createOrUpdate(group.name, { location: this.options.location, tags: { ...group.tags, [TAG.expires]: expiresAt.toISOString() } });
    const entry = this.journal.get(name);
    if (entry) this.journal.record(name, { ...entry, expiresAt: expiresAt.getTime() });
    this.log.info({ partition: name, expiresAt: expiresAt.toISOString() }, 'partition expiry moved');
  }

  // Creation.

  private async startCreate(request: PartitionRequest): Promise<CreateResult> {
    const { name } = request;
    if (this.creations.has(name)) return { id: name, status: 'creating' };
    if (this.deletions.has(name) || this.pendingDeletes.has(name)) throw new RpcError(ErrorCode.Conflict, `partition ${name} is being deleted`);
    const group = await this.readGroupOrUnavailable(groupNameOf(name));
    if (group) {
      if (!ownedBy(group.tags, this.context.coreId, name))
        throw new RpcError(ErrorCode.Conflict, `resource group ${group.name} exists and is not partition ${name} of this core`);
      const existing = await this.viewOf(group);
      if (existing.status === 'up' || existing.status === 'creating') return { id: name, status: existing.status };
      throw new RpcError(ErrorCode.Conflict, `partition ${name} exists and is ${existing.status}${existing.error ? ` (${existing.error})` : ''}; delete it first`);
    }
    const plans = await this.planFor(request);
    this.failures.delete(name);
    // The intent first: a gate that stops between this line and the group's creation finds the group, or nothing.
    this.journal.record(name, { jobId: request.jobId, intent: 'create', incarnation: this.incarnation, at: Date.now(), expiresAt: Date.parse(plans[0]!.tags[TAG.expires]!) });
    const controller = new AbortController();
    const creation: Creation = { jobId: request.jobId, controller, done: Promise.resolve() };
    this.creations.set(name, creation);
    creation.done = this.runCreation(plans, request, controller.signal);
    return { id: name, status: 'creating' };
  }

  /**
   * Checks the request against what Azure offers, then plans it in every placement allowed (zones, fallback sizes,
   * fallback regions, in order); bad requests fail here, not in the background.
   */
  private async planFor(request: PartitionRequest): Promise<PartitionPlan[]> {
    const o = this.options;
    let image: ImageChoice;
    try {
      image = chooseImage(request.image, { publisher: o.imagePublisher, offer: o.imageOffer, sku: o.imageSku, ...(o.customImageId ? { id: o.customImageId } : {}) });
    } catch (error) {
      throw new RpcError(ErrorCode.InvalidParams, (error as Error).message);
    }
    let traits: ImageTraits | null;
    try {
      traits = await this.traitsOf(image.vmImage);
    } catch (error) {
      if (isNotFound(error)) throw new RpcError(ErrorCode.InvalidParams, `image ${request.image ?? 'default'}: ${describeAzureError(error)}`);
      throw this.unavailable('the image', error);
    }
    let why: string | null;
    try {
      why = await this.catalog.unavailable(request.flavor, traits);
    } catch (error) {
      throw this.unavailable('VM sizes', error);
    }
    if (why) throw new RpcError(ErrorCode.Unschedulable, why);
    const key = ssh2.utils.parseKey(request.sshPublicKey.trim());
    if (key instanceof Error || Array.isArray(key) || key.isPrivateKey() || !AZURE_SSH_KEY_TYPES.has(key.type))
      throw new RpcError(ErrorCode.InvalidParams, 'sshPublicKey must be an OpenSSH ssh-rsa or ssh-ed25519 public key (what Azure accepts)');

    // The fallbacks: a size or region the catalog says cannot take the partition is left out (not an error).
    const usable = new Set<string>();
    const ephemeral = new Map<string, Placement['ephemeralOsDisk']>();
    const regions = [o.location, ...o.fallbackRegions];
    const sizes = [request.flavor, ...(o.fallbackSizes[request.flavor] ?? [])];
    await Promise.all(
      regions.flatMap((location) =>
        sizes.map(async (size) => {
          const at = `${location}/${size}`;
          try {
            if (location !== o.location || size !== request.flavor) {
              const reason = await this.catalog.unavailable(size, traits, location);
              if (reason) return this.log.debug({ placement: at, reason }, 'fallback placement left out');
            }
            usable.add(at);
            if (o.ephemeralOsDisk) ephemeral.set(at, await this.catalog.ephemeralPlacement(size, location, OS_DISK_GIB));
          } catch (error) {
            this.log.warn({ placement: at, error: describeAzureError(error) }, 'cannot read the sizes of a fallback placement; left out');
          }
        }),
      ),
    );
    const now = new Date();
    const spot = request.spot ?? o.spot;
    const settings: PlanSettings = {
      subscriptionId: o.subscriptionId,
      coreId: this.context.coreId,
      gateName: this.context.name,
      adminUser: o.adminUser,
      sshPort: o.sshPort,
      sources: allowedSources(o),
      vmImage: image.vmImage,
      containerImage: image.containerImage,
      containerRuntime: o.containerRuntime,
      runtimeInstalled: o.customImageId !== undefined && image.vmImage.id?.toLowerCase() === o.customImageId.toLowerCase(),
      osDiskType: o.osDiskType,
      outboundAccess: o.outboundAccess,
      sharedNetworkFor: o.sharedNetwork ? (location) => this.sharedNetworkOf(location) : null,
      plan: traits?.plan ?? null,
      spot: spot ? { maxPrice: request.maxPrice ?? o.spotMaxPrice } : null,
      createdAt: now,
      // Whole seconds: the nodes' timers (systemd calendar times) and the tag say the same instant.
      expiresAt: new Date(Math.ceil((now.getTime() + lifetimeSecOf(request, o.maxLifetimeSec, o.expiryMarginSec) * 1000) / 1000) * 1000),
    };
    try {
      const hostKeys = hostKeysFor(request.nodeCount, request.hostKeys);
      return placementsFor(request.flavor, o, (location, size) => usable.has(`${location}/${size}`)).map((p) =>
        planPartition(request, hostKeys, settings, { ...p, ephemeralOsDisk: ephemeral.get(`${p.location}/${p.size}`) ?? null }, o.location),
      );
    } catch (error) {
      throw new RpcError(ErrorCode.InvalidParams, (error as Error).message);
    }
  }

  private async runCreation(plans: PartitionPlan[], request: PartitionRequest, cancel: AbortSignal): Promise<void> {
    const { name } = request;
    const first = plans[0]!;
    const log = this.log.child({ partition: name, job: request.jobId });
    log.info(
      { nodes: request.nodeCount, flavor: request.flavor, placements: plans.map((p) => describePlacement(p.placement)), group: first.group, spot: first.tags[TAG.priority] === 'spot', expires: first.tags[TAG.expires] },
      'partition creating',
    );
    this.emit(this.withoutGroup(name, 'creating', request.jobId));
    try {
      const placement = await provisionPartition(plans, {
        arm: this.arm,
        limits: this.limits(),
        cancel: AbortSignal.any([cancel, this.closing.signal]),
        log,
        vmSlots: this.vmSlots,
        freshGroupGraceMs: this.options.freshGroupGraceSec * 1000,
        sharedNetworks: this.sharedNetworks,
      });
      log.debug({ placement: describePlacement(placement) }, 'partition placed');
    } catch (error) {
      this.creations.delete(name);
      if (error instanceof OperationCancelled) {
        log.info('partition creation stopped');
        return;
      }
      // Quota and capacity failures carry their kind, so that the core waits and tries again instead of failing the job.
      const message = failureReason(error, (error as Error).message);
      log.warn({ error: message }, 'partition creation failed');
      await this.recordFailure(first, request.jobId, message, log);
      const seen = await this.find(name).catch(() => null);
      this.emit(seen?.status === 'failed' ? seen : this.withoutGroup(name, 'failed', request.jobId, message));
      return;
    }
    this.creations.delete(name);
    try {
      const partition = await this.get({ id: name });
      log.info({ status: partition.status, head: partition.nodes[0]?.publicIp }, 'partition created');
      this.emit(partition);
    } catch (error) {
      log.warn({ error: describeAzureError(error) }, 'partition created but could not be read back');
    }
  }

  /** Marks the group failed (so the failure outlives this process) and remembers it here too. */
  private async recordFailure(plan: PartitionPlan, jobId: string, message: string, log: Logger): Promise<void> {
    this.failures.set(plan.partition, { jobId, error: message });
    try {
      const group = await readGroup(this.arm, plan.group);
      if (!group || !ownedBy(group.tags, this.context.coreId, plan.partition) || group.provisioningState === 'Deleting') return;
      await this.arm.resources.resourceGroups.createOrUpdate(plan.group, { location: plan.groupLocation, tags: { ...group.tags, [TAG.error]: tagValue(message) } });
    } catch (error) {
      log.warn({ error: describeAzureError(error) }, 'could not tag the resource group with the failure');
    }
  }

  // Deletion.

  private async startDelete(id: string): Promise<DeleteResult> {
    if (!PARTITION_NAME.test(id)) return { id, status: 'deleted' };
    if (this.deletions.has(id)) return { id, status: 'deleting' };
    // A creation in progress is stopped first, and waited for, so that nothing is created behind the deletion.
    await this.pendingCreates.get(id)?.catch(() => undefined);
    const creation = this.creations.get(id);
    if (creation) {
      creation.controller.abort();
      await creation.done;
    }
    const group = await this.readGroupOrUnavailable(groupNameOf(id));
    if (!group) {
      // Read back absent: nothing to delete, and nothing to remember.
      const failed = this.failures.get(id);
      const entry = this.journal.get(id);
      this.failures.delete(id);
      this.journal.forget(id);
      if (failed || creation || entry) this.emit(this.withoutGroup(id, 'deleted', failed?.jobId ?? creation?.jobId ?? entry!.jobId));
      return { id, status: 'deleted' };
    }
    if (!ownedBy(group.tags, this.context.coreId, id))
      throw new RpcError(
        ErrorCode.Forbidden,
        `resource group ${group.name} is not tagged as partition ${id} of core ${this.context.coreId}; this gate deletes only what it created`,
      );
    const jobId = tagOf(group.tags, TAG.job) ?? null;
    // The intent first: a gate that stops during the deletion finishes it when it starts again.
    this.journal.deleting(id, { jobId: jobId ?? '', incarnation: this.incarnation, at: Date.now(), expiresAt: expiryOf(group.tags)?.getTime() ?? Date.now() });
    this.deletions.set(id, this.runDeletion(id, group.name, jobId));
    return { id, status: 'deleting' };
  }

  /** A deletion the gate decides on its own (reconciliation), logged with its reason. */
  private async deleteFor(name: string, reason: string): Promise<boolean> {
    try {
      const { status } = await this.delete(name);
      this.log.warn({ partition: name, reason, status }, 'azure: deleting a partition on the gate\'s own authority');
      return true;
    } catch (error) {
      this.log.warn({ partition: name, reason, error: (error as Error).message }, 'azure: could not delete a partition');
      return false;
    }
  }

  private async runDeletion(id: string, group: string, jobId: string | null): Promise<void> {
    const log = this.log.child({ partition: id, job: jobId });
    log.info({ group }, 'partition deleting');
    this.emit({ id, name: id, status: 'deleting', jobId, nodes: [] });
    const limits: OperationLimits = { ...this.limits(), cancel: this.closing.signal };
    let failure: Error | null = null;
    try {
      // Forced deletion of the VMs (no graceful shutdown; everything is being deleted anyway) ends minutes sooner.
      await completeOperation(`deletion of resource group ${group}`, limits, (o) =>
        this.arm.resources.resourceGroups.beginDelete(group, { ...o, forceDeletionTypes: FORCE_DELETION_TYPES }),
      );
    } catch (error) {
      // A group that is already gone is what was wanted.
      if (!isNotFound((error as Error).cause)) failure = error as Error;
    }
    // Confirmed by reading the group back before it is forgotten: ARM's replicas may show it a moment longer.
    if (!failure) failure = await this.confirmDeleted(group, limits);
    // Forgotten before the event, so that a listener asking again sees the outcome.
    this.deletions.delete(id);
    if (failure instanceof OperationCancelled) return;
    if (failure) {
      log.warn({ error: failure.message }, 'partition deletion failed');
      this.emit({ id, name: id, status: 'failed', jobId, nodes: [], error: failure.message });
      return;
    }
    this.failures.delete(id);
    this.journal.forget(id);
    log.info({ group }, 'partition deleted');
    this.emit({ id, name: id, status: 'deleted', jobId, nodes: [] });
  }

  // Reading.

  /** The partition, or null when this core has no such partition. */
  private async find(name: string): Promise<Partition | null> {
    const group = await this.readGroupOrUnavailable(groupNameOf(name));
    if (group && ownedBy(group.tags, this.context.coreId, name)) {
      try {
        return await this.viewOf(group);
      } catch (error) {
        if (!isNotFound(error)) throw this.unavailable(`partition ${name}`, error);
      }
    } else if (group) {
      return null;
    }
    const creation = this.creations.get(name);
    if (creation) return this.withoutGroup(name, 'creating', creation.jobId);
    const failure = this.failures.get(name);
    if (failure) return this.withoutGroup(name, 'failed', failure.jobId, failure.error);
    const entry = this.journal.get(name);
    if (entry) return this.journalOnly(name, entry);
    return null;
  }

  /**
   * A partition the journal holds but Azure does not show: its deletion was confirmed but not yet forgotten, its
   * group is not visible yet, or a stopped gate recorded the intent and never made it. Failed, so that the core
   * deletes it (which forgets it).
   */
  private journalOnly(name: string, entry: JournalEntry): Partition {
    return entry.intent === 'delete'
      ? this.withoutGroup(name, 'deleting', entry.jobId || null)
      : this.withoutGroup(name, 'failed', entry.jobId || null, 'creation interrupted (the gate stopped) before its resource group was made; delete the partition');
  }

  private journalEntries(): Record<string, JournalEntry> {
    try {
      return this.journal.entries();
    } catch (error) {
      this.log.warn({ error: (error as Error).message }, 'azure: cannot read the journal');
      return {};
    }
  }

  /** Reads a deleted group back until ARM no longer shows it; an error when it still does. */
  private async confirmDeleted(group: string, limits: OperationLimits): Promise<Error | null> {
    let wait = Math.max(1, Math.min(limits.pollIntervalMs, 1000));
    for (let i = 0; i < DELETION_READ_BACKS; i++) {
      try {
        const seen = await readGroup(this.arm, group);
        if (!seen) return null;
      } catch (error) {
        if (limits.cancel.aborted) return new OperationCancelled(`deletion of resource group ${group} abandoned`);
        this.log.debug({ group, error: describeAzureError(error) }, 'reading a deleted group back failed');
      }
      await new Promise((resolve) => setTimeout(resolve, wait));
      wait = Math.min(wait * 2, 10_000);
    }
    return new Error(`resource group ${group} still exists after its deletion finished`);
  }

  /** An up partition lost nodes: kept on its group (so that get, list and a restarted gate say so) and reported. */
  private async reportLost(group: ObservedGroup, reason: string): Promise<void> {
    const name = tagOf(group.tags, TAG.partition)!;
    const jobId = tagOf(group.tags, TAG.job) ?? '';
    this.failures.set(name, { jobId, error: reason });
    this.log.warn({ partition: name, job: jobId, reason }, 'partition lost nodes');
    try {
      await this.arm.resources.resourceGroups.createOrUpdate(group.name, { location: this.options.location, tags: { ...group.tags, [TAG.error]: tagValue(reason) } });
    } catch (error) {
      this.log.warn({ partition: name, error: describeAzureError(error) }, 'could not tag the resource group with the loss');
    }
    const seen = await this.find(name).catch(() => null);
    this.emit(seen?.status === 'failed' ? seen : this.withoutGroup(name, 'failed', jobId || null, reason));
  }

  private async viewOf(group: ObservedGroup): Promise<Partition> {
    const name = tagOf(group.tags, TAG.partition)!;
    const observed = await readPartition(this.arm, group);
    const failure = this.failures.get(name)?.error;
    return partitionView(observed, {
      creating: this.creations.has(name),
      deleting: this.deletions.has(name),
      ...(failure ? { failure } : {}),
      sshUser: this.options.adminUser,
      sshPort: this.options.sshPort,
      guestCheck: guestCheck(this.options.guestReadyTimeoutSec),
    });
  }

  private withoutGroup(name: string, status: Partition['status'], jobId: string | null, error?: string): Partition {
    return { id: name, name, status, jobId, nodes: [], ...(error ? { error } : {}) };
  }

  private async readGroupOrUnavailable(name: string): Promise<ObservedGroup | null> {
    try {
      return await readGroup(this.arm, name);
    } catch (error) {
      throw this.unavailable(`resource group ${name}`, error);
    }
  }

  // Plumbing.

  /** An image's traits, cached for `catalogCacheSec` (a failed lookup is not). */
  private traitsOf(image: ImageChoice['vmImage']): Promise<ImageTraits | null> {
    const key = JSON.stringify([image.id, image.publisher, image.offer, image.sku, image.version]).toLowerCase();
    const cached = this.traits.get(key);
    if (cached && Date.now() - cached.at < this.options.catalogCacheSec * 1000) return cached.value;
    const value = imageTraits(this.arm, this.options.location, image);
    this.traits.set(key, { at: Date.now(), value });
    value.catch(() => this.traits.delete(key));
    return value;
  }

  private limits(): Omit<OperationLimits, 'cancel'> {
    return { timeoutMs: this.options.operationTimeoutSec * 1000, pollIntervalMs: this.options.pollIntervalMs };
  }

  private unavailable(what: string, error: unknown): RpcError {
    const message = describeAzureError(error);
    this.log.warn({ error: message }, `azure: reading ${what} failed`);
    return new RpcError(ErrorCode.Unavailable, `azure: ${what}: ${message}`);
  }

  private emit(partition: Partition): void {
    for (const listener of this.listeners) {
      try {
        listener(partition);
      } catch (error) {
        this.log.error({ error: (error as Error).message }, 'partition event listener failed');
      }
    }
  }

  private assertOpen(): void {
    if (this.closing.signal.aborted) throw new RpcError(ErrorCode.Unavailable, 'the gate is closing');
  }
}

/** Moves a node's power-off timer (cloud-init.ts) to a new expiry. */
function extendScript(expiresAt: Date): string {
  const calendar = `${expiresAt.toISOString().slice(0, 19).replace('T', ' ')} UTC`;
  return [
    '#!/bin/sh',
    'set -e',
    `sed -i 's/^OnCalendar=.*/OnCalendar=${calendar}/' /etc/systemd/system/skyport-expiry.timer`,
    'systemctl daemon-reload',
    'systemctl restart skyport-expiry.timer',
    '',
  ].join('\n');
}
