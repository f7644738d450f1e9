import { logHealth } from '../../spool-bootstrap/log.js';
import type { Identity } from '../../spool-bootstrap/pki.js';
import type { Flavor, Image, Partition, Remote } from '../../terminal-protocol/common.js';
import type { z } from 'zod';
import { ErrorCode, RpcError } from '../../terminal-protocol/errors.js';
import type { GateHealth, PartitionView } from '../../terminal-protocol/terminal-methods.js';
import type { PartitionRecord } from '../partitions/partition-record.js';
import { isPoolSpare } from '../partitions/partition-states.js';
import { hourlyPrice } from '../scheduler/spot.js';
import type { CoreServices } from '../services.js';

/** Remotes, flavors, images and partitions: what the core's gates offer and hold. */
export class CatalogHandlers {
  constructor(private readonly services: CoreServices) {}

  remotes(): Remote[] {
    return this.services.config.remotes.map((r) => ({
      name: r.name,
      kind: this.services.config.gates.find((g) => g.name === r.gate)?.kind ?? 'unknown',
      gate: r.gate,
      ...(r.location ? { location: r.location } : {}),
      default: r.default || (!this.services.config.remotes.some((x) => x.default) && r === this.services.config.remotes[0]),
      maxNodes: r.maxNodes,
      defaultImage: r.defaultImage,
      defaultFlavor: r.defaultFlavor,
    }));
  }

  /** For `status`: log lines the core could not write (a full disk) since it started; logging resumes by itself. */
  droppedLogLines(): number {
    return logHealth(this.services.logger).droppedLines;
  }

  /** Every configured gate's health for `status`: the core's view of it, and its process's when managed. */
  gates(): z.infer<typeof GateHealth>[] {
    return this.services.config.gates.map((g) => {
      const client = this.services.gates.get(g.name);
      const process = this.services.gateProcesses?.get(g.name);
      // A managed gate that keeps exiting gave its reason (its port taken, ...): part of why it is not healthy.
      const exited = process?.lastExit && (process.pid === null || process.crashLoop) ? `the managed gate exited: ${process.lastExit}` : null;
      const problem = client?.healthy ? null : [client?.problem, exited].filter(Boolean).join('; ') || null;
      return {
        name: g.name,
        kind: g.kind,
        managed: g.managed,
        connected: client?.connected ?? false,
        health: client?.health ?? 'connecting',
        problem,
        silentSec: client?.silentSec ?? null,
        restarts: process?.restarts ?? 0,
        crashLoop: process?.crashLoop ?? false,
        lastError: client?.lastError ?? null,
      };
    });
  }

  private remotesNamed(name?: string) {
    return this.services.config.remotes.filter((r) => !name || r.name === name);
  }

  flavors(params?: { remote?: string }): Flavor[] {
    return this.remotesNamed(params?.remote).flatMap((r) => (this.services.gates.get(r.gate)?.flavors ?? []).map((f) => ({ ...f, remote: r.name })));
  }

  images(params?: { remote?: string }): Image[] {
    return this.remotesNamed(params?.remote).flatMap((r) => (this.services.gates.get(r.gate)?.images ?? []).map((i) => ({ ...i, remote: r.name })));
  }

  /** Partitions not deleted (with `all`, those deleted in the last hour too); users see their own. */
  partitions(caller: Identity, params?: { all?: boolean }): PartitionView[] {
    const now = Date.now();
    return this.services.partitions
      .list()
      .concat(params?.all ? this.services.store.partitions(now - 3_600_000).filter((p) => p.state === 'deleted') : [])
      .filter((p) => caller.role === 'admin' || p.owner === caller.name)
      .map((p) => this.view(p, now))
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  /** Delete a partition that runs no job: its owner's or an admin's call. */
  async deletePartition(caller: Identity, params: { name: string }): Promise<PartitionView> {
    const p = this.services.partitions.get(params.name);
    if (!p || (caller.role !== 'admin' && p.owner !== caller.name)) throw new RpcError(ErrorCode.NotFound, `partition ${params.name} not found`);
    const after = await this.services.partitions.send(p.name, { type: 'delete', reason: `deleted by ${caller.name}` });
    return this.view(after, Date.now());
  }

  private view(p: PartitionRecord, now: number): PartitionView {
    const remote = this.services.config.remotes.find((r) => r.name === p.remote);
    const flavor = (remote ? this.services.gates.get(remote.gate)?.flavors : null)?.find((f) => f.name === p.flavor);
    const hours = p.upMs === null ? 0 : ((p.deletedMs ?? now) - p.upMs) / 3_600_000;
    const price = hourlyPrice(flavor, p.spot);
    return {
      id: p.gateId ?? p.name,
      name: p.name,
      status: WIRE_STATUS[p.state],
      jobId: p.jobId,
      nodes: p.nodes,
      ...(p.reason && (p.state === 'failed' || p.state === 'deleting') ? { error: p.reason } : {}),
      remote: p.remote,
      state: p.state,
      owner: p.owner,
      flavor: p.flavor,
      pool: p.pool,
      jobsRun: p.jobsRun,
      idleSec: p.state === 'idle' && p.idleSinceMs !== null ? Math.max(0, Math.round((now - p.idleSinceMs) / 1000)) : null,
      keepSec: p.state === 'idle' && !isPoolSpare(p) ? p.keepSec : null,
      cost: price !== undefined ? Math.round(price * p.nodeCount * hours * 10_000) / 10_000 : null,
      currency: price !== undefined ? (flavor?.currency ?? 'USD') : null,
    };
  }
}

/** The gate-style status of each of the core's partition states. */
const WIRE_STATUS: Record<PartitionRecord['state'], Partition['status']> = {
  requested: 'creating',
  creating: 'creating',
  ready: 'up',
  busy: 'up',
  idle: 'up',
  deleting: 'deleting',
  deleted: 'deleted',
  failed: 'failed',
  retrying: 'creating',
};
