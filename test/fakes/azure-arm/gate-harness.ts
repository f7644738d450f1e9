import { Writable } from 'node:stream';
import { pino } from 'pino';
import { REDACTED_KEYS } from '../../../spool-bootstrap/log.js';
import { spoolPaths } from '../../../spool-bootstrap/paths.js';
import type { Partition } from '../../../terminal-protocol/common.js';
import type { PartitionRequest } from '../../../terminal-protocol/gate-methods.js';
import { createAzureGate } from '../../../gates/azure/index.js';
import type { AzureGate } from '../../../gates/azure/azure-gate.js';
import type { FakeArm } from './fake-arm.js';
import { azureGateOptionsFor } from './gate-options.js';

/** An azure gate on a fake Azure, with its events and log lines, for tests. */
export interface GateHarness {
  gate: AzureGate;
  events: Partition[];
  logs: string[];
  /** Resolves at the first event (past or future) of `name` with `status`. */
  waitFor(name: string, status: Partition['status'], timeoutMs?: number): Promise<Partition>;
}

/** Starts an azure gate against `fake` with the test defaults of azureGateOptionsFor, `overrides` on top. */
export async function startAzureGate(fake: FakeArm, dir: string, overrides: Record<string, unknown> = {}, coreId = 'core-azure-test'): Promise<GateHarness> {
  const logs: string[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      logs.push(String(chunk));
      done();
    },
  });
  const logger = pino({ level: 'debug', redact: { paths: REDACTED_KEYS, censor: '[redacted]' } }, stream);
  const gate = (await createAzureGate({ name: 'azure', coreId, spool: spoolPaths(dir), logger, options: azureGateOptionsFor(fake, dir, overrides) })) as AzureGate;
  const events: Partition[] = [];
  const waiters = new Set<() => void>();
  gate.onEvent((p) => {
    events.push(p);
    for (const w of [...waiters]) w();
  });
  const waitFor = (name: string, status: Partition['status'], timeoutMs = 10_000): Promise<Partition> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        const hit = events.find((e) => e.name === name && e.status === status);
        if (!hit) return;
        waiters.delete(check);
        clearTimeout(timer);
        resolve(hit);
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`no "${status}" event for ${name}; saw ${JSON.stringify(events.map((e) => [e.name, e.status, e.error]))}`));
      }, timeoutMs);
      waiters.add(check);
      check();
    });
  return { gate, events, logs, waitFor };
}

/** A partition request with test defaults. */
export const partitionRequest = (name: string, sshPublicKey: string, overrides: Partial<PartitionRequest> = {}): PartitionRequest => ({
  name,
  jobId: `job-${name}`,
  owner: 'alice',
  flavor: 'Standard_D2s_v5',
  image: null,
  nodeCount: 1,
  ports: [],
  sshPublicKey,
  tags: {},
  ...overrides,
});
