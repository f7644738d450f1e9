import type { Job, JobState } from '../terminal-protocol/job.js';
import { isFinal, jobStateNames } from '../terminal-protocol/job.js';

/**
 * Human output: tables, key/value listings, sizes, durations. Pure functions returning strings; the
 * commands decide where they go. Machine output is `printJson`: one JSON document on stdout.
 */

export interface Column<T> {
  header: string;
  value: (row: T) => string;
  align?: 'left' | 'right';
}

/** Cells are one line each: control characters and newlines (free text from a job) become spaces. */
const oneLine = (text: string): string => text.replace(/[\u0000-\u001f\u007f]+/g, ' ');

/** Columns separated by two spaces, widths from the widest cell, no trailing spaces. */
export function renderTable<T>(columns: readonly Column<T>[], rows: readonly T[]): string {
  const cells = rows.map((row) => columns.map((c) => oneLine(c.value(row))));
  const widths = columns.map((c, i) => Math.max(c.header.length, ...cells.map((r) => r[i]!.length)));
  const line = (values: readonly string[]): string =>
    values
      .map((v, i) => {
        const last = i === values.length - 1;
        if (columns[i]!.align === 'right') return v.padStart(widths[i]!);
        return last ? v : v.padEnd(widths[i]!);
      })
      .join('  ')
      .trimEnd();
  return [line(columns.map((c) => c.header)), ...cells.map(line)].join('\n') + '\n';
}

/** `label  value` lines with the labels aligned; empty values show as `-`. */
export function renderPairs(pairs: readonly (readonly [string, string])[]): string {
  const width = Math.max(0, ...pairs.map(([k]) => k.length));
  return pairs.map(([k, v]) => `${k.padEnd(width)}  ${v === '' ? '-' : oneLine(v)}`.trimEnd()).join('\n') + '\n';
}

const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/** 1536 → "1.5 KiB"; one decimal below 10 units, none above. */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 0) return '?';
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  if (unit === 0) return `${bytes} B`;
  const shown = value < 10 ? value.toFixed(1) : Math.round(value).toString();
  return `${shown} ${units[unit]}`;
}

/** 45 → "45s", 725 → "12m05s", 11220 → "3h07m", 187200 → "2d04h". */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.floor(seconds);
  const two = (n: number): string => n.toString().padStart(2, '0');
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${two(s % 60)}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${two(Math.floor((s % 3600) / 60))}m`;
  return `${Math.floor(s / 86400)}d${two(Math.floor((s % 86400) / 3600))}h`;
}

/** An ISO time as local "YYYY-MM-DD HH:MM:SS"; null as "-". */
export function formatTime(iso: string | null): string {
  if (!iso) return '-';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const two = (n: number): string => n.toString().padStart(2, '0');
  return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
}

export const formatState = (state: JobState): string => `${state} ${jobStateNames[state]}`;

export const yesNo = (b: boolean): string => (b ? 'yes' : 'no');

/** How long a job has run (start to end, or to `now` while it runs); "-" before it started. */
export function jobElapsed(job: Pick<Job, 'start_time' | 'end_time'>, now: Date = new Date()): string {
  if (!job.start_time) return '-';
  const start = Date.parse(job.start_time);
  const end = job.end_time ? Date.parse(job.end_time) : now.getTime();
  if (Number.isNaN(start) || Number.isNaN(end)) return '-';
  return formatDuration(Math.max(0, (end - start) / 1000));
}

/** Characters of a job id tables show: the first group (8), more where two ids shown share it. */
export const SHORT_ID = 8;

/** The shortest length from SHORT_ID up at which every id of `ids` differs from the others. */
export function shortIdLength(ids: readonly string[]): number {
  const distinct = [...new Set(ids)];
  const longest = Math.max(SHORT_ID, ...distinct.map((id) => id.length));
  for (let length = SHORT_ID; length < longest; length++)
    if (new Set(distinct.map((id) => id.slice(0, length))).size === distinct.length) return length;
  return longest;
}

/** How a table shows the ids of its rows: short (unique among them), or whole with `--long`. */
export const idShortener = (ids: readonly string[], long: boolean): ((id: string) => string) => {
  if (long) return (id) => id;
  const length = shortIdLength(ids);
  return (id) => id.slice(0, length);
};

/** A cost as people read it: `0.42 USD`; `-` when not known. */
export const formatCost = (amount: number | null | undefined, currency?: string | null): string =>
  amount == null ? '-' : `${amount < 0.01 && amount > 0 ? amount.toPrecision(2) : amount.toFixed(2)}${currency ? ` ${currency}` : ''}`;

/**
 * Slurm's NODELIST(REASON): the nodes of a job that holds them, else why it waits, or why it ended when the end
 * has a code (`(TimeLimit)`); a queued job's place in line follows its reason (`(Priority) #3`).
 */
