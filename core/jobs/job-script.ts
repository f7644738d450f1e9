import { ErrorCode, RpcError } from '../../terminal-protocol/errors.js';
import { MAX_SCRIPT_BYTES } from '../../terminal-protocol/terminal-methods.js';
import type { PortSpec } from '../../terminal-protocol/gate-methods.js';
import { imageReferenceProblem } from '../../terminal-protocol/image-reference.js';
import { jobPathProblem } from '../../terminal-protocol/path-patterns.js';
import type { Dependency, DependencyKind } from '../scheduler/dependencies.js';
import { parseSpot, type SpotDirective } from '../scheduler/spot.js';

/** A job array (`#SWM array 0-99%10`): the task indices, and how many of them may run at once. */
export interface ArraySpec {
  /** The spec as written, e.g. `0-99%10`. */
  spec: string;
  /** Task indices, ascending, each once. */
  indices: number[];
  /** Most tasks running at once (`%K`); null: no cap. */
  maxRunning: number | null;
}

/** What a job script asks for through its `#SWM <key> <value>` lines. */
export interface Directives {
  name?: string;
  comment?: string;
  account?: string;
  flavor?: string;
  cloudImage?: string;
  containerImage?: string;
  gpus?: number;
  nodes: number;
  remote?: string;
  /** Time limit in seconds (0 = none). */
  durationSec: number;
  ports: PortSpec[];
  inputFiles: string[];
  outputFiles: string[];
  workdir?: string;
  relocatable: boolean;
  submissionAddress?: string;
  stdin?: string;
  stdout?: string;
  stderr?: string;
  env: Record<string, string>;
  priority: number;
  /**
   * Where the script runs on a multi-node partition: `head` (absent: the default) on the head node only, which
   * starts the others itself (mpirun, torchrun over SSH); `all` on every node at once, with its rank, as
   * SkyPilot's `run`.
   */
  runOn?: 'head' | 'all';
  /** How long the partition stays up after the job, for the next job to reuse (0: deleted at once). Absent: the remote's rule. */
  keepPartitionSec?: number;
  /** `#SWM array`: the submission makes one job per index. */
  array?: ArraySpec;
  /** `#SWM depends`: every clause must hold before the job starts (job ids in full). */
  depends?: Dependency[];
  /** `#SWM spot`: spot nodes (and their maximum price), or `false`: on-demand even where the gate defaults to spot. */
  spot?: SpotDirective | false;
}

/** Most tasks one array submission may make (Slurm's MaxArraySize is 1001). */
export const MAX_ARRAY_TASKS = 1000;
/** The highest task index an array may name. */
export const MAX_ARRAY_INDEX = 1_000_000;

/**
 * Parse an array spec as Slurm's `--array`: indices and ranges separated by commas (`0-99`, `1,3,5-7`), a range
 * with a step (`0-20:5`), and an optional `%K` cap on the tasks running at once. Returns the spec or a reason.
 */
export function parseArraySpec(text: string): ArraySpec | string {
  const spec = text.trim();
  const m = /^([^%]+)(?:%(\d+))?$/.exec(spec);
  if (!m) return `"${spec}" is not INDICES[%MAX] (e.g. 0-99%10 or 1,3,5-7)`;
  const indices = new Set<number>();
  for (const raw of m[1]!.split(',')) {
    const part = raw.trim();
    const r = /^(\d+)(?:-(\d+)(?::(\d+))?)?$/.exec(part);
    if (!r) return `"${part}" is not an index, a range A-B, or a range with a step A-B:S`;
    const from = Number(r[1]);
    const to = r[2] === undefined ? from : Number(r[2]);
    const step = r[3] === undefined ? 1 : Number(r[3]);
    if (to > MAX_ARRAY_INDEX) return `index ${to} is over the highest, ${MAX_ARRAY_INDEX}`;
    if (to < from) return `range ${part} ends before it starts`;
    if (step < 1) return `range ${part} has a step of 0`;
    for (let i = from; i <= to; i += step) {
      indices.add(i);
      if (indices.size > MAX_ARRAY_TASKS) return `more than ${MAX_ARRAY_TASKS} tasks`;
    }
  }
  const maxRunning = m[2] === undefined ? null : Number(m[2]);
  if (maxRunning === 0) return 'the %MAX of tasks running at once must be 1 or more';
  return { spec, indices: [...indices].sort((a, b) => a - b), maxRunning };
}

const DEPENDENCY_KINDS: readonly DependencyKind[] = ['afterok', 'afterany', 'afternotok'];
const JOB_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * Parse dependency clauses as Slurm's `--dependency`: `KIND:ID[:ID...]`, several separated by commas (all must
 * hold). KIND is afterok, afterany or afternotok; each ID a full job id, or an array's id (every task of it).
 */
