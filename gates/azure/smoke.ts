#!/usr/bin/env node
/**
 * `make azure-smoke`: the azure gate against a real subscription. Creates a one-node partition, waits
 * until it is up, optionally logs in over SSH pinning the reported host key, deletes it and checks that
 * its resource group is gone. Costs a few cents; not run in CI.
 *
 * Environment:
 *   AZURE_SUBSCRIPTION_ID, AZURE_TENANT_ID, AZURE_CLIENT_ID       the service principal (README.md)
 *   AZURE_CLIENT_SECRET or AZURE_CLIENT_CERTIFICATE_PATH           its credential
 *   SKYPORT_AZURE_LOCATION   default eastus
 *   SKYPORT_AZURE_FLAVOR     default Standard_B2s
 *   SKYPORT_SOURCE_CIDR      who may reach SSH (e.g. this machine's address/32); with it, the SSH check runs
 *   SKYPORT_SMOKE_TIMEOUT_SEC  default 1200
 *   SKYPORT_AZURE_OPTIONS    JSON merged into the gate options (armEndpoint, authorityHost, ... of a sovereign cloud)
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import { createLogger } from '../../spool-bootstrap/log.js';
import { spoolPaths } from '../../spool-bootstrap/paths.js';
import type { Partition, PartitionNode } from '../../terminal-protocol/common.js';
import { ErrorCode, RpcError } from '../../terminal-protocol/errors.js';
import { createAzureGate } from './index.js';
import { generateEd25519KeyPair, sshFingerprint } from '../../terminal-protocol/ssh-keys.js';

const env = (name: string, fallback?: string): string => {
  const value = process.env[name] ?? fallback;
  if (value === undefined || value === '') throw new Error(`set ${name} (see gates/azure/README.md)`);
  return value;
};

const say = (text: string): void => void process.stdout.write(`azure-smoke: ${text}\n`);

/** Logs in as the admin user, accepting only the host key the gate reported, and waits for cloud-init. */
async function checkSsh(node: PartitionNode, privateKey: string, deadline: number): Promise<string> {
  for (;;) {
    try {
      return await new Promise<string>((resolve, reject) => {
        const client = new ssh2.Client();
        client
          .on('ready', () => {
            client.exec('cloud-init status --wait >/dev/null; podman --version || docker --version', (error, stream) => {
              if (error) return reject(error);
              let out = '';
              stream.on('data', (d: Buffer) => (out += d.toString())).on('close', () => {
                client.end();
                resolve(out.trim());
              });
            });
          })
          .on('error', reject)
          .connect({
            host: node.publicIp!,
            port: node.sshPort,
            username: node.sshUser,
            privateKey,
            readyTimeout: 20_000,
            hostVerifier: (key: Buffer) => sshFingerprint(key) === node.hostKeyFingerprint,
          });
      });
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 10_000));
    }
  }
}

async function main(): Promise<void> {
  const timeoutMs = Number(env('SKYPORT_SMOKE_TIMEOUT_SEC', '1200')) * 1000;
  const sourceCidr = process.env.SKYPORT_SOURCE_CIDR;
  const certificatePath = process.env.AZURE_CLIENT_CERTIFICATE_PATH;
  const credential = certificatePath ? { certificatePath } : { clientSecret: env('AZURE_CLIENT_SECRET') };
  const coreId = `smoke-${randomBytes(4).toString('hex')}`;
  const dir = mkdtempSync(join(tmpdir(), 'azure-smoke-'));
  const logger = createLogger('azure-smoke', { echo: true, level: process.env.SWM_LOG_LEVEL ?? 'info' });
  const gate = await createAzureGate({
    name: 'azure',
    coreId,
    spool: spoolPaths(dir),
    logger,
    options: {
      subscriptionId: env('AZURE_SUBSCRIPTION_ID'),
      tenantId: env('AZURE_TENANT_ID'),
      clientId: env('AZURE_CLIENT_ID'),
      ...credential,
      location: env('SKYPORT_AZURE_LOCATION', 'eastus'),
      ...(sourceCidr ? { sourceCidrs: [sourceCidr] } : {}),
      pollIntervalMs: 5000,
      ...(JSON.parse(process.env.SKYPORT_AZURE_OPTIONS ?? '{}') as Record<string, unknown>),
    },
  });
  const events: Partition[] = [];
  const waiters: (() => void)[] = [];
  gate.onEvent((p) => {
    events.push(p);
    waiters.splice(0).forEach((w) => w());
  });
  const waitFor = async (name: string, statuses: Partition['status'][]): Promise<Partition> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = events.find((e) => e.name === name && statuses.includes(e.status));
      if (hit) return hit;
      if (Date.now() > deadline) throw new Error(`${name}: no ${statuses.join('/')} within ${timeoutMs / 1000}s`);
      await new Promise<void>((resolve) => {
        waiters.push(resolve);
        setTimeout(resolve, 15_000);
      });
    }
  };

  const flavor = env('SKYPORT_AZURE_FLAVOR', 'Standard_B2s');
  const flavors = await gate.flavors();
  const chosen = flavors.find((f) => f.name === flavor);
  say(`${flavors.length} flavors; ${flavor}: ${chosen ? `${chosen.cpus} cpus, ${chosen.gpus} gpus, ${chosen.pricePerHour ?? '?'} ${chosen.currency ?? ''}/h` : 'not offered'}`);
  const images = await gate.images();
  say(`newest image: ${images[0]?.id ?? '(none)'}`);

  const name = `${coreId}-p`;
  const key = generateEd25519KeyPair();
  let failure: unknown = null;
  try {
    await gate.create({ name, jobId: `${coreId}-job`, owner: 'smoke', flavor, image: null, nodeCount: 1, ports: [], sshPublicKey: key.publicKey, tags: {} });
    const up = await waitFor(name, ['up', 'failed']);
    if (up.status === 'failed') throw new Error(`partition failed: ${up.error}`);
    say(`up: ${JSON.stringify(up.nodes)}`);
    if (sourceCidr) say(`ssh with the pinned host key: ${await checkSsh(up.nodes[0]!, key.privateKey, Date.now() + timeoutMs)}`);
  } catch (error) {
    failure = error;
  } finally {
    say('deleting');
    await gate.delete(name);
    const end = await waitFor(name, ['deleted', 'failed']);
    if (end.status !== 'deleted') failure ??= new Error(`deletion failed: ${end.error}`);
    const gone = await gate.get({ id: name }).then(
      () => false,
      (error: unknown) => error instanceof RpcError && error.code === ErrorCode.NotFound,
    );
    const left = (await gate.list()).filter((p) => p.name === name);
    if (!gone || left.length) failure ??= new Error(`resource group ${name}-rg still exists`);
    else say(`resource group ${name}-rg is gone`);
    await gate.close();
    rmSync(dir, { recursive: true, force: true });
  }
  if (failure) throw failure;
  say('passed');
}

main().catch((error: unknown) => {
  process.stderr.write(`azure-smoke: FAILED: ${(error as Error).message}\n`);
  process.exit(1);
});