export function nodelistOrReason(job: Job): string {
  if (job.reason && (job.state === 'Q' || isFinal(job.state))) return `(${job.reason})${job.state === 'Q' && job.position ? ` #${job.position}` : ''}`;
  if (!isFinal(job.state) && job.node_names.length) return job.node_names.join(',');
  return '-';
}

/** A row of `swm jobs`: a job, or an array folded to one line. */
export type JobRow = Job & { tasks?: Job[] };

/** The letters of states in the order an array's line names them (the most active first). */
const STATE_ORDER: readonly JobState[] = ['R', 'T', 'W', 'Q', 'E', 'C', 'F'];

/**
 * Fold each array's tasks into one row at the place of its newest task: its id is the array's, its state the
 * most active of its tasks', its details the count of tasks per state (`20 tasks: 4 R, 10 Q, 6 F`). Pure.
 */
export function foldArrays(jobs: readonly Job[]): JobRow[] {
  const byArray = new Map<string, Job[]>();
  for (const j of jobs) if (j.array_id) byArray.set(j.array_id, [...(byArray.get(j.array_id) ?? []), j]);
  const rows: JobRow[] = [];
  for (const j of jobs) {
    if (!j.array_id) {
      rows.push(j);
      continue;
    }
    const tasks = byArray.get(j.array_id);
    if (!tasks) continue;
    byArray.delete(j.array_id);
    const counts = new Map<JobState, number>();
    for (const t of tasks) counts.set(t.state, (counts.get(t.state) ?? 0) + 1);
    const state = STATE_ORDER.find((s) => counts.has(s))!;
    const starts = tasks.map((t) => t.start_time).filter((t): t is string => !!t).sort();
    const active = tasks.some((t) => !isFinal(t.state));
    const ends = tasks.map((t) => t.end_time).filter((t): t is string => !!t).sort();
    const waiting = tasks.find((t) => t.state === 'Q' && t.reason);
    const costs = tasks.map((t) => t.cost_amount).filter((c): c is number => typeof c === 'number');
    rows.push({
      ...tasks[0]!,
      id: j.array_id,
      state,
      state_details: `${tasks.length} tasks: ${STATE_ORDER.filter((s) => counts.has(s)).map((s) => `${counts.get(s)} ${s}`).join(', ')}`,
      start_time: starts[0] ?? null,
      end_time: active ? null : (ends[ends.length - 1] ?? null),
      node_names: [],
      remote_id: tasks.find((t) => t.remote_id)?.remote_id ?? null,
      reason: waiting?.reason ?? null,
      position: waiting?.position ?? null,
      cost_amount: costs.length ? costs.reduce((a, b) => a + b, 0) : null,
      tasks,
    });
  }
  return rows;
}

