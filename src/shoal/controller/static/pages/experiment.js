// One experiment: its state, per node its steps and log tail, its flags, and a
// run's commands with their output as it comes.
//
// The page is a list of sections; each says from the experiment's JSON whether
// it has something to show. A kind with views of its own (a graph session's
// tasks, a dataflow network's jobs) adds them to KIND_SECTIONS.
import { useRef, useState } from "preact/hooks";
import {
  Badge,
  byState,
  ConfirmButton,
  countsText,
  duration,
  FINAL,
  html,
  LiveStatus,
  Message,
  stateOf,
  Tail,
  useEvents,
  when,
} from "../lib.js";
import { DATAFLOW_SECTIONS } from "./dataflow.js";
import { cancelExperiment, deleteExperiment } from "./experiments.js";
import { GRAPH_SECTIONS } from "./graph.js";

function Steps({ steps }) {
  if (!steps.length) return html`<p class="muted small">no step has finished yet</p>`;
  return html`<table class="steps">
    <thead><tr><th>#</th><th>Task</th><th></th><th>Result</th></tr></thead>
    <tbody>${steps.map(
      (s) => html`<tr class=${s.ok ? "ok" : "failed"} data-step=${s.index}>
        <td>${s.index}</td><td>${s.task_name}</td>
        <td>${s.ok ? "✓" : "✗"}</td>
        <td><pre class="result">${s.text}</pre></td>
      </tr>`,
    )}</tbody>
  </table>`;
}

function Deployment({ d, logs }) {
  const node = d.node?.name ?? d.node;
  const lines = logs.filter((l) => l.node === node);
  return html`<article class="card" data-deployment=${node}>
    <header>
      <h3>${node}</h3>
      ${d.node?.state ? html`<span class="muted small">node ${d.node.state}</span>` : null}
      <${Badge} value=${d.state} />
      <span class="muted small">${duration(d.started_at, d.finished_at)}</span>
    </header>
    ${d.error ? html`<p class="failed">${d.error}</p>` : null}
    <${Steps} steps=${d.steps || []} />
    ${d.result_text ? html`<p class="small">result: <code>${d.result_text}</code></p>` : null}
    <h4>Log</h4>
    ${lines.length
      ? html`<${Tail} testid=${`log-${node}`}
          text=${lines.map((l) => (l.stream === "stderr" ? `! ${l.line}` : l.line)).join("\n")} />`
      : html`<p class="muted small">no log lines</p>`}
  </article>`;
}

function Deployments({ e }) {
  return html`<div class="cards">
    ${e.deployments.map((d) => html`<${Deployment} key=${d.executor_id} d=${d} logs=${e.logs || []} />`)}
  </div>`;
}

function Flags({ e }) {
  const entries = Object.entries(e.flags || {});
  return html`<table class="flags">
    <thead><tr><th>Flag</th><th>Text value</th><th>Int value</th></tr></thead>
    <tbody>${entries.map(
      ([name, v]) => html`<tr data-flag=${name}>
        <td>${name}</td><td>${v.text_value ?? ""}</td><td>${v.int_value ?? ""}</td>
      </tr>`,
    )}</tbody>
  </table>`;
}

function Command({ c, running }) {
  const code = running
    ? html`<${Badge} value="running" />`
    : c.finishing
      ? html`<${Badge} value="finishing" />`
      : c.error
        ? html`<span class="failed">${c.error}</span>`
        : html`<span class=${c.return_code === 0 ? "ok" : "failed"}>exit ${c.return_code}</span>`;
  const output = [c.stdout, c.stderr ? `--- stderr ---\n${c.stderr}` : ""].filter(Boolean).join("\n");
  return html`<article class="card command" data-command=${c.id}>
    <header>
      <code class="cmd">${c.cmd}</code>
      <span class="muted small">on ${c.node}</span>
      ${code}
      <span class="muted small">${duration(c.started_at, running ? null : c.finished_at)}</span>
    </header>
    ${output
      ? html`<${Tail} testid=${`output-${c.id}`} text=${output} />`
      : html`<p class="muted small">no output</p>`}
    ${c.truncated ? html`<p class="muted small">output cut at 256 KiB</p>` : null}
  </article>`;
}

