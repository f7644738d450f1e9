import { z } from 'zod';
import { Flavor, Image, Partition, Remote, Role } from './common.js';
import { Job, JobState } from './job.js';
import { method } from './method.js';

/** The largest job script accepted, as in the original Sky Port. */
export const MAX_SCRIPT_BYTES = 16 * 1024 * 1024;
/** Largest chunk of file data carried by one message (base64 inside JSON). */
export const MAX_CHUNK_BYTES = 4 * 1024 * 1024;

const JobId = z.object({ id: z.uuid() }).strict();
const people = ['admin', 'user'] as const;
const admins = ['admin'] as const;

/** A path relative to the job directory: no absolute paths, no `..`, no empty segments. */
export const RelativePath = z
  .string()
  .min(1)
  .max(4096)
  .refine((p) => !p.startsWith('/') && !p.split('/').some((s) => s === '..' || s === ''), {
    message: 'must be a relative path inside the job directory (no leading "/", no "..")',
  });

export const InputFile = z
  .object({ path: RelativePath, size: z.number().int().nonnegative(), sha256: z.string().regex(/^[0-9a-f]{64}$/) })
  .strict();
export type InputFile = z.infer<typeof InputFile>;

export const GateHealth = z.object({
  name: z.string(),
  kind: z.string(),
  managed: z.boolean(),
  connected: z.boolean(),
  /**
   * healthy: connected and answering its heartbeat; not-answering: silent past the heartbeat's time-out (stopped,
   * hung); unreachable: no connection; other-spool: the port is served by a gate of another spool; wrong-gate: by
   * another gate of this spool; connecting: not connected yet since the core started.
   */
  health: z.enum(['connecting', 'healthy', 'not-answering', 'unreachable', 'other-spool', 'wrong-gate']),
  /** Why it is not healthy, in one line (null when healthy). */
  problem: z.string().nullable(),
  /** Seconds since the gate last answered, or null if it never has. */
  silentSec: z.number().nullable(),
  restarts: z.number().int(),
  crashLoop: z.boolean(),
  lastError: z.string().nullable(),
});

/**
 * One declared port of a job as the core forwards it. `nodePort`: where it listens on (in) or leads to from
 * (out) the head node, which differs from `port` when another job on the same host holds that port (the job
 * sees it as $SWM_PORT_<port>). `coreListen`: host:port on the core host that reaches an `in` port directly.
 * `target`: host:port an `out` port leads to (the submitting host by default). Null while the job is not running.
 */
export const ForwardedPort = z.object({
  port: z.number().int(),
  direction: z.enum(['in', 'out']),
  nodePort: z.number().int().nullable(),
  coreListen: z.string().nullable(),
  target: z.string().nullable(),
});
export type ForwardedPort = z.infer<typeof ForwardedPort>;

/** Methods a terminal may call on swm-core. */
/** A partition as the core keeps it (core/partitions/), with what its gate last said of its nodes. */
export const PartitionView = Partition.extend({
  remote: z.string(),
  /** The core's state: requested, creating, ready, busy, idle, deleting, deleted, failed. */
  state: z.string(),
  owner: z.string().nullable(),
  flavor: z.string(),
  pool: z.boolean(),
  jobsRun: z.number().int().nonnegative(),
  /** Seconds idle so far, and the keep-alive that deletes it (idle partitions only). */
  idleSec: z.number().nonnegative().nullable(),
  keepSec: z.number().nonnegative().nullable(),
  /** Accrued cost since it came up, where its flavor is priced. */
  cost: z.number().nonnegative().nullable(),
  currency: z.string().nullable(),
});
export type PartitionView = z.infer<typeof PartitionView>;

