import { isIP } from 'node:net';
import { z } from 'zod';

const cidr = z
  .string()
  .refine((s) => {
    const [address, bits, ...rest] = s.split('/');
    if (rest.length || !address || isIP(address) === 0) return false;
    if (bits === undefined) return true;
    const max = isIP(address) === 4 ? 32 : 128;
    return /^\d+$/.test(bits) && Number(bits) <= max;
  }, 'not an IP address or CIDR block');

/** Sources that mean "the whole internet" in an NSG rule. */
export const ANY_SOURCE = new Set(['*', '0.0.0.0/0', '::/0', 'internet', 'any']);

/**
 * `gates[].options` of an azure gate. One credential kind is chosen: a service principal's secret or
 * certificate, the VM's managed identity, or the Azure CLI's login. Endpoints are configurable for
 * sovereign clouds (and for tests). Secrets live here and nowhere else: never in requests, never in logs.
 */
export const AzureGateOptions = z
  .object({
    subscriptionId: z.string().regex(/^[0-9a-fA-F-]{36}$/, 'not a subscription id (a GUID)'),
    tenantId: z.string().min(1).optional(),
    clientId: z.string().min(1).optional(),
    /** Service principal secret. */
    clientSecret: z.string().min(1).optional(),
    /** PEM file with the service principal's certificate and private key. */
    certificatePath: z.string().min(1).optional(),
    /** Use the managed identity of the machine the gate runs on (with clientId: a user-assigned one). */
    managedIdentity: z.boolean().optional(),
    /** Use the login of the Azure CLI (`az login`) of the user running the gate. */
    azureCli: z.boolean().optional(),
    location: z.string().regex(/^[a-z0-9]+$/, 'not an Azure location name (e.g. eastus2)'),
    armEndpoint: z.url().default('https://management.azure.com'),
    /** OAuth scope of ARM tokens; default `<armEndpoint>/.default`. */
    armScope: z.string().optional(),
    authorityHost: z.url().default('https://login.microsoftonline.com'),
    pricesUrl: z.url().default('https://prices.azure.com/api/retail/prices'),
    currency: z.string().regex(/^[A-Z]{3}$/, 'not a currency code (e.g. USD)').default('USD'),
    /** PEM bundle of extra certificate authorities to trust (private clouds, Azure Stack Hub). */
    caCertPath: z.string().min(1).optional(),
    /** Who may reach the nodes (SSH and the jobs' inbound ports). */
    sourceCidrs: z.array(z.string()).default([]),
    /** Required to let `*` or 0.0.0.0/0 into sourceCidrs: opening nodes to the internet is a decision, not a default. */
    allowAnySource: z.boolean().default(false),
    /** The core's public address: the default source when sourceCidrs is empty. */
    corePublicIp: z.string().refine((s) => isIP(s) !== 0, 'not an IP address').optional(),
    adminUser: z
      .string()
      .regex(/^[a-z_][a-z0-9_-]{0,31}$/, 'not a Linux user name')
      .refine((s) => !['root', 'admin', 'administrator', 'user', 'guest', 'test'].includes(s), 'a name Azure reserves')
      .default('skyport'),
    sshPort: z.number().int().min(1).max(65535).default(22),
    imagePublisher: z.string().min(1).default('Canonical'),
    imageOffer: z.string().min(1).default('ubuntu-24_04-lts'),
    imageSku: z.string().min(1).default('server'),
    containerRuntime: z.enum(['podman', 'docker']).default('podman'),
    /**
     * How nodes without a public IP reach the internet: a NAT gateway in the partition's group, or Azure's
     * default outbound access asked for explicitly (retired for new networks; cheaper where still offered).
     */
    outboundAccess: z.enum(['nat-gateway', 'default']).default('nat-gateway'),
    /**
     * A partition of one node opening no inbound port joins the core's shared network of its region (a VNet and
     * a security group that isolates its VMs from one another, in a group of their own, made at the gate's start):
     * one dependent step less before its VM. False: every partition makes its own network.
     */
    sharedNetwork: z.boolean().default(true),
    /** Most VMs (with their NICs) one gate creates at once; the rest wait their turn (ARM's write budget). */
    maxConcurrentVmCreations: z.number().int().positive().max(500).default(20),
    osDiskType: z.enum(['Standard_LRS', 'StandardSSD_LRS', 'Premium_LRS']).default('StandardSSD_LRS'),
    /** Longest wait for one long-running operation (a VM, a group deletion). */
    operationTimeoutSec: z.number().positive().default(1800),
    /**
     * Longest wait of the core's guest check (guest-ready.ts), after the VMs are Succeeded, for every guest to be
     * ready: cloud-init's final stage done and sshd answering with the pinned host key. Past it the partition is
     * failed with the reason.
     */
    guestReadyTimeoutSec: z.number().positive().default(900),
    /**
     * How long writes into a resource group just created may be answered 404 ResourceGroupNotFound (ARM's
     * replication lag) before the partition is failed.
     */
    freshGroupGraceSec: z.number().nonnegative().default(60),
    /**
     * Interval between polls of a long-running operation (Azure's Retry-After takes precedence); a partition's VMs
     * and guest checks are polled this often per 10 nodes (2 s: at most 5 reads a second per partition).
     */
    pollIntervalMs: z.number().int().positive().default(2000),
    retry: z
      .object({
        /** Retries of one request after 429 or 5xx. */
        maxRetries: z.number().int().min(0).max(20).default(6),
        retryDelayMs: z.number().int().positive().default(1000),
        /** Upper bound of a retry delay, including one asked by Retry-After. */
        maxRetryDelayMs: z.number().int().positive().default(60_000),
      })
      .strict()
      .default({ maxRetries: 6, retryDelayMs: 1000, maxRetryDelayMs: 60_000 }),
    /** How long flavors (sizes, GPU counts, prices) are cached. */
    catalogCacheSec: z.number().nonnegative().default(3600),

    // Where a partition may be placed when Azure has no room for it (capacity fallback).
    /**
     * Availability zones to place partitions in, in order of preference (all nodes of a partition in one zone); a
     * zone without capacity is followed by the next. Empty: no zone (Azure places the VMs in the region).
     */
    zones: z.array(z.string().regex(/^[1-9]$/, 'not an availability zone (1, 2 or 3)')).max(3).default([]),
    /** Sizes to try, in order, when a size has no capacity anywhere allowed: `{ "Standard_D2s_v5": ["Standard_D2as_v5"] }`. */
    fallbackSizes: z.record(z.string().min(1), z.array(z.string().min(1)).max(8)).default({}),
    /** Other regions to try, in order, when no zone and size of `location` has capacity. */
    fallbackRegions: z.array(z.string().regex(/^[a-z0-9]+$/, 'not an Azure location name (e.g. westus3)')).max(8).default([]),

    // Spot.
    /** Partitions are Spot VMs unless a request says otherwise (`spot: false`). */
    spot: z.boolean().default(false),
    /** Most a Spot VM may cost an hour (the currency of the subscription's billing); -1: up to the pay-as-you-go price. */
    spotMaxPrice: z.number().refine((p) => p === -1 || p > 0, 'must be -1 or a positive price').default(-1),

    // Cost safety that does not depend on the core.
    /**
     * Longest life of a partition (the remote's maximum): its resources carry an expiry tag this much (plus the
     * margin) after their creation, its nodes power themselves off then, and the gate deletes it once past it.
     * A request's tag `skyport-lifetime-sec` (the job's duration) shortens it.
     */
    maxLifetimeSec: z.number().positive().default(24 * 3600),
    /** Added to a partition's lifetime before it expires. */
    expiryMarginSec: z.number().nonnegative().default(1800),
    /** How often the gate looks for partitions to delete on its own (expired, unknown, interrupted); 0: never. */
    reconcileIntervalSec: z.number().nonnegative().default(300),
    /**
     * How long a group may go unlisted after the gate asked for it (ARM's lists lag behind its writes) before the
     * gate takes it as never made, and how old a group tagged for this gate but unknown to it must be before it is
     * deleted.
     */
    orphanGraceSec: z.number().nonnegative().default(600),
    /** How often the nodes of up partitions are checked (Spot evictions, VMs gone or powered off); 0: never. */
    watchIntervalSec: z.number().nonnegative().default(30),

    // A faster first job.
    /**
     * A VM image (gallery image version id or managed image id) made with `gates/azure/image/build-image.sh`: the
     * container runtime is already in it, so cloud-init only writes keys and configuration. The default image of
     * partitions whose request names none (or names a container image).
     */
    customImageId: z
      .string()
      .regex(/^\/subscriptions\/[^/]+\/resourceGroups\/[^/]+\/providers\/Microsoft\.Compute\/(galleries\/[^/]+\/images\/[^/]+(\/versions\/[^/]+)?|images\/[^/]+)$/i, 'not a gallery image (version) id or a managed image id')
      .optional(),
    /** Ephemeral OS disks (on the host's local storage: faster to create, free) where the size has room for one. */
    ephemeralOsDisk: z.boolean().default(false),
  })
  .strict()
  .superRefine((o, ctx) => {
    const kinds = (['clientSecret', 'certificatePath', 'managedIdentity', 'azureCli'] as const).filter((k) => o[k] !== undefined && o[k] !== false);
    if (kinds.length !== 1)
      ctx.addIssue({
        code: 'custom',
        path: kinds.length ? [kinds[1]!] : ['clientSecret'],
        message: kinds.length
          ? `choose one credential: ${kinds.join(', ')} are all set`
          : 'no credential: set one of clientSecret, certificatePath, managedIdentity, azureCli',
      });
    if (o.clientSecret !== undefined || o.certificatePath !== undefined) {
      if (!o.tenantId) ctx.addIssue({ code: 'custom', path: ['tenantId'], message: 'required with a service principal' });
      if (!o.clientId) ctx.addIssue({ code: 'custom', path: ['clientId'], message: 'required with a service principal' });
    }
    o.sourceCidrs.forEach((source, i) => {
      if (ANY_SOURCE.has(source.toLowerCase())) {
        if (!o.allowAnySource)
          ctx.addIssue({ code: 'custom', path: ['sourceCidrs', i], message: `"${source}" opens the nodes to the whole internet; set allowAnySource: true to mean it` });
      } else if (!cidr.safeParse(source).success) {
        ctx.addIssue({ code: 'custom', path: ['sourceCidrs', i], message: 'not an IP address or CIDR block' });
      }
    });
  });
