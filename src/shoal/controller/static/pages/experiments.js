// Experiments of every kind, filterable by kind, state and user; cancel and delete.
import { useState } from "preact/hooks";
import { api, experimentPath } from "../api.js";
import {
  Badge,
  byState,
  ConfirmButton,
  countsText,
  duration,
  experimentHref,
  FINAL,
  html,
  LiveStatus,
  Message,
  plural,
  stateOf,
  useEvents,
  when,
} from "../lib.js";

const KINDS = ["pipelines", "runner", "graph", "dataflow"];
const STATES = ["PREPARING", "READY", "RUNNING", "FINISHED", "FAILED", "CANCELLED"];

export async function cancelExperiment(name) {
  return api("POST", `${experimentPath(name)}/cancel`);
}

export async function deleteExperiment(name) {
  return api("DELETE", experimentPath(name));
}

// "2 finished, 1 failed" deployments, and "3 of 10 tasks failed" from the
// record's counts of its unit of work (steps, commands, tasks or jobs).
function Work({ e }) {
  const parts = Object.entries(e.deployments || {}).map(([state, n]) => `${n} ${state}`);
  if (e.commands) parts.push(plural(e.commands, "command"));
  if (e.counts && e.unit && e.unit !== "step" && e.unit !== "command" && e.counts.total) {
    parts.push(plural(e.counts.total, e.unit));
  }
  const failed = e.counts?.failed ? countsText(e.counts, e.unit) : "";
  return html`<span title=${byState(e.counts)}>${parts.join(", ")}</span>
    ${failed ? html`<div class="failed small" data-testid="failed-counts">${failed}</div>` : null}`;
}

function Select({ label, value, options, onChange }) {
  return html`<label>${label}
    <select name=${label.toLowerCase()} value=${value} onChange=${(e) => onChange(e.target.value)}>
      <option value="">all</option>
      ${options.map((o) => html`<option value=${o}>${o.toLowerCase()}</option>`)}
    </select>
  </label>`;
}

function Row({ e, onError }) {
  const state = stateOf(e);
  const final = FINAL.has(state);
  const act = (f) => async () => {
    try {
      await f(e.name);
    } catch (error) {
      onError(error);
    }
  };
  return html`<tr data-experiment=${e.name}>
    <td><a href=${experimentHref(e.name)}>${e.name}</a>
      ${e.error ? html`<div class="failed small" title=${e.error}>${e.error}</div>` : null}</td>
    <td>${e.kind}</td>
    <td><${Badge} value=${state} />
      ${e.state_reason ? html`<div class="muted small">ran to its end</div>` : null}</td>
    <td>${e.owner}</td>
    <td>${when(e.created_at)}</td>
    <td>${duration(e.started_at, e.finished_at)}</td>
    <td><${Work} e=${e} /></td>
    <td class="actions">
      ${final
        ? html`<${ConfirmButton} label="Delete" confirm="Really delete?" kind="danger"
            onConfirm=${act(deleteExperiment)} />`
        : html`<${ConfirmButton} label="Cancel" confirm="Really cancel?"
            onConfirm=${act(cancelExperiment)} />`}
    </td>
  </tr>`;
}

export function ExperimentsPage() {
  const state = useEvents({ topics: ["experiments"] }, "experiments");
  const [kind, setKind] = useState("");
  const [status, setStatus] = useState("");
  const [owner, setOwner] = useState("");
  const [text, setText] = useState("");
  const [error, setError] = useState(null);
  const all = state.experiments?.experiments;
  const owners = [...new Set((all || []).map((e) => e.owner))].sort();
  const kinds = [...new Set([...KINDS, ...(all || []).map((e) => e.kind)])];
  const shown = (all || [])
    .filter(
      (e) =>
        (!kind || e.kind === kind) &&
        (!status || stateOf(e) === status) &&
        (!owner || e.owner === owner) &&
        (!text || e.name.toLowerCase().includes(text.toLowerCase())),
    )
    .reverse(); // newest first
  return html`<section>
    <div class="title">
      <h1>Experiments</h1>
      <${LiveStatus} status=${state.status} />
      ${all ? html`<span class="summary">${shown.length} of ${all.length}</span>` : null}
    </div>
    <form class="filters" onSubmit=${(e) => e.preventDefault()}>
      <${Select} label="Kind" value=${kind} options=${kinds} onChange=${setKind} />
      <${Select} label="State" value=${status} options=${STATES} onChange=${setStatus} />
      <${Select} label="User" value=${owner} options=${owners} onChange=${setOwner} />
      <label>Name <input name="name" type="search" value=${text}
        onInput=${(e) => setText(e.target.value)} /></label>
    </form>
    <${Message} error=${typeof state.status === "string" ? error : state.status} />
    ${all && !all.length
      ? html`<p class="muted">No experiments yet: run one from Python or with
          <code>shoal exp</code>, and it shows here as it runs.</p>`
      : null}
    ${shown.length
      ? html`<table class="experiments">
          <thead><tr><th>Name</th><th>Kind</th><th>State</th><th>User</th><th>Created</th>
            <th>Took</th><th>Work</th><th></th></tr></thead>
          <tbody>${shown.map((e) => html`<${Row} key=${e.id} e=${e} onError=${setError} />`)}</tbody>
        </table>`
      : null}
  </section>`;
}
