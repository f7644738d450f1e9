import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { DEFAULT_CONNECTION_LIMITS } from './connection-limits.js';

export const LocalFlavorConfig = z
  .object({
    name: z.string().min(1),
    cpus: z.number().int().positive(),
    memMiB: z.number().int().positive(),
    diskMiB: z.number().int().nonnegative().default(10240),
    gpus: z.number().int().nonnegative().default(0),
    pricePerHour: z.number().nonnegative().default(0),
  })
  .strict();

export const GateConfig = z
  .object({
    name: z.string().regex(/^[a-z][a-z0-9-]*$/),
    kind: z.enum(['local', 'azure']),
    host: z.string().default('127.0.0.1'),
    port: z.number().int().min(1).max(65535),
    /** Started and supervised by swm-core as a child process. */
    managed: z.boolean().default(true),
    /** Kind-specific settings (validated by the gate kind itself). */
    options: z.record(z.string(), z.unknown()).default({}),
  })
  .strict();
export type GateConfig = z.infer<typeof GateConfig>;

export const RemoteConfig = z
  .object({
    name: z.string().regex(/^[a-z][a-z0-9-]*$/),
    gate: z.string(),
    location: z.string().optional(),
    default: z.boolean().default(false),
    /** Most nodes this remote may have allocated at once, over all jobs. */
    maxNodes: z.number().int().positive().default(16),
    /** Container image for jobs that name none (null: such jobs run as plain processes). */
    defaultImage: z.string().nullable().default(null),
    /** Cloud (VM) image for partitions of jobs that name no `cloud-image` (null: the gate's default). */
    defaultCloudImage: z.string().nullable().default(null),
    defaultFlavor: z.string().nullable().default(null),
    /**
     * How long a partition stays idle after its job, for the next compatible job, before it is deleted
     * (seconds; 0: deleted at once; null: the gate kind's default, core/partitions/keep-alive.ts).
     */
    idleTimeoutSec: z.number().int().nonnegative().nullable().default(null),
    /** The longest keep-alive a job may ask for with `#SWM keep-partition`. */
    maxIdleTimeoutSec: z.number().int().nonnegative().default(3600),
    /**
     * Whether the core works this remote's nodes through its node agent (node-agent/README.md) where they can run
     * it; off: through SSH commands, SFTP and GNU tar only (slower: a shell per operation).
     */
    nodeAgent: z.boolean().default(true),
    /** Whether one owner's idle partition may run another owner's job (off: each owner gets their own). */
    sharePartitions: z.boolean().default(false),
    /** Most partitions kept idle at once on this remote (the oldest beyond are deleted); null: no limit. */
    maxIdle: z.number().int().nonnegative().nullable().default(null),
    /** A warm pool: `count` partitions of `flavor` made ahead and kept ready for the first jobs that fit them. */
    pool: z
      .object({
        flavor: z.string(),
        nodes: z.number().int().positive().default(1),
        count: z.number().int().nonnegative(),
        cloudImage: z.string().nullable().default(null),
      })
      .strict()
      .nullable()
      .default(null),
  })
  .strict();
export type RemoteConfig = z.infer<typeof RemoteConfig>;

/** Most a user or an account may hold at once (null or absent: no limit). */
const PartyLimits = z
  .object({
    /** Nodes held at once by its running jobs (Slurm's MaxNodesPerUser / GrpNodes). */
    maxRunningNodes: z.number().int().positive().nullable().optional(),
    /** Jobs in the queue at once, checked at submit (Slurm's MaxSubmitJobs). */
    maxQueuedJobs: z.number().int().positive().nullable().optional(),
  })
  .strict();

/** What a user or an account may spend per period, in the flavors' currency. */
const BudgetsConfig = z
  .object({
    period: z.enum(['day', 'week', 'month']).default('month'),
    /** The currency of the amounts (the flavors' prices are in it). */
    currency: z.string().min(1).default('USD'),
    /** Every user's budget, unless `users` names them (null: none). */
    user: z.number().nonnegative().nullable().default(null),
    users: z.record(z.string(), z.number().nonnegative().nullable()).default({}),
    /** Every account's budget, unless `accounts` names it (null: none). */
    account: z.number().nonnegative().nullable().default(null),
    accounts: z.record(z.string(), z.number().nonnegative().nullable()).default({}),
    /**
     * Running jobs of a user or account whose spending reaches this percentage of its budget are stopped (reason
     * Budget); null: a budget only holds new jobs back, running ones finish.
     */
    hardLimitPercent: z.number().positive().nullable().default(null),
  })
  .strict();

