import type { LogViewerEvent } from '../job-log-viewer.js';
import type { DashboardGate, DashboardJob, DashboardOverview } from '../overview.js';
import type { PartitionView } from '../../../terminal-protocol/terminal-methods.js';

/**
 * The page's script. It runs in the browser, not in swm: the server sends this function's source text
 * (see DASHBOARD_SCRIPT), so it must stay self-contained: no imports but types, nothing from this module's
 * scope. Written here rather than as a separate .js file so that the compiler checks it against the DOM and
 * against the documents the server sends, with no build step of its own.
 *
 * Every piece of text from the core (job names, details, output) enters the page as text nodes, never as
 * markup.
 */
function dashboard(): void {
  const REFRESH_MS = 4000;
  const LOG_RETRY_MS = 3000;
  /** Characters of each output stream the page keeps (the oldest are dropped). */
  const KEEP_LOG_CHARS = 1_000_000;
  const STATE_NAMES: Record<string, string> = { Q: 'queued', W: 'waiting', T: 'transferring', R: 'running', F: 'finished', E: 'error', C: 'canceled' };
  const ACTIVE = new Set(['Q', 'W', 'T', 'R']);
  const SVG = 'http://www.w3.org/2000/svg';

  type Stream = 'stdout' | 'stderr';
  interface Watched {
    id: string;
    next: Record<Stream, number>;
    source: EventSource | null;
    retry: number | null;
    ended: boolean;
  }

  let overview: DashboardOverview | null = null;
  let watched: Watched | null = null;
  let shownStream: Stream = 'stdout';

  const byId = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;
  const filterBox = byId<HTMLInputElement>('filter');
  const stateFilter = byId<HTMLSelectElement>('state-filter');

  /** An element with text children (strings become text nodes: never parsed as markup). */
  function el(tag: string, attributes: Record<string, string> = {}, ...children: (Node | string | null)[]): HTMLElement {
    const e = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) e.setAttribute(name, value);
    for (const child of children) if (child !== null) e.append(child);
    return e;
  }

  function duration(seconds: number): string {
    if (!Number.isFinite(seconds) || seconds < 0) return '?';
    const s = Math.floor(seconds);
    const two = (n: number) => String(n).padStart(2, '0');
    if (s < 60) return `${s}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m${two(s % 60)}s`;
    if (s < 86400) return `${Math.floor(s / 3600)}h${two(Math.floor((s % 3600) / 60))}m`;
    return `${Math.floor(s / 86400)}d${two(Math.floor((s % 86400) / 3600))}h`;
  }

  const money = (amount: number | null, currency: string | null): string =>
    amount === null ? '-' : `${amount.toFixed(amount < 1 ? 4 : 2)} ${currency ?? ''}`.trim();

  /** Ids as short as they can be while the listed ones stay apart (8 characters at least), as `swm jobs` shows them. */
  function idShortener(ids: string[]): (id: string) => string {
    let length = 8;
    while (length < 36 && new Set(ids.map((id) => id.slice(0, length))).size < new Set(ids).size) length++;
    return (id) => id.slice(0, length);
  }

  function stateBadge(state: string): HTMLElement {
    return el('span', { class: `badge state-${state}`, title: STATE_NAMES[state] ?? state }, `${state} ${STATE_NAMES[state] ?? ''}`.trim());
  }

  function showProblem(message: string | null): void {
    const box = byId('problem');
    box.hidden = message === null;
    box.textContent = message ?? '';
  }

  function fillBody(table: string, rows: HTMLElement[], empty: string, columns: number): void {
    const body = byId<HTMLTableElement>(table).tBodies[0]!;
    body.replaceChildren(...(rows.length ? rows : [el('tr', { class: 'empty' }, el('td', { colspan: String(columns) }, empty))]));
  }

  // --- Last hour ----------------------------------------------------------------------------------------

  function sparkline(svgId: string, values: number[], kind: 'line' | 'bars', label: (i: number) => string): void {
    const svg = byId(svgId) as unknown as SVGSVGElement;
    const width = 240;
    const height = 48;
    const max = Math.max(1, ...values);
    const step = width / Math.max(1, values.length);
    const y = (v: number) => height - 2 - (v / max) * (height - 6);
    const shapes: SVGElement[] = [];
    if (kind === 'line') {
      const points = values.map((v, i) => `${(i + 0.5) * step},${y(v)}`).join(' ');
      const area = document.createElementNS(SVG, 'polygon');
      area.setAttribute('points', `${0.5 * step},${height} ${points} ${(values.length - 0.5) * step},${height}`);
      area.setAttribute('class', 'spark-area');
      const line = document.createElementNS(SVG, 'polyline');
      line.setAttribute('points', points);
      line.setAttribute('class', 'spark-line');
      shapes.push(area, line);
    } else {
      values.forEach((v, i) => {
        const bar = document.createElementNS(SVG, 'rect');
        bar.setAttribute('x', String(i * step + 0.5));
        bar.setAttribute('width', String(Math.max(1, step - 1)));
        bar.setAttribute('y', String(y(v)));
        bar.setAttribute('height', String(Math.max(v > 0 ? 2 : 0, height - 2 - y(v))));
        bar.setAttribute('class', 'spark-bar');
        const title = document.createElementNS(SVG, 'title');
        title.textContent = label(i);
        bar.append(title);
        shapes.push(bar);
      });
    }
    const title = document.createElementNS(SVG, 'title');
    title.textContent = `max ${Math.max(0, ...values)}`;
    svg.replaceChildren(title, ...shapes);
  }

  function renderActivity(o: DashboardOverview): void {
    const a = o.activity;
    const minute = (i: number) => new Date(a.points[i]!.at).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    byId('queue-now').textContent = String(a.queuedNow);
    sparkline('queue-spark', a.points.map((p) => p.queued), 'line', (i) => `${minute(i)}: ${a.points[i]!.queued} queued`);
    byId('throughput-total').textContent = `${a.ended} / hour`;
    const how = Object.entries(a.endedByState).map(([s, n]) => `${n} ${STATE_NAMES[s] ?? s}`);
    byId('throughput-note').textContent = `jobs ended per minute${how.length ? ` (${how.join(', ')})` : ''}`;
    sparkline('throughput-spark', a.points.map((p) => p.ended), 'bars', (i) => `${minute(i)}: ${a.points[i]!.ended} ended`);
    const counts = Object.entries(o.counts).filter(([, n]) => n > 0);
    byId('counts').replaceChildren(...(counts.length ? counts.map(([s, n]) => el('span', { class: 'count' }, stateBadge(s), ` ${n}`)) : ['no jobs']));
    byId('activity-note').textContent = `${a.submitted} submitted, ${a.started} started in the last hour${o.allJobs ? ' (everyone)' : ''}`;
  }

  // --- Jobs ---------------------------------------------------------------------------------------------

  function matches(job: DashboardJob, words: string[], state: string): boolean {
    if (state === 'active' ? !ACTIVE.has(job.state) : state !== '' && job.state !== state) return false;
    const text = [job.id, job.name, job.owner, job.state_details, job.remote_id ?? '', job.flavor_id ?? '', ...job.node_names, STATE_NAMES[job.state] ?? '']
      .join(' ')
      .toLowerCase();
    return words.every((w) => text.includes(w));
  }

  function renderJobs(o: DashboardOverview): void {
    const now = Date.now();
    const words = filterBox.value.toLowerCase().split(/\s+/).filter(Boolean);
    const jobs = o.jobs.filter((j) => matches(j, words, stateFilter.value));
    const short = idShortener(o.jobs.map((j) => j.id));
    const owners = new Set(o.jobs.map((j) => j.owner));
    byId('jobs-table').classList.toggle('show-owner', o.allJobs || owners.size > 1);
    const rows = jobs.map((job) => {
      const row = el(
        'tr',
        { 'data-job-id': job.id, class: `job${watched?.id === job.id ? ' selected' : ''}`, tabindex: '0', title: 'show its output' },
        el('td', { class: 'mono' }, short(job.id)),
        el('td', {}, job.name),
        el('td', { class: 'owner' }, job.owner),
        el('td', {}, stateBadge(job.state)),
        el('td', { class: 'details' }, job.state_details),
        el('td', {}, job.remote_id ?? '-'),
        el('td', { class: 'num', title: job.node_names.join(', ') }, job.node_names.length ? String(job.node_names.length) : '-'),
        el('td', { class: 'num' }, job.cost ? money(job.cost.amount, job.cost.currency) : '-'),
        el('td', { class: 'num', title: new Date(job.submit_time).toLocaleString() }, duration((now - Date.parse(job.submit_time)) / 1000)),
      );
      row.addEventListener('click', () => watch(job.id));
      row.addEventListener('keydown', (e) => {
        if (e.key === 'Enter' || e.key === ' ') watch(job.id);
      });
      return row;
    });
    fillBody('jobs-table', rows, o.jobs.length ? 'no job matches' : 'no jobs yet: submit one with swm submit', 9);
    const cut = o.jobsCut ? ' (active ones and the newest others)' : '';
    byId('jobs-note').textContent = `${jobs.length} of ${o.jobs.length} shown${cut}`;
  }

  // --- Partitions and gates -----------------------------------------------------------------------------

  function renderPartitions(o: DashboardOverview): void {
    const short = idShortener(o.jobs.map((j) => j.id).concat(o.partitions.flatMap((p) => (p.jobId ? [p.jobId] : []))));
    const rows = o.partitions.map((p: PartitionView) => {
      const head = p.nodes.find((n) => n.role === 'head') ?? p.nodes[0];
      const idle = p.idleSec === null ? '-' : p.keepSec === null ? duration(p.idleSec) : `${duration(p.idleSec)} / ${duration(p.keepSec)}`;
      return el(
        'tr',
        { 'data-partition': p.name },
        el('td', { class: 'mono' }, p.name),
        el('td', {}, p.remote),
        el('td', {}, el('span', { class: `badge partition-${p.state}` }, p.pool && p.owner === null ? `${p.state} (pool)` : p.state)),
        el('td', {}, p.owner ?? '-'),
        el('td', { class: 'mono' }, p.jobId ? short(p.jobId) : '-'),
        el('td', { class: 'num' }, String(p.jobsRun)),
        el('td', {}, idle),
        el('td', {}, p.flavor),
        el('td', { class: 'num' }, String(p.nodes.length)),
        el('td', { class: 'mono' }, head ? (head.publicIp ?? head.privateIp ?? '-') : '-'),
        el('td', { class: 'num' }, money(p.cost, p.currency)),
        el('td', { class: 'details' }, p.error ?? ''),
      );
    });
    fillBody('partitions-table', rows, 'no partitions', 12);
  }

  function renderGates(o: DashboardOverview): void {
    const rows = o.gates.map((g: DashboardGate) =>
      el(
        'tr',
        { 'data-gate': g.name },
        el('td', {}, g.name),
        el('td', {}, g.kind),
        el('td', {}, g.remotes.join(', ') || '-'),
        el('td', {}, g.managed ? 'yes' : 'no'),
        el('td', {}, el('span', { class: `badge health-${g.health}` }, g.health.replace('-', ' ') + (g.crashLoop ? ', crash loop' : ''))),
        el('td', { class: 'num' }, String(g.restarts)),
        el('td', { class: 'num' }, g.silentSec === null ? '-' : duration(g.silentSec)),
        el('td', { class: 'details' }, g.problem ?? g.lastError ?? ''),
      ),
    );
    fillBody('gates-table', rows, 'no gates', 8);
  }

  function render(): void {
    const o = overview;
    if (!o) return;
    byId('who').textContent = `${o.user} (${o.role})${o.allJobs ? ', everyone\u2019s jobs' : ''}`;
    byId('core').textContent = `core ${o.core.id} ${o.core.version} at ${o.core.url}, up ${duration(o.core.uptimeSec)}`;
    byId('updated').textContent = `updated ${new Date(o.generatedAt).toLocaleTimeString()}`;
    renderActivity(o);
    renderJobs(o);
    renderPartitions(o);
    renderGates(o);
  }

  async function refresh(): Promise<void> {
    try {
      const response = await fetch('/api/overview', { cache: 'no-store', credentials: 'same-origin' });
      if (response.status === 403) throw new Error('this page is no longer let in (the dashboard was restarted?): open the address swm dashboard printed');
      const body = (await response.json().catch(() => ({ error: `HTTP ${response.status}` }))) as DashboardOverview & { error?: string };
      if (!response.ok) throw new Error(body.error ?? `HTTP ${response.status}`);
      overview = body;
      showProblem(null);
      render();
    } catch (error) {
      showProblem(`cannot refresh: ${(error as Error).message}`);
    } finally {
      setTimeout(() => void refresh(), REFRESH_MS);
    }
  }

  // --- A job's output -----------------------------------------------------------------------------------

  function append(stream: Stream, text: string): void {
    const pre = byId<HTMLPreElement>(`log-${stream}`);
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.append(text);
    if ((pre.textContent ?? '').length > KEEP_LOG_CHARS) {
      pre.normalize();
      pre.textContent = (pre.textContent ?? '').slice(-KEEP_LOG_CHARS);
    }
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  }

  function showJobState(job: Pick<DashboardJob, 'id' | 'name' | 'state' | 'state_details'>): void {
    byId('log-job').textContent = `${job.name} (${job.id.slice(0, 8)})`;
    byId('log-state').replaceChildren(stateBadge(job.state));
    byId('log-state').title = job.state_details;
  }

  function connect(w: Watched): void {
    const query = `stdout=${w.next.stdout}&stderr=${w.next.stderr}`;
    const source = new EventSource(`/api/jobs/${encodeURIComponent(w.id)}/log?${query}`);
    w.source = source;
    const parse = (e: Event) => JSON.parse((e as MessageEvent<string>).data) as LogViewerEvent;
    source.addEventListener('open', () => {
      if (watched === w) byId('log-status').textContent = 'live';
    });
    source.addEventListener('job', (e) => {
      const event = parse(e);
      if (event.type === 'job' && watched === w) showJobState(event.job);
    });
    source.addEventListener('log', (e) => {
      const event = parse(e);
      if (event.type !== 'log' || watched !== w) return;
      append(event.stream, event.text);
      w.next[event.stream] = event.next;
    });
    source.addEventListener('end', (e) => {
      const event = parse(e);
      w.ended = true;
      source.close();
      if (event.type === 'end' && watched === w) {
        showJobState(event.job);
        byId('log-status').textContent = 'ended: the whole output is shown';
      }
    });
    source.addEventListener('problem', (e) => {
      const event = parse(e);
      if (event.type !== 'problem' || watched !== w) return;
      byId('log-status').textContent = event.message;
      if (event.fatal) {
        w.ended = true;
        source.close();
      }
    });
    source.addEventListener('error', () => {
      if (w.ended || watched !== w) return;
      source.close();
      byId('log-status').textContent = 'connection lost, reconnecting\u2026';
      w.retry = window.setTimeout(() => {
        if (watched === w) connect(w);
      }, LOG_RETRY_MS);
    });
  }

  function unwatch(): void {
    if (!watched) return;
    watched.source?.close();
    if (watched.retry !== null) clearTimeout(watched.retry);
    watched = null;
    byId('log').hidden = true;
    document.querySelectorAll('tr.job.selected').forEach((row) => row.classList.remove('selected'));
  }

  function watch(id: string): void {
    if (watched?.id === id) return;
    unwatch();
    watched = { id, next: { stdout: 0, stderr: 0 }, source: null, retry: null, ended: false };
    byId('log-stdout').textContent = '';
    byId('log-stderr').textContent = '';
    byId('log-status').textContent = 'connecting\u2026';
    const job = overview?.jobs.find((j) => j.id === id);
    if (job) showJobState(job);
    byId('log').hidden = false;
    document.querySelectorAll<HTMLElement>('tr.job').forEach((row) => row.classList.toggle('selected', row.dataset.jobId === id));
    connect(watched);
  }

  function showStream(stream: Stream): void {
    shownStream = stream;
    document.querySelectorAll<HTMLButtonElement>('#log .tabs button').forEach((b) => b.classList.toggle('active', b.dataset.stream === stream));
    byId('log-stdout').hidden = stream !== 'stdout';
    byId('log-stderr').hidden = stream !== 'stderr';
  }

  // The token came in the address; the cookie now holds it: out of the address bar, history and bookmarks.
  if (new URLSearchParams(location.search).has('token')) history.replaceState(null, '', '/');
  document.querySelectorAll<HTMLButtonElement>('#log .tabs button').forEach((b) => b.addEventListener('click', () => showStream(b.dataset.stream as Stream)));
  byId('log-close').addEventListener('click', unwatch);
  filterBox.addEventListener('input', () => overview && renderJobs(overview));
  stateFilter.addEventListener('change', () => overview && renderJobs(overview));
  showStream(shownStream);
  void refresh();
}

/** The script as the browser receives it. */
export const DASHBOARD_SCRIPT = `"use strict";\n(${dashboard.toString()})();\n`;
