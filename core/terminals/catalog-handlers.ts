import { logHealth } from '../../spool-bootstrap/log.js';
import type { Identity } from '../../spool-bootstrap/pki.js';
import type { Flavor, Image, Partition, Remote } from '../../terminal-protocol/common.js';
import type { z } from 'zod';
import type { GateHealth } from '../../terminal-protocol/terminal-methods.js';
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

  /** Partitions as the gates report them right now; users see those of their own jobs. */
  async partitions(caller: Identity): Promise<(Partition & { remote: string })[]> {
    const out: (Partition & { remote: string })[] = [];
    await Promise.all(
      this.services.config.remotes.map(async (r) => {
        const gate = this.services.gates.get(r.gate);
        if (!gate?.connected) return;
        for (const p of await gate.call('partition.list')) {
          if (p.status === 'deleted') continue;
          const job = p.jobId ? this.services.store.get(p.jobId) : null;
          if (job && job.remote && job.remote !== r.name) continue;
          if (caller.role !== 'admin' && job?.owner !== caller.name) continue;
          if (!out.some((o) => o.id === p.id && o.remote === (job?.remote ?? r.name))) out.push({ ...p, remote: job?.remote ?? r.name });
        }
      }),
    );
    return out.sort((a, b) => a.name.localeCompare(b.name));
  }
}
