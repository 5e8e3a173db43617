// A directed graph drawn in SVG: a graph session's tasks and objects, a
// network's jobs and pipes. Layered left to right (a node one column after the
// deepest of its predecessors), each column ordered by where its predecessors
// sit, so edges mostly run straight. No layout library: a few hundred nodes
// are laid out in a millisecond, and only when the graph's shape changes, not
// when a node's state does.
import { useMemo } from "preact/hooks";
import { html } from "./lib.js";

const COLUMN = 170; // px between layers
const ROW = 40; // px between nodes of a layer
const BOX = { width: 130, height: 28 };
const DOT = 7; // radius of a small node (an object)
const MARGIN = 16;

// nodes: [{ key }], edges: [[fromKey, toKey]] -> Map key -> { x, y } and the size.
export function layered(nodes, edges) {
  const next = new Map(nodes.map((n) => [n.key, []]));
  const prev = new Map(nodes.map((n) => [n.key, []]));
  for (const [a, b] of edges) {
    if (next.has(a) && next.has(b)) {
      next.get(a).push(b);
      prev.get(b).push(a);
    }
  }
  // Longest path from a source (Kahn's order); what a cycle leaves goes last.
  const waiting = new Map(nodes.map((n) => [n.key, prev.get(n.key).length]));
  const layer = new Map();
  const queue = nodes.filter((n) => waiting.get(n.key) === 0).map((n) => n.key);
  for (const k of queue) layer.set(k, 0);
  for (let i = 0; i < queue.length; i++) {
    const k = queue[i];
    for (const m of next.get(k)) {
      layer.set(m, Math.max(layer.get(m) ?? 0, layer.get(k) + 1));
      waiting.set(m, waiting.get(m) - 1);
      if (waiting.get(m) === 0) queue.push(m);
    }
  }
  // A source (a constant object) sits just before its first reader, not in column 0.
  for (const n of nodes) {
    const readers = next.get(n.key).filter((m) => layer.has(m));
    if (!prev.get(n.key).length && readers.length) {
      layer.set(n.key, Math.max(0, Math.min(...readers.map((m) => layer.get(m))) - 1));
    }
  }
  let deepest = 0;
  for (const l of layer.values()) deepest = Math.max(deepest, l);
  const cyclic = nodes.filter((n) => waiting.get(n.key) > 0);
  for (const n of cyclic) layer.set(n.key, deepest + 1);
  if (cyclic.length) deepest += 1;

  const columns = Array.from({ length: deepest + 1 }, () => []);
  for (const n of nodes) columns[layer.get(n.key)].push(n.key);
  const row = new Map();
  columns.forEach((column, l) => {
    if (l > 0) {
      // Barycentre of the predecessors' rows: a node sits near what feeds it.
      const centre = (k) => {
        const rows = prev.get(k).filter((p) => row.has(p)).map((p) => row.get(p));
        return rows.length ? rows.reduce((a, b) => a + b, 0) / rows.length : Infinity;
      };
      const order = new Map(column.map((k) => [k, centre(k)]));
      column.sort((a, b) => order.get(a) - order.get(b));
    }
    column.forEach((k, i) => row.set(k, i));
  });
  const tallest = Math.max(1, ...columns.map((c) => c.length));
  const at = new Map();
  columns.forEach((column, l) => {
    // Short columns are centred against the tallest one.
    const offset = ((tallest - column.length) * ROW) / 2;
    column.forEach((k, i) => at.set(k, { x: MARGIN + l * COLUMN, y: MARGIN + offset + i * ROW }));
  });
  return {
    at,
    width: MARGIN * 2 + deepest * COLUMN + BOX.width,
    height: MARGIN * 2 + (tallest - 1) * ROW + BOX.height,
  };
}

function clip(text, n = 18) {
  return text.length > n ? `${text.slice(0, n - 1)}…` : text;
}

// The graph's shape: a new layout only when it changes.
function shapeOf(nodes, edges) {
  return `${nodes.map((n) => n.key).join(",")}|${edges.map((e) => e.join(">")).join(",")}`;
}

function anchor(node, p, side) {
  if (node.small) return { x: p.x + DOT, y: p.y + BOX.height / 2 };
  return { x: side === "out" ? p.x + BOX.width : p.x, y: p.y + BOX.height / 2 };
}

// nodes: [{ key, label, state, title, small, attrs }]; attrs are data-* attributes.
export function Dag({ nodes, edges, testid }) {
  const shape = shapeOf(nodes, edges);
  const layout = useMemo(() => layered(nodes, edges), [shape]);
  const byKey = new Map(nodes.map((n) => [n.key, n]));
  const paths = edges
    .filter(([a, b]) => layout.at.has(a) && layout.at.has(b))
    .map(([a, b]) => {
      const p = anchor(byKey.get(a), layout.at.get(a), "out");
      const q = anchor(byKey.get(b), layout.at.get(b), "in");
      const bend = (q.x - p.x) / 2;
      return html`<path key=${`${a}>${b}`}
        d=${`M${p.x},${p.y} C${p.x + bend},${p.y} ${q.x - bend},${q.y} ${q.x},${q.y}`} />`;
    });
  return html`<div class="dag" data-testid=${testid}>
    <svg width=${layout.width} height=${layout.height}
      viewBox=${`0 0 ${layout.width} ${layout.height}`} role="img">
      <g class="edges">${paths}</g>
      ${nodes.map((n) => {
        const p = layout.at.get(n.key);
        const cls = `node ${n.small ? "small" : "box"} ${String(n.state || "").toLowerCase()}`;
        return html`<g key=${n.key} class=${cls} transform=${`translate(${p.x},${p.y})`}
          data-state=${n.state} ...${n.attrs}>
          <title>${n.title}</title>
          ${n.small
            ? html`<circle cx=${DOT} cy=${BOX.height / 2} r=${DOT} />`
            : html`<rect width=${BOX.width} height=${BOX.height} rx="6" />
                <text x="8" y=${BOX.height / 2 + 4}>${clip(n.label)}</text>`}
        </g>`;
      })}
    </svg>
  </div>`;
}