export const terminalMethods = {
  hello: method(
    'Who am I, and which core is this.',
    people,
    z.object({}).strict().optional(),
    z.object({ version: z.string(), user: z.string(), role: Role, coreId: z.string(), uptimeSec: z.number() }),
  ),
  status: method(
    'Core version, uptime, gates and job counts by state.',
    people,
    z.object({}).strict().optional(),
    z.object({
      version: z.string(),
      coreId: z.string(),
      uptimeSec: z.number(),
      gates: z.array(GateHealth),
      jobs: z.record(z.string(), z.number()),
      /** Log lines the core could not write (its disk was full) since it started; writing resumes by itself. */
      droppedLogLines: z.number().int().nonnegative().optional(),
    }),
  ),
  'job.submit': method(
    'Store a job script; the job is queued once its declared inputs have been uploaded (at once if none).',
    people,
    z
      .object({
        script: z.string(),
        name: z.string().min(1).max(256).optional(),
        inputs: z.array(InputFile).max(100_000).optional(),
      })
      .strict(),
    z.object({
      /** The job's id; for an array (`#SWM array`), the array's id, which its tasks share (each has an id of its own). */
      id: z.uuid(),
      warnings: z.array(z.string()),
      awaitingInputs: z.boolean(),
      /** An array's tasks, by index order. */
      tasks: z.array(z.uuid()).optional(),
    }),
  ),
  'job.plan': method(
    'Check a script as job.submit would and say what the scheduler would do with it now (start it where, or why it ' +
      'would wait) and its price per hour, storing nothing (swm submit --dry-run).',
    people,
    z.object({ script: z.string().max(MAX_SCRIPT_BYTES), name: z.string().max(256).optional(), inputs: z.array(InputFile).max(100_000).optional() }).strict(),
    z.object({
      warnings: z.array(z.string()),
      /** Jobs the submission would make (an array's tasks). */
      tasks: z.number().int(),
      remote: z.string().nullable(),
      flavor: z.string().nullable(),
      nodes: z.number().int(),
      /** It would start now (on `reuse`, an idle partition, or a new one). */
      starts: z.boolean(),
      /** It could never run as asked (`reason` says why): job.submit would end it E. */
      never: z.boolean(),
      reuse: z.string().nullable(),
      /** Why it would wait (Slurm's reason), or never run. */
      reason: z.string().nullable(),
      position: z.number().int().nullable(),
      /** Price per hour of all its nodes (flavor price × nodes); null when the gate publishes none. */
      pricePerHour: z.number().nullable(),
      currency: z.string().nullable(),
    }),
  ),
  'job.input.write': method(
    'Write a chunk of a declared input file (base64) at an offset.',
    people,
    z.object({ id: z.uuid(), path: RelativePath, offset: z.number().int().nonnegative(), data: z.base64() }).strict(),
    z.object({ received: z.number().int() }),
  ),
  'job.input.status': method(
    'How many bytes of each declared input have arrived (to resume an interrupted upload).',
    people,
    JobId,
    z.object({ files: z.array(z.object({ path: z.string(), size: z.number(), received: z.number() })) }),
  ),
  'job.input.commit': method(
    'Verify every declared input (size, SHA-256) and release the job to the scheduler.',
    people,
    JobId,
    Job,
  ),
  'job.input.open': method(
    'Open a binary stream (terminal-protocol/streams.ts) to upload a declared input from an offset (default: what has arrived). The fast path; job.input.write stays for clients without binary frames.',
    people,
    z.object({ id: z.uuid(), path: RelativePath, offset: z.number().int().nonnegative().optional() }).strict(),
    z.object({ stream: z.number().int(), offset: z.number().int(), size: z.number().int(), window: z.number().int() }),
  ),
  'job.list': method(
    'Jobs of the caller (admins: all with `all`), newest first, paginated.',
    people,
    z
      .object({
        all: z.boolean().optional(),
        states: z.array(JobState).max(16).optional(),
        limit: z.number().int().min(1).max(1000).optional(),
        before: z.string().optional(),
        /** Only jobs not ended, or ended at or after this time (ISO 8601). */
        since: z.iso.datetime({ offset: true }).optional(),
      })
      .strict()
      .optional(),
    z.object({ jobs: z.array(Job), next: z.string().nullable() }),
  ),
  'job.get': method('One job.', people, JobId, Job),
  'job.history': method(
    "A job's timeline: each change of its step or state, with its time, oldest first.",
    people,
    JobId,
    z.object({ events: z.array(z.object({ at: z.string(), step: z.string(), state: JobState, details: z.string() })) }),
  ),
  'cost.report': method(
    'What jobs cost (flavor price × nodes × time their partition was held), summed by user, account or remote. Users see their own; admins everyone\'s, or one user\'s.',
    people,
    z
      .object({
        user: z.string().min(1).optional(),
        /** Jobs that ended at or after this time, and those not ended (ISO 8601); absent: all. */
        since: z.iso.datetime({ offset: true }).optional(),
        by: z.enum(['user', 'account', 'remote']).optional(),
      })
      .strict()
      .optional(),
    z.object({
      currency: z.string(),
      total: z.number(),
      jobs: z.number().int(),
      groups: z.array(z.object({ key: z.string(), cost: z.number(), jobs: z.number().int() })),
    }),
  ),
  'job.cancel': method('Cancel a job; its partition is torn down.', people, JobId, Job),
  'job.requeue': method('Put a job back in the queue (after it ended, or to restart it).', people, JobId, Job),
  'job.logs': method(
    "Read a job's stdout or stderr from an offset.",
    people,
    z
      .object({
        id: z.uuid(),
        stream: z.enum(['stdout', 'stderr']),
        offset: z.number().int().nonnegative().optional(),
        limit: z.number().int().min(1).max(MAX_CHUNK_BYTES).optional(),
      })
      .strict(),
    z.object({ data: z.string(), offset: z.number().int(), final: z.boolean() }),
  ),
  'job.log.position': method(
    "Where a job's stdout or stderr starts to hold what it wrote at or after `since` (read it with job.logs from " +
      'there). Output carries no time of its own: the node notes the logs\' sizes as they grow, every few seconds ' +
      '(`precisionSec`), and the offset is that of the last note before `since`; null precision: no notes were kept, offset 0.',
    people,
    z.object({ id: z.uuid(), stream: z.enum(['stdout', 'stderr']), since: z.iso.datetime({ offset: true }) }).strict(),
    z.object({ offset: z.number().int().nonnegative(), precisionSec: z.number().int().nullable() }),
  ),
  'job.subscribe': method(
    'Receive job.event (and, unless `logs` is false, job.log while it runs) notifications for a job.',
    people,
    z.object({ id: z.uuid(), logs: z.boolean().optional() }).strict(),
    Job,
  ),
  'job.unsubscribe': method('Stop notifications for a job.', people, JobId, z.object({ ok: z.literal(true) })),
  'job.files': method(
    "Files in the job's directory on the core (script, inputs, downloaded outputs, logs).",
    people,
    JobId,
    z.object({ files: z.array(z.object({ path: z.string(), size: z.number().int() })) }),
  ),
  'job.file.read': method(
    'Read a chunk of a file of the job directory (base64).',
    people,
    z
      .object({
        id: z.uuid(),
        path: RelativePath,
        offset: z.number().int().nonnegative(),
        length: z.number().int().min(1).max(MAX_CHUNK_BYTES),
      })
      .strict(),
    z.object({ data: z.string(), eof: z.boolean(), size: z.number().int() }),
  ),
  'job.file.open': method(
    'Open a binary stream that sends a file of the job directory from an offset; its END frame carries the SHA-256 of the whole file.',
    people,
    z.object({ id: z.uuid(), path: RelativePath, offset: z.number().int().nonnegative().optional() }).strict(),
    z.object({ stream: z.number().int(), size: z.number().int(), window: z.number().int() }),
  ),
  'job.forward.open': method(
    "Open a TCP connection to one of a running job's `in` ports, carried as a binary stream both ways.",
    people,
    z.object({ id: z.uuid(), port: z.number().int().min(1).max(65535) }).strict(),
    z.object({ stream: z.number().int(), window: z.number().int() }),
  ),
  'job.forward.direct': method(
    "A direct path to one of a running job's `in` ports, for a terminal that can reach the job's head node itself: " +
      'a key pair made for it, authorized on the node for a connection to `target` and nothing else (no shell, no ' +
      'other port), until the job ends; the node is checked by its pinned host key. Unavailable where the node has ' +
      'no address of its own or no node agent: forward through the core (job.forward.open) then.',
    people,
    z.object({ id: z.uuid(), port: z.number().int().min(1).max(65535) }).strict(),
    z.object({
      host: z.string(),
      port: z.number().int(),
      user: z.string(),
      hostKeyFingerprint: z.string(),
      privateKey: z.string(),
      target: z.object({ host: z.string(), port: z.number().int() }),
    }),
  ),
  'job.exec.open': method(
    'Run a command (or a shell) inside a running job, on one of its nodes: in its container, or in its process environment. ' +
      'Stdin and stdout travel on `stream`, stderr on `stderr` (null with a pseudo-terminal, which has one output); ' +
      'a job.exec.exit notification gives the exit status.',
    people,
    z
      .object({
        id: z.uuid(),
        /** The node's rank in the partition (0: the head). */
        node: z.number().int().min(0).max(10_000).optional(),
        /** The program and its arguments; none: the job's shell. */
        command: z.array(z.string().max(64 * 1024)).max(4096).optional(),
        /** Allocate a pseudo-terminal of this size (an interactive shell). */
        pty: z.object({ cols: z.number().int().min(1).max(10_000), rows: z.number().int().min(1).max(10_000), term: z.string().regex(/^[A-Za-z0-9._+-]{1,64}$/).optional() }).strict().optional(),
      })
      .strict(),
    z.object({ exec: z.number().int(), stream: z.number().int(), stderr: z.number().int().nullable(), window: z.number().int() }),
  ),
  'job.exec.resize': method(
    "Tell a command's pseudo-terminal its new window size (the program receives SIGWINCH).",
    people,
    z.object({ exec: z.number().int(), cols: z.number().int().min(1).max(10_000), rows: z.number().int().min(1).max(10_000) }).strict(),
    z.object({ ok: z.literal(true) }),
  ),
  'job.exec.signal': method(
    "Send a signal to a command started by job.exec.open (its process group).",
    people,
    z.object({ exec: z.number().int(), signal: z.enum(['INT', 'TERM', 'HUP', 'QUIT', 'KILL', 'USR1', 'USR2']) }).strict(),
    z.object({ ok: z.literal(true) }),
  ),
  'job.ports': method(
    "A job's forwarded ports: for `in` ports, where they listen on the node and on the core host; for `out` ports, where they lead.",
    people,
    JobId,
    z.object({ ports: z.array(ForwardedPort) }),
  ),
  'remote.list': method('Configured remotes.', people, z.object({}).strict().optional(), z.array(Remote)),
  'flavor.list': method(
    'Flavors of every remote (or one).',
    people,
    z.object({ remote: z.string().optional() }).strict().optional(),
    z.array(Flavor),
  ),
  'image.list': method(
    'Images of every remote (or one).',
    people,
    z.object({ remote: z.string().optional() }).strict().optional(),
    z.array(Image),
  ),
  'partition.list': method(
    'Partitions: their state, owner, jobs run, idle time and cost (admins see all, users their own).',
    people,
    z.object({ all: z.boolean().optional() }).strict().optional(),
    z.array(PartitionView),
  ),
  'partition.delete': method(
    'Delete a partition that runs no job (its owner, or an admin); resolves once deletion has started.',
    people,
    z.object({ name: z.string().min(1).max(200) }).strict(),
    PartitionView,
  ),
  'admin.user.add': method(
    'Issue a certificate bundle for a new user (or admin, or a metrics scraper: monitor).',
    admins,
    z
      .object({ name: z.string().regex(/^[a-z_][a-z0-9_.-]{0,63}$/i), admin: z.boolean().optional(), monitor: z.boolean().optional() })
      .strict(),
    z.object({
      name: z.string(),
      role: Role,
      certPem: z.string(),
      keyPem: z.string(),
      caPem: z.string(),
      coreUrl: z.string(),
    }),
  ),
  'admin.user.revoke': method(
    "Revoke every certificate issued to a user; their open connections are closed.",
    admins,
    z.object({ name: z.string().min(1) }).strict(),
    z.object({ name: z.string(), serials: z.array(z.string()) }),
  ),
} as const;

export type TerminalMethods = typeof terminalMethods;

/** Notifications the core sends to terminals. */
export const terminalNotifications = {
  'job.event': Job,
  'job.log': z.object({ id: z.uuid(), stream: z.enum(['stdout', 'stderr']), offset: z.number().int(), data: z.string() }),
  /** A command of job.exec.open has ended: its exit status, or the signal that killed it (SSH's name, no SIG prefix). */
  'job.exec.exit': z.object({ exec: z.number().int(), code: z.number().int().nullable(), signal: z.string().nullable() }),
} as const;

export type TerminalNotifications = typeof terminalNotifications;