export type AzureGateOptions = z.infer<typeof AzureGateOptions>;

/** An option problem; the message names the gate and every bad key, and never echoes a value. */
export class AzureOptionsError extends Error {
  override name = 'AzureOptionsError';
}

export function parseAzureGateOptions(raw: unknown, gateName: string): AzureGateOptions {
  const result = AzureGateOptions.safeParse(raw);
  if (result.success) return result.data;
  const lines = result.error.issues.map((i) => `  gates.${gateName}.options.${i.path.join('.') || '(root)'}: ${i.message}`);
  throw new AzureOptionsError(`invalid options of azure gate "${gateName}":\n${lines.join('\n')}`);
}

/**
 * Where SSH and the jobs' ports may be reached from: the configured CIDRs; else the core's public
 * address; else nothing outside the partition's own network ("VirtualNetwork").
 */
export function allowedSources(o: Pick<AzureGateOptions, 'sourceCidrs' | 'corePublicIp'>): string[] {
  if (o.sourceCidrs.length) return o.sourceCidrs.map((s) => (s.toLowerCase() === 'any' || s.toLowerCase() === 'internet' ? '*' : s));
  if (o.corePublicIp) return [isIP(o.corePublicIp) === 4 ? `${o.corePublicIp}/32` : `${o.corePublicIp}/128`];
  return ['VirtualNetwork'];
}
