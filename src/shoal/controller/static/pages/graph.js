// A graph session: its DAG (tasks and the objects they read and write), task
// states coloured as they change, and a table of its tasks.
//
// A graph of more than DRAW_LIMIT nodes is not drawn (it would be unreadable
// and slow): the page shows how many tasks are in each state and the table.
// The controller sends a session of over a thousand items as its counts and its
// running and failed tasks only (items_partial).
import { Dag } from "../dag.js";
import { Badge, byState, bytes, duration, html, plural } from "../lib.js";

const DRAW_LIMIT = 300; // tasks + objects
const TABLE_LIMIT = 500; // rows; the interesting ones first
const ORDER = ["failed", "running", "ready", "waiting", "cancelled", "finished"];

function graphOf(tasks, objects) {
  const nodes = [];
  const edges = [];
  const known = new Set(objects.map((o) => o.id));
  for (const o of objects) {
    nodes.push({
      key: `o${o.id}`,
      small: true,
      state: o.state,
      title: `object ${o.id}${o.name ? ` ${o.name}` : ""} (${o.type}), ${o.state}` +
        `${o.info?.size != null ? `, ${bytes(o.info.size)}` : ""}` +
        `${o.node ? ` on ${o.node}` : ""}`,
      attrs: { "data-object": o.id },
    });
  }
  const missing = (id) => {
    // An object not recorded yet: drawn all the same, so the edges stay.
    if (known.has(id)) return;
    known.add(id);
    nodes.push({ key: `o${id}`, small: true, state: "unknown", title: `object ${id}`, attrs: {} });
  };
  for (const t of tasks) {
    nodes.push({
      key: `t${t.id}`,
      label: t.name || t.type,
      state: t.state,
      title: `task ${t.id} ${t.name} (${t.type}), ${t.state}${t.node ? ` on ${t.node}` : ""}` +
        `${t.error ? `: ${t.error}` : ""}`,
      attrs: { "data-task": t.id, "data-name": t.name },
    });
    for (const id of t.info?.inputs || []) {
      missing(id);
      edges.push([`o${id}`, `t${t.id}`]);
    }
    for (const id of t.info?.outputs || []) {
      missing(id);
      edges.push([`t${t.id}`, `o${id}`]);
    }
  }
  return { nodes, edges };
}

function took(t) {
  if (t.info?.duration != null) return duration(0, t.info.duration);
  return t.started_at ? duration(t.started_at, t.finished_at) : "";
}

function TaskRow({ t }) {
  return html`<tr data-task=${t.id} class=${t.state}>
    <td>${t.id}</td>
    <td>${t.name}</td>
    <td><code>${t.type}</code></td>
    <td>${t.node || html`<span class="muted">–</span>`}</td>
    <td><${Badge} value=${t.state} /></td>
    <td>${took(t)}</td>
    <td>${t.error ? html`<span class="failed">${t.error}</span>` : null}
      ${t.info?.debug
        ? html`<details><summary class="small muted">debug</summary>
            <pre class="result">${t.info.debug}</pre></details>`
        : null}</td>
  </tr>`;
}

function TaskTable({ tasks }) {
  let rows = tasks;
  if (rows.length > TABLE_LIMIT) {
    const rank = (t) => {
      const i = ORDER.indexOf(t.state);
      return i < 0 ? ORDER.length : i;
    };
    rows = [...rows].sort((a, b) => rank(a) - rank(b) || a.id - b.id).slice(0, TABLE_LIMIT);
  }
  return html`${rows.length < tasks.length
      ? html`<p class="muted small">the first ${rows.length} of ${tasks.length} tasks, failed and
          running first</p>`
      : null}
    <table class="tasks" data-testid="tasks">
      <thead><tr><th>#</th><th>Name</th><th>Type</th><th>Node</th><th>State</th><th>Took</th>
        <th>Error</th></tr></thead>
      <tbody>${rows.map((t) => html`<${TaskRow} key=${t.id} t=${t} />`)}</tbody>
    </table>`;
}

function ObjectTable({ objects }) {
  return html`<details class="objects"><summary>${plural(objects.length, "object")}</summary>
    <table class="objects">
      <thead><tr><th>#</th><th>Label</th><th>Type</th><th>Size</th><th>Where</th><th>State</th>
        </tr></thead>
      <tbody>${objects.slice(0, TABLE_LIMIT).map(
        (o) => html`<tr key=${o.id} data-object=${o.id}>
          <td>${o.id}</td><td>${o.name}</td><td><code>${o.type}</code></td>
          <td>${bytes(o.info?.size)}</td><td>${(o.info?.placement || []).join(", ")}</td>
          <td><${Badge} value=${o.state} /></td>
        </tr>`,
      )}</tbody>
    </table></details>`;
}

export function GraphView({ e }) {
  const tasks = e.tasks || [];
  const objects = e.objects || [];
  const size = tasks.length + objects.length;
  const total = e.counts?.total ?? tasks.length;
  if (!total && !tasks.length) return html`<p class="muted">No task submitted yet.</p>`;
  const drawn = !e.items_partial && size <= DRAW_LIMIT;
  return html`<p class="summary" data-testid="task-states">
      ${plural(total, "task")}: ${byState(e.counts) || "none ended yet"}
      ${e.objects_count ? html`<span class="muted"> · ${plural(e.objects_count, "object")}</span>` : null}
    </p>
    ${drawn
      ? html`<${Dag} testid="dag" ...${graphOf(tasks, objects)} />`
      : html`<p class="muted small" data-testid="not-drawn">
          ${e.items_partial
            ? `Too big to draw or list whole: its running and failed tasks (${tasks.length}) are below.`
            : `${size} tasks and objects are too many to draw; the table lists them.`}</p>`}
    ${tasks.length ? html`<${TaskTable} tasks=${tasks} />` : null}
    ${objects.length ? html`<${ObjectTable} objects=${objects} />` : null}`;
}

export const GRAPH_SECTIONS = [{ title: "Tasks and objects", show: () => true, view: GraphView }];
