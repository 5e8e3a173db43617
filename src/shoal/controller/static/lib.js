// What the pages share: templates, live state, small components and formats.
import { h } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import htm from "htm";
import { subscribe } from "./api.js";

export const html = htm.bind(h);

export const FINAL = new Set(["FINISHED", "FAILED", "CANCELLED"]);

// Live state from GET /api/events: { [event]: data, status }. A new `key`
// (e.g. another experiment's name) starts a new stream; leaving the page ends it.
export function useEvents(params, key) {
  const [state, setState] = useState({ status: "connecting" });
  useEffect(() => {
    setState({ status: "connecting" });
    const handlers = { status: (status) => setState((s) => ({ ...s, status })) };
    for (const event of ["nodes", "experiments", "experiment", "output", "gone"]) {
      handlers[event] = (data) => setState((s) => ({ ...s, [event]: data }));
    }
    return subscribe(params, handlers);
  }, [key]);
  return state;
}

// Shows whether updates arrive; a refusal (an ApiError) is the page's to show.
export function LiveStatus({ status }) {
  if (typeof status !== "string") return null;
  const text = { live: "live", connecting: "connecting…", reconnecting: "reconnecting…" }[status];
  return html`<span class="live ${status}" data-testid="live-status">${text}</span>`;
}

export function Badge({ value }) {
  const v = String(value ?? "");
  return html`<span class="badge ${v.toLowerCase()}" data-testid="state">${v}</span>`;
}

export function Meter({ percent, label }) {
  const p = Math.max(0, Math.min(100, Number(percent) || 0));
  const level = p >= 90 ? "high" : p >= 70 ? "mid" : "low";
  return html`<div class="meter" title=${label}>
    <div class="fill ${level}" style=${{ width: `${p}%` }}></div>
    <span>${label}</span>
  </div>`;
}

// A line of the last values of a number, e.g. a node's cpu.
export function Sparkline({ values, max = 100 }) {
  if (!values || values.length < 2) return html`<svg class="spark"></svg>`;
  const width = 120;
  const height = 24;
  const step = width / (values.length - 1);
  const points = values
    .map((v, i) => `${(i * step).toFixed(1)},${(height - (v / max) * height).toFixed(1)}`)
    .join(" ");
  return html`<svg class="spark" viewBox="0 0 ${width} ${height}" preserveAspectRatio="none">
    <polyline points=${points} />
  </svg>`;
}

// A button that asks once more before it acts (no browser dialog: pages stay scriptable).
export function ConfirmButton({ label, confirm, onConfirm, disabled, kind = "" }) {
  const [armed, setArmed] = useState(false);
  const [busy, setBusy] = useState(false);
  const timer = useRef(null);
  useEffect(() => () => clearTimeout(timer.current), []);
  async function click() {
    if (!armed) {
      setArmed(true);
      timer.current = setTimeout(() => setArmed(false), 5000);
      return;
    }
    clearTimeout(timer.current);
    setArmed(false);
    setBusy(true);
    try {
      await onConfirm();
    } finally {
      setBusy(false);
    }
  }
  return html`<button class="action ${kind} ${armed ? "armed" : ""}"
    disabled=${disabled || busy} onClick=${click}>${armed ? confirm : label}</button>`;
}

export function Message({ error }) {
  if (!error) return null;
  return html`<p class="error" role="alert">${error.message || String(error)}</p>`;
}

export function when(seconds) {
  if (!seconds) return "";
  const d = new Date(seconds * 1000);
  const today = new Date().toDateString() === d.toDateString();
  return today ? d.toLocaleTimeString() : d.toLocaleString();
}

export function duration(start, end) {
  if (!start) return "";
  const s = Math.max(0, (end || Date.now() / 1000) - start);
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

export function bytes(n) {
  if (n == null) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

export const experimentHref = (name) => `#/experiments/${encodeURIComponent(name)}`;

// Keeps a <pre> scrolled to its end while the user has not scrolled up.
export function Tail({ text, testid }) {
  const ref = useRef(null);
  const stick = useRef(true);
  useEffect(() => {
    const el = ref.current;
    if (el && stick.current) el.scrollTop = el.scrollHeight;
  }, [text]);
  function scrolled() {
    const el = ref.current;
    stick.current = el.scrollHeight - el.scrollTop - el.clientHeight < 8;
  }
  return html`<pre class="tail" ref=${ref} onScroll=${scrolled} data-testid=${testid}>${text}</pre>`;
}

// The state to show: the truthful one (a pipeline that ran to its end with a
// failed step is FAILED), from the older `status` if a record has none.
export const stateOf = (e) => e.state ?? e.status;

export const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

// "3 of 10 tasks failed", or "10 tasks" when none failed; "" with nothing counted.
export function countsText(counts, unit) {
  if (!counts || !unit || !counts.total) return "";
  if (counts.failed) return `${counts.failed} of ${plural(counts.total, unit)} failed`;
  return plural(counts.total, unit);
}

// "5 finished, 2 running" from { state: n } (total and empty states left out).
export function byState(counts) {
  return Object.entries(counts || {})
    .filter(([state, n]) => state !== "total" && n)
    .map(([state, n]) => `${n} ${state}`)
    .join(", ");
}
