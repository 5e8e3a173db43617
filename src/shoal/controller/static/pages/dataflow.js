// A dataflow network: its jobs (where each runs, restarts, rounds, errors,
// rates) and the pipes between them, drawn and listed.
//
// A record that carries a job's message rate (info.rate) shows it; otherwise
// the page computes rounds per second itself: between two updates whose round
// counts differ while the job runs, and over its whole run once it ended.
import { useRef } from "preact/hooks";
import { Dag } from "../dag.js";
import { Badge, html, plural } from "../lib.js";

function pipesOf(jobs) {
  const pipes = new Map();
  const pipe = (id) => {
    if (!pipes.has(id)) pipes.set(id, { id, from: null, to: null });
    return pipes.get(id);
  };
  for (const j of jobs) {
    for (const id of j.info?.outputs || []) pipe(id).from = j;
    for (const id of j.info?.inputs || []) pipe(id).to = j;
  }
  return [...pipes.values()].sort((a, b) => a.id - b.id);
}

// job id -> rounds per second, remembered across the page's updates.
function useRates(e) {
  const memory = useRef({ e: null, seen: new Map(), rates: new Map() });
  const m = memory.current;
  if (m.e !== e) {
    m.e = e;
    const now = Date.now() / 1000;
    for (const j of e.jobs || []) {
      const rounds = j.info?.rounds ?? 0;
      const before = m.seen.get(j.id);
      if (j.info?.rate != null) {
        m.rates.set(j.id, j.info.rate);
      } else if (j.finished_at && j.started_at && j.finished_at > j.started_at) {
        m.rates.set(j.id, rounds / (j.finished_at - j.started_at));
      } else if (before && rounds > before.rounds && now > before.at) {
        m.rates.set(j.id, (rounds - before.rounds) / (now - before.at));
      }
      if (!before || rounds !== before.rounds) m.seen.set(j.id, { rounds, at: now });
    }
  }
  return m.rates;
}

const where = (j) => (j ? `${j.name} @ ${j.node || "?"}` : "?");

function JobRow({ j, rate }) {
  const restarts = j.info?.restarts || [];
  return html`<tr data-job=${j.id} class=${j.state}>
    <td>${j.id}</td>
    <td>${j.name}${j.name.includes(j.type) ? null : html`<div class="muted small">${j.type}</div>`}</td>
    <td data-testid="placement">${j.node || html`<span class="muted">–</span>`}
      ${j.info?.generation ? html`<div class="muted small">generation ${j.info.generation}</div>` : null}</td>
    <td><${Badge} value=${j.state} /></td>
    <td title=${restarts.join("\n")}>${restarts.length}</td>
    <td data-testid="rounds">${j.info?.rounds ?? 0}</td>
    <td>${rate != null ? `${rate.toFixed(rate < 10 ? 1 : 0)}/s` : html`<span class="muted">–</span>`}</td>
    <td class=${j.info?.errors ? "failed" : ""}>${j.info?.errors ?? 0}</td>
    <td>${j.error ? html`<pre class="result failed">${j.error}</pre>` : null}</td>
  </tr>`;
}

export function NetworkView({ e }) {
  const jobs = e.jobs || [];
  const rates = useRates(e);
  if (!jobs.length) return html`<p class="muted">No job placed yet.</p>`;
  const pipes = pipesOf(jobs);
  const nodes = jobs.map((j) => ({
    key: `j${j.id}`,
    label: j.name,
    state: j.state,
    title: `job ${j.id} ${j.name} (${j.type}) on ${j.node || "?"}, ${j.state}`,
    attrs: { "data-job": j.id },
  }));
  const edges = pipes.filter((p) => p.from && p.to).map((p) => [`j${p.from.id}`, `j${p.to.id}`]);
  const s = e.summary || {};
  return html`<p class="summary" data-testid="network-summary">
      ${plural(jobs.length, "job")}, ${plural(pipes.length, "pipe")}
      ${s.rounds != null ? ` · ${plural(s.rounds, "round")}` : ""}
      ${s.errors != null ? ` · ${plural(s.errors, "error")}` : ""}
      ${s.epoch ? ` · epoch ${s.epoch}` : ""}
    </p>
    <${Dag} testid="network" nodes=${nodes} edges=${edges} />
    <table class="jobs" data-testid="jobs">
      <thead><tr><th>#</th><th>Job</th><th>Node</th><th>State</th><th>Restarts</th><th>Rounds</th>
        <th>Rate</th><th>Errors</th><th>Last error</th></tr></thead>
      <tbody>${jobs.map((j) => html`<${JobRow} key=${j.id} j=${j} rate=${rates.get(j.id)} />`)}</tbody>
    </table>
    <h3 class="sub">Pipes</h3>
    <table class="pipes" data-testid="pipes">
      <thead><tr><th>Pipe</th><th>From</th><th>To</th></tr></thead>
      <tbody>${pipes.map(
        (p) => html`<tr key=${p.id} data-pipe=${p.id}>
          <td>${p.id}</td><td>${where(p.from)}</td><td>${where(p.to)}</td>
        </tr>`,
      )}</tbody>
    </table>`;
}

export const DATAFLOW_SECTIONS = [{ title: "Jobs and pipes", show: () => true, view: NetworkView }];