export function parseDependencies(text: string): Dependency[] | string {
  const clauses: Dependency[] = [];
  for (const part of text.split(',').map((c) => c.trim()).filter(Boolean)) {
    const [kind, ...ids] = part.split(':').map((x) => x.trim().toLowerCase());
    if (!DEPENDENCY_KINDS.includes(kind as DependencyKind)) return `"${part}" is not afterok:ID, afterany:ID or afternotok:ID`;
    if (!ids.length || ids.some((id) => id === '')) return `"${part}" names no job: write ${kind}:ID[:ID...]`;
    for (const id of ids) if (!JOB_ID.test(id)) return `"${id}" is not a full job id (swm submit --depends also takes short ids and names)`;
    clauses.push({ kind: kind as DependencyKind, jobIds: ids });
  }
  if (!clauses.length) return 'no dependency given: write afterok:ID[:ID...]';
  return clauses;
}

/** The longest a partition may be kept after its job (`keep-partition`): as long as a job may run, a year. */
export const MAX_KEEP_PARTITION_SEC = 365 * 86_400;

export interface ParsedScript {
  directives: Directives;
  warnings: string[];
}

const DIRECTIVE = /^#SWM\s+(\S+)(?:\s+(.*?))?\s*$/;

/** The priority of a job that names none; only admins may submit above it (core/terminals/job-handlers.ts). */
export const DEFAULT_PRIORITY = 0;
/** The longest time limit a script may ask for (one year): every duration accepted is honoured to the second. */
export const MAX_DURATION_SEC = 365 * 86_400;

const invalid = (line: number, message: string): RpcError =>
  new RpcError(ErrorCode.InvalidScript, `line ${line}: ${message}`, { line });

const fileList = (value: string): string[] => value.split(/[\s,]+/).filter(Boolean);

const positiveInt = (line: number, key: string, value: string, min = 1, max = 100_000): number => {
  if (!/^\d+$/.test(value)) throw invalid(line, `${key} must be a whole number, got "${value}"`);
  const n = Number(value);
  if (n < min || n > max) throw invalid(line, `${key} must be between ${min} and ${max}, got ${n}`);
  return n;
};

/** `HH:MM:SS`, `MM:SS`, `SS`, or `D-HH:MM:SS` (as Slurm) → seconds. */
export function parseDuration(value: string): number | null {
  const m = /^(?:(\d+)-)?(?:(?:(\d+):)?(\d+):)?(\d+)$/.exec(value);
  if (!m) return null;
  const [, d, h, min, s] = m;
  if (Number(s) > 59 && (min !== undefined || h !== undefined)) return null;
  if (min !== undefined && h !== undefined && Number(min) > 59) return null;
  return ((Number(d ?? 0) * 24 + Number(h ?? 0)) * 60 + Number(min ?? 0)) * 60 + Number(s);
}

const parsePorts = (line: number, value: string): PortSpec[] =>
  value
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)
    .map((spec) => {
      const m = /^(\d{1,5})\/(tcp)\/(in|out)$/.exec(spec);
      const port = m ? Number(m[1]) : 0;
      if (!m || port < 1 || port > 65535) throw invalid(line, `ports: "${spec}" is not PORT/tcp/in or PORT/tcp/out`);
      return { port, protocol: 'tcp' as const, direction: m[3] as 'in' | 'out' };
    });

/** A path as a message shows it: NUL bytes visible, at most 80 characters. */
export const quotedPath = (path: string): string => {
  const visible = path.replace(/\0/g, '\\0');
  return visible.length > 80 ? `${visible.slice(0, 77)}...` : visible;
};

/** A file of the job's directory (input, output, stdin, stdout, stderr), by the one rule of path-patterns.ts. */
const relativeFile = (line: number, key: string, path: string): string => {
  const problem = jobPathProblem(path);
  if (problem) throw invalid(line, `${key}: "${quotedPath(path)}" ${problem.reason}`);
  return path.replace(/^(\.\/)+/, '');
};

/** A cloud image is a marketplace URN, an image id or a container reference: never an option, never two words. */
const cloudImage = (line: number, value: string): string => {
  if (value.startsWith('-') || /[\s\x00-\x1f\x7f]/.test(value)) throw invalid(line, `cloud-image "${value}" is not an image name`);
  return value;
};

/**
 * Parse the `#SWM` directives of a job script. Pure: no I/O. Malformed values are errors naming the line;
 * unknown directives are warnings (the original ignored them silently).
 */