// Stored commands, running ones with their output as it comes, and the ones
// that just ended and are not stored yet (kept from their last live view).
function Commands({ e, output, seen }) {
  const stored = e.commands || [];
  const running = output?.commands || [];
  const known = new Set([...stored.map((c) => c.id), ...running.map((c) => c.id)]);
  for (const c of running) seen.set(c.id, c);
  const ended = [...seen.values()].filter((c) => !known.has(c.id));
  for (const c of stored) seen.delete(c.id);
  return html`<div class="cards">
    ${running.map((c) => html`<${Command} key=${c.id} c=${c} running=${true} />`)}
    ${ended.map((c) => html`<${Command} key=${c.id} c=${{ ...c, finishing: true }} />`)}
    ${[...stored].reverse().map((c) => html`<${Command} key=${c.id} c=${c} />`)}
  </div>`;
}

// Sections every experiment may have, shown when its JSON has their data.
const SECTIONS = [
  { title: "Nodes and steps", show: (e) => e.deployments?.length, view: Deployments },
  {
    title: "Commands",
    show: (e, output) => e.commands?.length || output?.commands?.length,
    view: Commands,
  },
  { title: "Flags", show: (e) => Object.keys(e.flags || {}).length, view: Flags },
];

// Sections of one kind only, e.g. graph: [{ title: "Tasks", show, view }].
export const KIND_SECTIONS = { graph: GRAPH_SECTIONS, dataflow: DATAFLOW_SECTIONS };

function Header({ e }) {
  const [error, setError] = useState(null);
  const state = stateOf(e);
  const final = FINAL.has(state);
  const counted = countsText(e.counts, e.unit);
  const act = async (f, after) => {
    setError(null);
    try {
      await f(e.name);
      if (after) after();
    } catch (failure) {
      setError(failure);
    }
  };
  return html`<div class="title">
    <h1>${e.name}</h1>
    <${Badge} value=${state} />
    <span class="muted">${e.kind}</span>
    ${counted
      ? html`<span class=${e.counts.failed ? "failed" : "muted"} data-testid="counts"
          title=${byState(e.counts)}>${counted}</span>`
      : null}
    <span class="actions">
      ${final
        ? html`<${ConfirmButton} label="Delete" confirm="Really delete?" kind="danger"
            onConfirm=${() => act(deleteExperiment, () => (location.hash = "#/experiments"))} />`
        : html`<${ConfirmButton} label="Cancel" confirm="Really cancel?"
            onConfirm=${() => act(cancelExperiment)} />`}
    </span>
  </div>
  <p class="times muted">
    created ${when(e.created_at)}
    ${e.started_at ? html`, started ${when(e.started_at)}` : null}
    ${e.finished_at ? html`, finished ${when(e.finished_at)}` : null}
    ${e.started_at ? html` (${duration(e.started_at, e.finished_at)})` : null}
  </p>
  ${e.error ? html`<p class="failed" data-testid="experiment-error">${e.error}</p>` : null}
  ${e.state_reason && e.state_reason !== e.error
    ? html`<p class="failed small" data-testid="state-reason">ran to its end, but ${e.state_reason}</p>`
    : null}
  <${Message} error=${error} />`;
}

export function ExperimentPage({ name }) {
  const state = useEvents({ experiment: name }, name);
  const seen = useRef(new Map()); // commands last seen running
  const refused = typeof state.status === "string" ? null : state.status;
  const back = html`<p><a href="#/experiments">← all experiments</a></p>`;
  if (refused) {
    const title = refused.status === 404 ? "Not found" : "Refused";
    return html`<section>${back}<h1>${title}</h1><${Message} error=${refused} /></section>`;
  }
  if (state.gone) {
    return html`<section>${back}<h1>${name}</h1>
      <p class="muted" data-testid="gone">This experiment was deleted (or replaced by a new run
      of the same name: <a href=${`#/experiments/${encodeURIComponent(name)}`}
      onClick=${() => location.reload()}>open it</a>).</p></section>`;
  }
  const e = state.experiment;
  if (!e) return html`<section>${back}<p class="muted">Loading ${name}…</p></section>`;
  const sections = [...SECTIONS, ...(KIND_SECTIONS[e.kind] || [])].filter((s) =>
    s.show(e, state.output),
  );
  return html`<section class="experiment">
    ${back}
    <${Header} e=${e} />
    <${LiveStatus} status=${state.status} />
    ${sections.map(
      (s) => html`<section class="part" key=${s.title}><h2>${s.title}</h2>
        <${s.view} e=${e} output=${state.output} seen=${seen.current} /></section>`,
    )}
    ${sections.length ? null : html`<p class="muted">Nothing has run yet.</p>`}
  </section>`;
}
