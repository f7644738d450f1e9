/** The dashboard's one page: its layout only. dashboard.js fills it in from /api/overview and the log streams. */
export const DASHBOARD_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sky Port dashboard</title>
<link rel="stylesheet" href="/dashboard.css">
<script src="/dashboard.js" defer></script>
</head>
<body>
<header>
  <h1>Sky Port</h1>
  <span id="who"></span>
  <span id="core"></span>
  <span id="updated" class="muted"></span>
</header>
<div id="problem" class="problem" role="alert" hidden></div>
<main>
  <section id="activity" aria-labelledby="activity-title">
    <h2 id="activity-title">Last hour</h2>
    <div class="cards">
      <div class="card">
        <div class="card-title">Queue depth</div>
        <div class="card-figure" id="queue-now">-</div>
        <div class="card-note muted">jobs waiting to run, now and each minute</div>
        <svg id="queue-spark" class="spark" viewBox="0 0 240 48" preserveAspectRatio="none" role="img" aria-label="queue depth over the last hour"></svg>
      </div>
      <div class="card">
        <div class="card-title">Throughput</div>
        <div class="card-figure" id="throughput-total">-</div>
        <div class="card-note muted" id="throughput-note">jobs ended, per minute</div>
        <svg id="throughput-spark" class="spark" viewBox="0 0 240 48" preserveAspectRatio="none" role="img" aria-label="jobs ended per minute over the last hour"></svg>
      </div>
      <div class="card">
        <div class="card-title">Jobs by state</div>
        <div id="counts" class="counts"></div>
        <div class="card-note muted" id="activity-note"></div>
      </div>
    </div>
  </section>

  <section id="jobs" aria-labelledby="jobs-title">
    <h2 id="jobs-title">Jobs</h2>
    <div class="toolbar">
      <input id="filter" type="search" placeholder="filter: id, name, details, remote, node…" aria-label="filter jobs" autocomplete="off">
      <select id="state-filter" aria-label="state">
        <option value="">all states</option>
        <option value="active">active (Q W T R)</option>
        <option value="Q">Q queued</option>
        <option value="W">W waiting</option>
        <option value="T">T transferring</option>
        <option value="R">R running</option>
        <option value="F">F finished</option>
        <option value="E">E error</option>
        <option value="C">C canceled</option>
      </select>
      <span id="jobs-note" class="muted"></span>
    </div>
    <div class="table-wrap">
      <table id="jobs-table">
        <thead><tr>
          <th>ID</th><th>Name</th><th class="owner">Owner</th><th>State</th><th>Details</th><th>Remote</th>
          <th class="num">Nodes</th><th class="num" title="flavor price per node-hour × nodes × run time">Cost (est.)</th><th class="num">Age</th>
        </tr></thead>
        <tbody></tbody>
      </table>
    </div>
  </section>

  <section id="log" aria-labelledby="log-title" hidden>
    <h2 id="log-title">Output of <span id="log-job"></span> <span id="log-state" class="badge"></span>
      <span id="log-status" class="muted"></span>
      <button id="log-close" type="button" aria-label="close the output">close</button></h2>
    <div class="tabs" role="tablist">
      <button type="button" role="tab" data-stream="stdout" class="active">stdout</button>
      <button type="button" role="tab" data-stream="stderr">stderr</button>
    </div>
    <pre id="log-stdout" class="log" aria-label="standard output"></pre>
    <pre id="log-stderr" class="log" aria-label="standard error" hidden></pre>
  </section>

  <section id="partitions" aria-labelledby="partitions-title">
    <h2 id="partitions-title">Partitions</h2>
    <div class="table-wrap">
      <table id="partitions-table">
        <thead><tr>
          <th>Partition</th><th>Remote</th><th>State</th><th>Owner</th><th>Job</th><th class="num">Jobs run</th>
          <th>Idle / keep</th><th>Flavor</th><th class="num">Nodes</th><th>Head</th><th class="num">Cost</th><th>Reason</th>
        </tr></thead>
        <tbody></tbody>
      </table>
    </div>
  </section>

  <section id="gates" aria-labelledby="gates-title">
    <h2 id="gates-title">Gates</h2>
    <div class="table-wrap">
      <table id="gates-table">
        <thead><tr>
          <th>Gate</th><th>Kind</th><th>Remotes</th><th>Managed</th><th>Health</th><th class="num">Restarts</th><th class="num">Silent</th><th>Problem</th>
        </tr></thead>
        <tbody></tbody>
      </table>
    </div>
  </section>
</main>
<footer class="muted">swm dashboard: read-only, on this machine only, with your own certificate.</footer>
</body>
</html>
`;
