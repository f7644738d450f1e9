import { EventEmitter } from 'node:events';
import type { Ref } from 'nact';
import type { Partition } from '../../terminal-protocol/common.js';
import { ErrorCode, RpcError } from '../../terminal-protocol/errors.js';
import type { CoreServices } from '../services.js';
import { RESTART_INTENSITY, type DurableMachine } from '../supervision/durable-actor.js';
import { Supervisor } from '../supervision/supervisor.js';
import { PARTITION_STATES, idleDeadlineOf, partitionRetryDelayMs, partitionTransition, type PartitionEvent } from './partition-states.js';
import { partitionEffect, type PartitionEffectOptions } from './partition-effects.js';
import { isLive, type PartitionRecord } from './partition-record.js';
import { PartitionCharges } from './partition-charges.js';

/** Why a partition up on our side is lost: what its gate reports of it, or that the gate has it no more. */
const lostReason = (seen: Partition | undefined): string =>
  seen ? `the gate reports it ${seen.status}${seen.error ? `: ${seen.error}` : ''}` : 'the gate no longer has it';

/** Partition changes, published once committed: jobs waiting on their partition and the scheduler listen. */
export class PartitionBus extends EventEmitter {
  constructor() {
    super();
    this.setMaxListeners(0);
  }
  publish(p: PartitionRecord): void {
    this.emit('partition', p);
    this.emit(`partition:${p.name}`, p);
  }
}

/**
 * The `partitions` branch of the supervision tree: one durable actor per partition that is not deleted,
 * respawned from the store when the core starts (each performs its recorded state's effect again, which
 * reconciles it with the gate's record). The scheduler asks for partitions and reserves idle ones here; jobs
 * acquire and release theirs; the gate's notifications reach the actors through here.
 */
export class Partitions {
  readonly bus = new PartitionBus();
  private readonly supervisor: Supervisor<PartitionRecord, PartitionEvent>;
  private readonly restarts = new Set<NodeJS.Timeout>();
  private readonly onGateEvent: (p: Partition) => void;
  private readonly reconcilers = new Map<string, () => void>();

  /** What partitions cost, charged to the jobs that use them. */
  readonly charges: PartitionCharges;

  constructor(
    parent: Ref<unknown>,
    private readonly services: CoreServices,
    private readonly options: PartitionEffectOptions = { retryDelayMs: partitionRetryDelayMs },
  ) {
    this.charges = new PartitionCharges(services);
    this.supervisor = new Supervisor(parent, {
      name: 'partitions',
      idOf: (p) => p.name,
      machineFor: (p) => this.machine(p),
      wake: (name) => {
        const p = this.services.store.partition(name);
        if (!p) return { answer: new RpcError(ErrorCode.NotFound, `partition ${name} not found`) };
        return isLive(p) ? { start: p } : { answer: p };
      },
      gaveUp: (p, reason) => {
        // Its record is intact: try again once the restart intensity's period is over.
        this.services.logger.error({ partition: p.name, reason }, 'partition actor kept failing; restarting it later');
        const timer = setTimeout(() => {
          this.restarts.delete(timer);
          const stored = this.safeGet(p.name);
          if (stored && isLive(stored)) this.supervisor.start(stored);
        }, RESTART_INTENSITY.periodMs);
        timer.unref();
        this.restarts.add(timer);
      },
    });
    // A partition up on our side that its gate says is gone or failed: lost behind our back.
    this.onGateEvent = (seen: Partition) => {
      if (seen.status !== 'deleted' && seen.status !== 'failed') return;
      const p = this.safeGet(seen.name);
      if (p && (p.state === 'ready' || p.state === 'busy' || p.state === 'idle'))
        this.send(p.name, { type: 'lost', reason: lostReason(seen) }).catch(() => {});
    };
  }

  /** Respawn the actor of every partition that is not deleted; returns how many. */
  start(): number {
    for (const gate of this.services.gates.values()) {
      gate.on('partition', this.onGateEvent);
      const reconcile = () => void this.reconcile(gate.name);
      this.reconcilers.set(gate.name, reconcile);
      gate.on('ready', reconcile);
    }
    const live = this.services.store.partitions();
    for (const p of live) this.supervisor.start(p);
    return live.length;
  }

  /** Record a new partition (durably, before anything is asked of a gate), then start its actor. */
  async create(record: PartitionRecord): Promise<PartitionRecord> {
    await this.services.store.savePartition(record);
    this.bus.publish(record);
    this.supervisor.start(record);
    return record;
  }

  send(name: string, event: PartitionEvent, timeoutMs?: number): Promise<PartitionRecord> {
    return this.supervisor.send(name, event, timeoutMs);
  }

  get(name: string): PartitionRecord | null {
    return this.services.store.partition(name);
  }

  /** Every partition not deleted. */
  list(): PartitionRecord[] {
    return this.services.store.partitions();
  }