/** How the queue is ordered and held (core/scheduler/): fair share, limits, backfill, budgets. */
export const SchedulingConfig = z
  .object({
    /** Usage this old counts half in fair share (Slurm's PriorityDecayHalfLife); 0: never decays. */
    halfLifeSec: z.number().int().nonnegative().default(7 * 86_400),
    /** How explicit priority and fair share combine into a job's order (w·priority + w·fair share, then age). */
    weights: z
      .object({ priority: z.number().nonnegative().default(1000), fairShare: z.number().nonnegative().default(100) })
      .strict()
      .prefault({}),
    /** Start a lower job in the room reserved for a blocked one when its duration ends before that job would start. */
    backfill: z.boolean().default(true),
    /** Seconds a job holds its nodes beyond its duration (partition setup, stage-in and out), for backfill. */
    backfillOverheadSec: z.number().int().nonnegative().default(60),
    limits: z
      .object({
        user: PartyLimits.optional(),
        users: z.record(z.string(), PartyLimits).default({}),
        account: PartyLimits.optional(),
        accounts: z.record(z.string(), PartyLimits).default({}),
      })
      .strict()
      .prefault({}),
    budgets: BudgetsConfig.nullable().default(null),
  })
  .strict();
export type SchedulingConfig = z.infer<typeof SchedulingConfig>;

/** How long ended jobs' files stay in the spool (their records, cost included, stay). */
export const HistoryConfig = z
  .object({
    /** Days after its end a job's files (inputs, outputs, logs) are deleted from the spool; null: kept. */
    retentionDays: z.number().positive().nullable().default(null),
  })
  .strict();

export const CoreConfig = z
  .object({
    core: z
      .object({
        /** Identifies this core to its gates; every cloud resource is tagged with it. */
        id: z.string().min(1),
        host: z.string().default('localhost'),
        listen: z.string().default('0.0.0.0'),
        port: z.number().int().min(0).max(65535).default(8443),
        logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).default('info'),
        maxMessageBytes: z.number().int().positive().default(24 * 1024 * 1024),
        /** Connections the core (and each gate) admits at once, and per client (spool-bootstrap/connection-limits.ts). */
        maxConnections: z.number().int().positive().default(DEFAULT_CONNECTION_LIMITS.maxConnections),
        maxConnectionsPerClient: z.number().int().positive().default(DEFAULT_CONNECTION_LIMITS.maxConnectionsPerClient),
        /** A TLS handshake not finished within this many milliseconds is abandoned. */
        handshakeTimeoutMs: z.number().int().positive().default(DEFAULT_CONNECTION_LIMITS.handshakeTimeoutMs),
      })
      .strict(),
    remotes: z.array(RemoteConfig).min(1),
    gates: z.array(GateConfig),
    limits: z
      .object({
        maxInputBytes: z.number().int().positive().default(64 * 1024 ** 3),
        /** Time limit applied to jobs that set no `duration` (seconds; 0 = none). */
        defaultDurationSec: z.number().int().nonnegative().default(0),
        /** A job whose declared inputs have not all arrived this long after its submission is canceled (seconds). */
        inputsTimeoutSec: z.number().int().positive().default(24 * 3600),
        /** How many times a job whose spot node the cloud took back is queued again (then it ends E). */
        maxPreemptions: z.number().int().nonnegative().default(3),
      })
      .strict()
      .default({ maxInputBytes: 64 * 1024 ** 3, defaultDurationSec: 0, inputsTimeoutSec: 24 * 3600, maxPreemptions: 3 }),
    reaper: z
      .object({ intervalSec: z.number().positive().default(60) })
      .strict()
      .default({ intervalSec: 60 }),
    compat: z
      .object({ inputRoots: z.array(z.string()).default([]) })
      .strict()
      .default({ inputRoots: [] }),
    scheduling: SchedulingConfig.prefault({}),
    history: HistoryConfig.prefault({}),
  })
  .strict()
  .superRefine((config, ctx) => {
    const gates = new Set(config.gates.map((g) => g.name));
    config.remotes.forEach((r, i) => {
      if (!gates.has(r.gate)) ctx.addIssue({ code: 'custom', path: ['remotes', i, 'gate'], message: `no gate named "${r.gate}"` });
    });
    if (config.remotes.filter((r) => r.default).length > 1)
      ctx.addIssue({ code: 'custom', path: ['remotes'], message: 'more than one remote is marked default' });
  });
export type CoreConfig = z.infer<typeof CoreConfig>;

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Validates a parsed config; the error names every bad key (`remotes.0.gate: no gate named "x"`). */
export function parseCoreConfig(raw: unknown, source = 'config'): CoreConfig {
  const result = CoreConfig.safeParse(raw);
  if (result.success) return result.data;
  const lines = result.error.issues.map((i) => `  ${i.path.join('.') || '(root)'}: ${i.message}`);
  throw new ConfigError(`invalid ${source}:\n${lines.join('\n')}`);
}

export function loadCoreConfig(path: string): CoreConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError(`cannot read ${path}: ${(error as Error).message} (run swm-setup to create a spool)`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(`${path} is not valid JSON: ${(error as Error).message}`);
  }
  return parseCoreConfig(raw, path);
}

/** The default remote: the one marked default, else the first. */
export const defaultRemote = (config: CoreConfig): RemoteConfig => config.remotes.find((r) => r.default) ?? config.remotes[0]!;

/** The user's side: where the core is. */
export const UserConfig = z.object({ coreUrl: z.string().url(), user: z.string().optional() }).strict();
export type UserConfig = z.infer<typeof UserConfig>;