/** The columns of `swm jobs`. Short ids (every command takes a unique prefix), whole ones with `long`; `wide` adds account and cost. */
export const jobColumns = (showOwner: boolean, now: Date = new Date(), shownId: (id: string) => string = (id) => id, wide = false): Column<JobRow>[] => [
  { header: 'ID', value: (j) => shownId(j.id) },
  { header: 'NAME', value: (j) => (j.array_index != null && !j.tasks ? `${j.name}[${j.array_index}]` : j.tasks ? `${j.name}[]` : j.name) },
  ...(showOwner ? [{ header: 'OWNER', value: (j: Job) => j.owner }] : []),
  ...(wide ? [{ header: 'ACCOUNT', value: (j: Job) => j.account ?? '-' }] : []),
  { header: 'ST', value: (j) => j.state },
  { header: 'SUBMITTED', value: (j) => formatTime(j.submit_time) },
  { header: 'ELAPSED', value: (j) => jobElapsed(j, now), align: 'right' },
  { header: 'REMOTE', value: (j) => j.remote_id ?? '-' },
  ...(wide ? [{ header: 'COST', value: (j: Job) => formatCost(j.cost_amount, j.cost_currency), align: 'right' as const }] : []),
  { header: 'NODELIST(REASON)', value: (j) => nodelistOrReason(j) },
  { header: 'DETAILS', value: (j) => j.state_details },
];

const resources = (list: Job['request']): string => list.map((r) => `${r.name}=${r.count}`).join(', ');

/** `swm show`: every field of a job, labelled for people. */
export function describeJob(job: Job, now: Date = new Date()): [string, string][] {
  const nodes = job.node_names.map((n, i) => (job.node_ips[i] ? `${n} (${job.node_ips[i]})` : n)).join(', ');
  return [
    ['id', job.id],
    ['name', job.name],
    ['owner', job.owner],
    ['state', formatState(job.state)],
    ['details', job.state_details],
    ['submitted', formatTime(job.submit_time)],
    ['started', formatTime(job.start_time)],
    ['ended', formatTime(job.end_time)],
    ['elapsed', jobElapsed(job, now)],
    ['time limit', job.duration > 0 ? formatDuration(job.duration) : 'none'],
    ['reason', job.reason ? `${job.reason}${job.state === 'Q' && job.position ? ` (#${job.position} in line on its remote)` : ''}` : ''],
    ['account', job.account ?? ''],
    ['array', job.array_id ? `${job.array_id} task ${job.array_index}` : ''],
    ['depends', (job.depends ?? []).join(', ')],
    ['cost', job.cost_amount == null ? '' : formatCost(job.cost_amount, job.cost_currency)],
    ['attempts', job.attempts ? String(job.attempts + 1) : ''],
    ['exit code', job.exitcode === null ? '' : String(job.exitcode)],
    ['signal', job.signal === null ? '' : String(job.signal)],
    ['remote', job.remote_id ?? ''],
    ['flavor', job.flavor_id ?? ''],
    ['nodes', nodes],
    ['requested', resources(job.request)],
    ['allocated', resources(job.resources)],
    ['ports', job.ports.join(', ')],
    ['priority', String(job.priority)],
    ['comment', job.comment],
  ];
}

/** One line about a job after acting on it: `<id>  R running  <details>`. */
export const jobLine = (job: Job): string =>
  `${job.id}  ${formatState(job.state)}${job.state_details ? `  ${oneLine(job.state_details)}` : ''}\n`;

/** How a job ended, for `swm wait`: `<id>  E error (exit code 3)  <details>`. */
export function jobEndLine(job: Job): string {
  const how = job.signal !== null ? `signal ${job.signal}` : job.exitcode !== null ? `exit code ${job.exitcode}` : '';
  return `${job.id}  ${formatState(job.state)}${how ? ` (${how})` : ''}${job.state_details ? `  ${oneLine(job.state_details)}` : ''}
`;
}

/** `--json` output: exactly one JSON document on stdout. */
export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** Print a command's result: the JSON document with `--json`, else the human text. */
export function printResult(json: boolean, value: unknown, human: () => string): void {
  if (json) printJson(value);
  else process.stdout.write(human());
}

/** A note for people (not for scripts): on stderr. */
export function note(message: string): void {
  process.stderr.write(`swm: ${message}\n`);
}