export function parseJobScript(script: string): ParsedScript {
  if (Buffer.byteLength(script, 'utf8') > MAX_SCRIPT_BYTES)
    throw new RpcError(ErrorCode.TooLarge, `job script exceeds ${MAX_SCRIPT_BYTES / 1024 / 1024} MB`);
  if (script.trim() === '') throw new RpcError(ErrorCode.InvalidScript, 'job script is empty');
  const d: Directives = {
    nodes: 1,
    durationSec: 0,
    ports: [],
    inputFiles: [],
    outputFiles: [],
    relocatable: false,
    env: {},
    priority: DEFAULT_PRIORITY,
  };
  const warnings: string[] = [];
  const lines = script.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const text = lines[i]!.replace(/\r$/, '');
    if (!text.startsWith('#SWM')) continue;
    const n = i + 1;
    const m = DIRECTIVE.exec(text);
    if (!m) throw invalid(n, `malformed directive "${text}" (expected "#SWM <key> <value>")`);
    const key = m[1]!.toLowerCase();
    const value = m[2] ?? '';
    const needValue = (): string => {
      if (value === '') throw invalid(n, `${key} needs a value`);
      return value;
    };
    switch (key) {
      case 'name':
        d.name = needValue().slice(0, 256);
        break;
      case 'comment':
        d.comment = value;
        break;
      case 'account':
        d.account = needValue();
        break;
      case 'flavor':
        d.flavor = needValue();
        break;
      case 'cloud-image':
        d.cloudImage = cloudImage(n, needValue());
        break;
      case 'container-image': {
        const problem = imageReferenceProblem(needValue());
        if (problem) throw invalid(n, `container-image "${value}" ${problem}`);
        d.containerImage = value;
        break;
      }
      case 'gpus':
        d.gpus = positiveInt(n, key, needValue(), 0, 64);
        break;
      case 'nodes':
        d.nodes = positiveInt(n, key, needValue(), 1, 1000);
        break;
      case 'remote':
        if (!/^[a-z][a-z0-9-]*$/.test(needValue())) throw invalid(n, `remote "${value}" is not a remote name`);
        d.remote = value;
        break;
      case 'duration': {
        const seconds = parseDuration(needValue());
        if (seconds === null || seconds === 0) throw invalid(n, `duration "${value}" is not HH:MM:SS`);
        if (seconds > MAX_DURATION_SEC) throw invalid(n, `duration "${value}" is longer than ${MAX_DURATION_SEC / 86_400} days`);
        d.durationSec = seconds;
        break;
      }
      // List directives may be empty (an empty list), as in the original: templates render them so.
      case 'ports':
        for (const port of parsePorts(n, value)) {
          if (d.ports.some((p) => p.port === port.port && p.direction === port.direction))
            throw invalid(n, `port ${port.port}/${port.direction} declared twice`);
          d.ports.push(port);
        }
        break;
      case 'input-files':
        d.inputFiles.push(...fileList(value).map((p) => relativeFile(n, key, p)));
        break;
      case 'output-files':
        d.outputFiles.push(...fileList(value).map((p) => relativeFile(n, key, p)));
        break;
      case 'workdir':
        // A directory of the job's own directory, where the script runs (made if missing); never outside it.
        d.workdir = relativeFile(n, key, needValue()).replace(/\/+$/, '') || undefined;
        break;
      case 'relocatable':
        if (value !== '' && !/^(true|false|yes|no|1|0)$/i.test(value)) throw invalid(n, `relocatable must be true or false`);
        d.relocatable = value === '' || /^(true|yes|1)$/i.test(value);
        break;
      case 'submission-address':
        d.submissionAddress = needValue();
        break;
      case 'stdin':
        d.stdin = relativeFile(n, key, needValue());
        break;
      case 'stdout':
        d.stdout = relativeFile(n, key, needValue());
        break;
      case 'stderr':
        d.stderr = relativeFile(n, key, needValue());
        break;
      case 'env': {
        const eq = needValue().indexOf('=');
        const k = eq > 0 ? value.slice(0, eq) : '';
        if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) throw invalid(n, `env needs KEY=VALUE, got "${value}"`);
        d.env[k] = value.slice(eq + 1);
        break;
      }
      case 'run-on':
        if (!/^(head|all)$/i.test(needValue())) throw invalid(n, `run-on must be head or all, got "${value}"`);
        d.runOn = value.toLowerCase() as 'head' | 'all';
        break;
      case 'keep-partition':
        d.keepPartitionSec = positiveInt(n, key, needValue(), 0, MAX_KEEP_PARTITION_SEC);
        break;
      case 'array': {
        if (d.array) throw invalid(n, 'array given twice');
        const array = parseArraySpec(needValue());
        if (typeof array === 'string') throw invalid(n, `array: ${array}`);
        d.array = array;
        break;
      }
      case 'depends': {
        const clauses = parseDependencies(needValue());
        if (typeof clauses === 'string') throw invalid(n, `depends: ${clauses}`);
        d.depends = [...(d.depends ?? []), ...clauses];
        break;
      }
      case 'spot': {
        const spot = parseSpot(value);
        if (typeof spot === 'string') throw invalid(n, `spot: ${spot}`);
        d.spot = spot;
        break;
      }
      case 'priority':
        if (!/^-?\d+$/.test(needValue())) throw invalid(n, `priority must be an integer`);
        // Clamped to ±1000; above DEFAULT_PRIORITY is for admins, which the submit checks (the parser knows no caller).
        d.priority = Math.max(-1000, Math.min(1000, Number(value)));
        break;
      default:
        warnings.push(`line ${n}: unknown directive "${m[1]}" ignored`);
    }
  }
  return { directives: d, warnings };
}
