// The page of `distrilab serve`: draws /api/state (stacks/commands/serve.py) and polls it every 2 s.
"use strict";

const POLL_MS = 2000;
const SVG_NS = "http://www.w3.org/2000/svg";
const BOX = { w: 140, h: 50, gap: 14, row: 110, pad: 16 };
// one colour per host, in the lab's host order
const HOST_COLOURS = ["#2980b9", "#8e44ad", "#16a085", "#d35400", "#2c3e50", "#c0392b", "#7f8c8d", "#27ae60"];

function el(tag, attrs = {}, text = "") {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text) node.textContent = text;
  return node;
}

function svgEl(tag, attrs = {}, text = "") {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text) node.textContent = text;
  return node;
}

function stateClass(node) {
  if (node.state === "unknown") return "unknown";
  return node.down ? "down" : "up";
}

function hostColour(doc, host) {
  return HOST_COLOURS[doc.hosts.indexOf(host) % HOST_COLOURS.length];
}

// tiers as rows (tier 0, the spines or core, on top), each row centred
function layout(nodes) {
  const rows = new Map();
  for (const n of nodes) {
    if (!rows.has(n.tier)) rows.set(n.tier, []);
    rows.get(n.tier).push(n);
  }
  const tiers = [...rows.keys()].sort((a, b) => a - b);
  const widest = Math.max(...tiers.map((t) => rows.get(t).length));
  const width = 2 * BOX.pad + widest * BOX.w + (widest - 1) * BOX.gap;
  const at = new Map();
  tiers.forEach((t, r) => {
    const row = rows.get(t);
    const used = row.length * BOX.w + (row.length - 1) * BOX.gap;
    row.forEach((n, i) => {
      at.set(n.node, { x: (width - used) / 2 + i * (BOX.w + BOX.gap), y: BOX.pad + r * BOX.row });
    });
  });
  return { at, width, height: 2 * BOX.pad + (tiers.length - 1) * BOX.row + BOX.h };
}

function drawTopology(doc) {
  const { at, width, height } = layout(doc.nodes);
  // scaled down to fit a narrow window, never up (a 6-node lab would fill the screen)
  const svg = svgEl("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", style: `max-width:${width}px` });
  for (const link of doc.links) {
    const [a, b] = [at.get(link.a), at.get(link.b)].sort((p, q) => p.y - q.y);
    const cls = link.cross_host ? "link cross" : "link";
    const line = svgEl("line", {
      class: cls, x1: a.x + BOX.w / 2, y1: a.y + BOX.h, x2: b.x + BOX.w / 2, y2: b.y,
    });
    line.appendChild(svgEl("title", {}, `${link.a}:${link.a_interface} - ${link.b}:${link.b_interface}`));
    svg.appendChild(line);
  }
  for (const n of doc.nodes) {
    const { x, y } = at.get(n.node);
    const g = svgEl("g", { class: `node ${stateClass(n)}`, "data-node": n.node, "data-state": n.state });
    g.appendChild(svgEl("title", {}, `${n.node} (${n.role}) on ${n.host}: ${n.state}`));
    g.appendChild(svgEl("rect", { x, y, width: BOX.w, height: BOX.h, rx: 6, fill: hostColour(doc, n.host) }));
    g.appendChild(svgEl("text", { class: "name", x: x + BOX.w / 2, y: y + 15 }, n.node));
    g.appendChild(svgEl("text", { class: "address", x: x + BOX.w / 2, y: y + 29 }, n.management || "-"));
    g.appendChild(svgEl("text", { class: "state", x: x + BOX.w / 2, y: y + 43 }, n.down ? `${n.state} (down)` : n.state));
    svg.appendChild(g);
  }
  document.getElementById("topology").replaceChildren(svg);
}

function drawLegend(doc) {
  const items = doc.hosts.map((h) => {
    const item = el("span");
    item.append(el("span", { class: "swatch", style: `background:${hostColour(doc, h)}` }), `host ${h}`);
    return item;
  });
  const cross = el("span");
  const p = doc.placement;
  cross.append(el("span", { class: "cross" }), `link across hosts (${p.cross_host_links}/${p.links})`);
  const down = doc.nodes.filter((n) => n.down).length;
  const counts = el("span", {}, `${doc.nodes.length} nodes, ${down} down`);
  document.getElementById("legend").replaceChildren(...items, cross, counts);
}

function drawNodes(doc) {
  const rows = doc.nodes.map((n) => {
    const tr = el("tr", { class: `node-row ${stateClass(n)}`, "data-node": n.node });
    for (const [cls, text] of [["", n.node], ["", n.role], ["", n.host], ["state", n.state], ["", n.management || ""]]) {
      tr.appendChild(el("td", cls ? { class: cls } : {}, text));
    }
    return tr;
  });
  document.querySelector("#nodes tbody").replaceChildren(...rows);
}

function drawCheck(doc) {
  const box = document.getElementById("check");
  if (doc.check_error) return box.replaceChildren(el("p", { class: "bad" }, doc.check_error));
  if (!doc.check) return box.replaceChildren(el("p", { class: "note" }, `no check yet: distrilab check LAB`));
  const table = el("table", { class: "checks" });
  table.appendChild(el("tr")).append(el("th", {}, "name"), el("th", {}, "ok"), el("th", {}, "detail"));
  for (const c of doc.check.checks) {
    const tr = el("tr", { class: `check-row ${c.ok ? "up" : "down"}`, "data-check": c.name });
    const detail = el("td", {}, c.summary);
    if (c.details.length) detail.appendChild(el("div", { class: "details" }, c.details.slice(0, 5).join("; ")));
    tr.append(el("td", {}, c.name), el("td", { class: c.ok ? "good" : "bad" }, c.ok ? "ok" : "FAILED"), detail);
    table.appendChild(tr);
  }
  const verdict = el("p", { class: doc.check.ok ? "good" : "bad" }, doc.check.ok ? "healthy" : "FAILED");
  box.replaceChildren(verdict, table);
}

let shownCharts = null; // the chart URLs on the page: images are replaced only when a run changed them

function drawReport(doc) {
  const key = doc.charts.map((c) => c.url).join(" ");
  if (key === shownCharts) return;
  shownCharts = key;
  const box = document.getElementById("report");
  if (!doc.charts.length) return box.replaceChildren(el("p", { class: "note" }, "no controller report"));
  const charts = el("div", { class: "charts" });
  for (const c of doc.charts) charts.appendChild(el("img", { src: c.url, alt: `controller ${c.name}` }));
  box.replaceChildren(charts);
}

function render(doc) {
  document.title = `distrilab ${doc.lab}`;
  document.getElementById("title").textContent = `lab ${doc.lab} (${doc.topology})`;
  const status = document.getElementById("status");
  status.textContent = doc.lxd_error ? `LXD did not answer: ${doc.lxd_error}` : `updated ${doc.updated}`;
  status.className = doc.lxd_error ? "status stale" : "status";
  drawTopology(doc);
  drawLegend(doc);
  drawNodes(doc);
  drawCheck(doc);
  drawReport(doc);
}

async function poll() {
  try {
    const answer = await fetch("/api/state", { cache: "no-store" });
    if (!answer.ok) throw new Error(`HTTP ${answer.status}`);
    render(await answer.json());
  } catch (err) {
    const status = document.getElementById("status");
    status.textContent = `server not answering (${err.message}); the page shows the last state`;
    status.className = "status stale";
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

poll();