  /** A name no partition ever had: the job's (`job-<id>`, as the original), suffixed when that one was taken. */
  freshName(base: string): string {
    if (!this.services.store.partitionNameTaken(base)) return base;
    for (let n = 2; ; n++) if (!this.services.store.partitionNameTaken(`${base}-${n}`)) return `${base}-${n}`;
  }

  get size(): number {
    return this.supervisor.size;
  }

  /**
   * A core that stops deletes its idle partitions (nobody can be placed on them until it is back, and on a cloud
   * they bill): each is recorded `deleting` and its gate is asked to delete it, which the gate finishes by itself;
   * the next start confirms it. Busy partitions carry on with their jobs. Bounded by `timeoutMs`.
   */
  async deleteIdle(timeoutMs = 5_000): Promise<string[]> {
    const idle = this.list().filter((p) => p.state === 'idle');
    const asked: string[] = [];
    const deadline = new Promise<void>((resolve) => setTimeout(resolve, timeoutMs).unref());
    await Promise.race([
      deadline,
      Promise.all(
        idle.map(async (p) => {
          try {
            const after = await this.send(p.name, { type: 'delete', reason: 'the core stopped' }, timeoutMs);
            const gate = this.services.gates.get(this.services.config.remotes.find((r) => r.name === p.remote)?.gate ?? '');
            if (after.state === 'deleting' && after.gateId && gate?.connected) await gate.call('partition.delete', { id: after.gateId });
            asked.push(p.name);
          } catch (error) {
            this.services.logger.warn({ partition: p.name, err: (error as Error).message }, 'could not delete an idle partition as the core stopped');
          }
        }),
      ),
    ]);
    if (asked.length) this.services.logger.info({ partitions: asked }, 'idle partitions deleted as the core stopped');
    return asked;
  }

  /**
   * On every (re)connection to a gate: the partitions we hold up there (ready, busy, idle) that the gate no longer
   * has, or reports failed, were lost while we were not listening (a core or gate restart, a lost connection).
   * Those being created or deleted reconcile themselves (their effects ask the gate when they start).
   */
  private async reconcile(gateName: string): Promise<void> {
    const gate = this.services.gates.get(gateName);
    if (!gate) return;
    const remotes = new Set(this.services.config.remotes.filter((r) => r.gate === gateName).map((r) => r.name));
    let held: Partition[];
    try {
      held = await gate.call('partition.list');
    } catch (error) {
      this.services.logger.warn({ gate: gateName, err: (error as Error).message }, 'cannot reconcile partitions with the gate');
      return;
    }
    const byName = new Map(held.map((p) => [p.name, p]));
    for (const p of this.list()) {
      if (!remotes.has(p.remote) || !(p.state === 'ready' || p.state === 'busy' || p.state === 'idle')) continue;
      const seen = byName.get(p.name);
      if (seen && seen.status !== 'deleted' && seen.status !== 'failed') continue;
      const reason = lostReason(seen);
      this.services.logger.warn({ partition: p.name, reason }, 'partition lost');
      this.send(p.name, { type: 'lost', reason }).catch(() => {});
    }
  }

  stop(): void {
    for (const gate of this.services.gates.values()) {
      gate.off('partition', this.onGateEvent);
      const reconcile = this.reconcilers.get(gate.name);
      if (reconcile) gate.off('ready', reconcile);
    }
    for (const timer of this.restarts) clearTimeout(timer);
    this.supervisor.stop();
  }

  private safeGet(name: string): PartitionRecord | null {
    try {
      return this.services.store.partition(name);
    } catch {
      return null;
    }
  }

  private machine(initial: PartitionRecord): DurableMachine<PartitionRecord, PartitionEvent> {
    const logger = this.services.logger.child({ partition: initial.name });
    return {
      id: initial.name,
      logger,
      transition: partitionTransition,
      stateOf: (p) => p.state,
      effectOf: (p) => partitionEffect(p, this.services, this.options),
      deadlineOf: (p) => {
        const at = idleDeadlineOf(p);
        return at === null ? null : { at, event: { type: 'idle-timeout' } };
      },
      failed: (_state, reason) => ({ type: 'step-failed', reason }),
      load: () => this.services.store.partition(initial.name),
      save: (p) => this.services.store.savePartition(p),
      committed: (next, previous) => {
        try {
          this.charges.moved(next, previous);
        } catch (error) {
          logger.error({ err: (error as Error)?.message }, 'could not charge the partition\'s time');
        }
        if (next.state !== previous.state)
          logger.info({ state: next.state, job: next.jobId ?? undefined, reason: next.reason ?? undefined }, 'partition moved');
        this.bus.publish(next);
        if (!PARTITION_STATES[next.state].holdsNodes) this.supervisor.retire(next.name);
        // Nodes freed, a partition idle or up: the queue may move.
        if (next.state !== previous.state) this.services.kickScheduler();
      },
    };
  }
}
