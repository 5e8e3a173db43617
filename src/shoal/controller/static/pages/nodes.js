// Nodes: liveness, properties, live cpu and memory, and what runs on each now.
import { useRef } from "preact/hooks";
import {
  Badge,
  bytes,
  experimentHref,
  html,
  LiveStatus,
  Message,
  Meter,
  Sparkline,
  useEvents,
} from "../lib.js";

const HISTORY = 60; // cpu samples kept per node for its sparkline

const STATE_HELP = {
  online: "heard from within the heartbeat timeout",
  suspect: "silent: its work is kept while it may come back",
  offline: "gone: what ran there was declared lost",
};

// Remember the last cpu values of each node, across updates of the page.
function useHistory(nodes) {
  const history = useRef(new Map());
  const seen = useRef(null);
  if (nodes && nodes !== seen.current) {
    seen.current = nodes;
    for (const n of nodes) {
      const values = history.current.get(n.name) || [];
      if (n.online && n.metrics && n.metrics.cpu != null) values.push(n.metrics.cpu);
      history.current.set(n.name, values.slice(-HISTORY));
    }
  }
  return history.current;
}

function Running({ node }) {
  const own = node.running || [];
  if (!own.length && !node.others) return html`<span class="muted">idle</span>`;
  return html`<ul class="running">
    ${own.map(
      (r) => html`<li>
        ${r.experiment
          ? html`<a href=${experimentHref(r.experiment)}>${r.experiment}</a>`
          : html`<span class="muted">a command</span>`}
        ${" "}<span class="muted">${r.what === "command" ? r.cmd : r.state}</span>
      </li>`,
    )}
    ${node.others
      ? html`<li class="muted">${node.others} of other users</li>`
      : null}
  </ul>`;
}

function Properties({ properties }) {
  const entries = Object.entries(properties || {});
  if (!entries.length) return html`<span class="muted">none</span>`;
  return entries.map(
    ([k, v]) =>
      html`<span class="chip" title=${k}>${k}=${typeof v === "string" ? v : JSON.stringify(v)}</span>`,
  );
}

function NodeRow({ node, history }) {
  const m = node.metrics || {};
  const live = node.state === "online";
  return html`<tr data-node=${node.name} class=${node.state}>
    <td><strong>${node.name}</strong><div class="muted small">
      ${`${node.architecture}, ${node.cpus} cpu${node.cpus === 1 ? "" : "s"}`}</div></td>
    <td title=${STATE_HELP[node.state]}><${Badge} value=${node.state} />
      ${!live && node.silent_for != null
        ? html`<div class="muted small">silent ${node.silent_for} s</div>`
        : null}</td>
    <td class="metric">${live && m.cpu != null
      ? html`<${Meter} percent=${m.cpu} label=${`${m.cpu.toFixed(0)} %`} />
          <${Sparkline} values=${history.get(node.name)} />`
      : html`<span class="muted">–</span>`}</td>
    <td class="metric">${live && m.memory != null
      ? html`<${Meter} percent=${m.memory}
          label=${`${m.memory.toFixed(0)} %${m.memory_used ? ` (${bytes(m.memory_used)})` : ""}`} />`
      : html`<span class="muted">–</span>`}</td>
    <td>${live && m.load != null ? m.load.toFixed(2) : ""}</td>
    <td class="props"><${Properties} properties=${node.properties} /></td>
    <td><${Running} node=${node} /></td>
  </tr>`;
}

export function NodesPage() {
  const state = useEvents({ topics: ["nodes"] }, "nodes");
  const nodes = state.nodes?.nodes;
  const history = useHistory(nodes);
  const counts = { online: 0, suspect: 0, offline: 0 };
  (nodes || []).forEach((n) => (counts[n.state] = (counts[n.state] || 0) + 1));
  return html`<section>
    <div class="title">
      <h1>Nodes</h1>
      <${LiveStatus} status=${state.status} />
      ${nodes
        ? html`<span class="summary" data-testid="node-counts">
            ${counts.online} online, ${counts.suspect} suspect, ${counts.offline} offline</span>`
        : null}
    </div>
    <${Message} error=${typeof state.status === "string" ? null : state.status} />
    ${nodes && !nodes.length
      ? html`<p class="muted">No node has joined yet. Start an agent with
          <code>shoal agent --controller URL --token-file join-token --name NAME</code>.</p>`
      : null}
    ${nodes?.length
      ? html`<table class="nodes">
          <thead><tr><th>Node</th><th>State</th><th>CPU</th><th>Memory</th><th>Load</th>
            <th>Properties</th><th>Running now</th></tr></thead>
          <tbody>${nodes.map((n) => html`<${NodeRow} key=${n.name} node=${n} history=${history} />`)}</tbody>
        </table>`
      : null}
  </section>`;
}
