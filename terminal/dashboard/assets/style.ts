/** The dashboard's look: one light theme, system fonts, state colours shared by every table. */
export const DASHBOARD_STYLE = `
:root {
  --fg: #1d2430; --muted: #6a7382; --line: #e3e7ee; --bg: #f6f8fb; --card: #fff; --accent: #2563eb;
  --ok: #15803d; --ok-bg: #dcfce7; --warn: #a16207; --warn-bg: #fef9c3; --bad: #b91c1c; --bad-bg: #fee2e2;
  --run: #1d4ed8; --run-bg: #dbeafe; --idle: #475569; --idle-bg: #e2e8f0;
}
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
header { display: flex; flex-wrap: wrap; align-items: baseline; gap: 0.4rem 1.2rem; padding: 0.8rem 1.5rem; background: #0f172a; color: #e2e8f0; }
header h1 { margin: 0; font-size: 1.15rem; letter-spacing: 0.02em; }
header .muted { color: #94a3b8; }
main { padding: 0.5rem 1.5rem 1.5rem; display: grid; grid-template-columns: minmax(0, 1fr); gap: 1.2rem; }
h2 { font-size: 1rem; margin: 0.8rem 0 0.5rem; display: flex; align-items: center; gap: 0.6rem; flex-wrap: wrap; }
footer { padding: 0 1.5rem 1.5rem; font-size: 0.85rem; }
.muted { color: var(--muted); }
.mono, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 0.85rem; }
.problem { margin: 0.8rem 1.5rem 0; padding: 0.6rem 0.9rem; border-radius: 6px; background: var(--bad-bg); color: var(--bad); }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(230px, 1fr)); gap: 1rem; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 0.8rem 1rem; }
.card-title { font-weight: 600; }
.card-figure { font-size: 1.6rem; font-weight: 600; }
.card-note { font-size: 0.8rem; }
.counts { display: flex; flex-wrap: wrap; gap: 0.4rem 0.8rem; margin: 0.4rem 0; }
.spark { width: 100%; height: 48px; margin-top: 0.4rem; display: block; }
.spark-line { fill: none; stroke: var(--accent); stroke-width: 1.5; vector-effect: non-scaling-stroke; }
.spark-area { fill: var(--run-bg); stroke: none; }
.spark-bar { fill: var(--ok); }
.toolbar { display: flex; flex-wrap: wrap; gap: 0.6rem; align-items: center; margin-bottom: 0.5rem; }
.toolbar input { flex: 1 1 260px; max-width: 420px; }
input, select, button { font: inherit; padding: 0.3rem 0.55rem; border: 1px solid #cbd2dc; border-radius: 5px; background: #fff; color: var(--fg); }
button { cursor: pointer; }
.table-wrap { overflow-x: auto; background: var(--card); border: 1px solid var(--line); border-radius: 8px; }
table { border-collapse: collapse; width: 100%; }
th, td { padding: 0.4rem 0.7rem; text-align: left; border-bottom: 1px solid var(--line); white-space: nowrap; }
th { font-size: 0.78rem; text-transform: uppercase; letter-spacing: 0.04em; color: var(--muted); background: #fafbfd; }
tbody tr:last-child td { border-bottom: none; }
td.details { white-space: normal; min-width: 12rem; max-width: 32rem; }
.num { text-align: right; }
tr.empty td { color: var(--muted); text-align: center; padding: 1rem; }
tr.job { cursor: pointer; }
tr.job:hover, tr.job:focus { background: #f1f5fd; outline: none; }
tr.job.selected { background: #e0ebff; }
table:not(.show-owner) .owner { display: none; }
.badge { display: inline-block; padding: 0.05rem 0.45rem; border-radius: 999px; font-size: 0.8rem; background: var(--idle-bg); color: var(--idle); white-space: nowrap; }
.state-R, .state-T, .partition-busy, .partition-ready, .health-connecting { background: var(--run-bg); color: var(--run); }
.state-Q, .state-W, .partition-creating, .partition-requested, .partition-deleting { background: var(--warn-bg); color: var(--warn); }
.state-F, .health-healthy, .partition-idle { background: var(--ok-bg); color: var(--ok); }
.state-E, .partition-failed, .health-not-answering, .health-unreachable, .health-other-spool, .health-wrong-gate { background: var(--bad-bg); color: var(--bad); }
#log { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 0 1rem 1rem; }
#log h2 button { margin-left: auto; }
.tabs { display: flex; gap: 0.3rem; margin-bottom: 0.4rem; }
.tabs button.active { background: var(--fg); color: #fff; border-color: var(--fg); }
pre.log { margin: 0; padding: 0.7rem 0.9rem; min-height: 8rem; max-height: 28rem; overflow: auto; background: #0f172a; color: #e2e8f0; border-radius: 6px; white-space: pre-wrap; word-break: break-all; }
`;
