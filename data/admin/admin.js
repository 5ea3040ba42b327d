// admin.js - the administrator's page: polls imsd's JSON (/api/state, /api/queues,
// /api/stats, /api/events), draws the counters on canvases, and posts queue actions with the
// page's CSRF nonce and the password or token typed in. Plain DOM, no framework.
"use strict";

const CSRF = document.querySelector('meta[name="csrf"]').content;
const HISTORY = 300;          // samples kept for the charts (the service keeps as many)
const STATS_MS = 1000, QUEUES_MS = 2000, EVENTS_MS = 2000, STATE_MS = 10000;
const EVENTS_SHOWN = 200;
const COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];
const ACTIONS = [["retry", "retry"], ["hold", "hold"], ["release", "release"],
                 ["delete", "delete"], ["delete-ndr", "delete with NDR"]];

let keys = [], samples = [], lastStats = 0, lastEvent = 0, busy = false;

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}

function when(unix) {
  if (!unix) return "";
  return new Date(unix * 1000).toLocaleString();
}

function duration(s) {
  const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
  return (d ? d + "d " : "") + (d || h ? h + "h " : "") + m + "m " + (s % 60) + "s";
}

async function getJSON(path) {
  const r = await fetch(path, {cache: "no-store", credentials: "same-origin"});
  if (!r.ok) throw new Error(path + ": " + r.status);
  return r.json();
}

function status(text, ok) {
  const s = document.getElementById("status");
  s.textContent = text;
  s.className = ok ? "ok" : "error";
}

// --- service state and settings ----------------------------------------------------------

async function loadState() {
  const s = await getJSON("/api/state");
  document.getElementById("service").textContent =
    `pid ${s.pid} · profile ${s.profile} · up ${duration(s.uptime)} · SMTP on ${s.listeners || "none"} · ` +
    `this page on ${s.web} · account ${s.account} · administrator ${s.administrator} · version ${s.version}` +
    (s.stopping ? " · STOPPING" : "");
  const t = document.getElementById("settings");
  t.replaceChildren(el("tr", {}, el("th", {}, "Value"), el("th", {}, "Setting")));
  for (const v of s.settings) t.append(el("tr", {}, el("td", {}, v.name), el("td", {}, v.value)));
}

// --- queues ------------------------------------------------------------------------------

const QUEUES = [["In", "In: inbound awaiting conversion"], ["MTS-IN", "MTS-IN: inbound awaiting delivery"],
                ["MTS-OUT", "MTS-OUT: outbound awaiting conversion"], ["Out", "Out: outbound awaiting delivery"]];

function messageRows(m) {
  const rows = [];
  const rc = m.recipients.length || 1;
  const buttons = el("td", {rowspan: rc});
  for (const [a, label] of ACTIONS) {
    const b = el("button", {type: "button", "data-id": m.id, "data-action": a,
                            class: a.startsWith("delete") ? "danger act" : "act"}, label);
    buttons.append(b);
  }
  const head = [el("td", {rowspan: rc}, m.id), el("td", {rowspan: rc}, m.sender || "<>"),
                el("td", {rowspan: rc}, when(m.arrival)), el("td", {rowspan: rc}, m.size),
                el("td", {rowspan: rc, class: m.held ? "held" : ""}, m.held ? "held" : "")];
  const rs = m.recipients.length ? m.recipients : [null];
  rs.forEach((r, i) => {
    const tr = el("tr", {"data-id": m.id});
    if (i === 0) tr.append(...head);
    if (r) {
      tr.append(el("td", {}, r.address), el("td", {class: r.state === "held" ? "held" : ""}, r.state),
                el("td", {}, r.attempts), el("td", {}, when(r.next_try)),
                el("td", {}, r.remote), el("td", {class: "reply"}, r.reply));
    } else {
      tr.append(el("td", {colspan: 6}, ""));
    }
    if (i === 0) tr.append(buttons);
    rows.push(tr);
  });
  return rows;
}

async function loadQueues() {
  const q = await getJSON("/api/queues");
  const by = {};
  for (const [k] of QUEUES) by[k] = [];
  for (const m of q.messages) (by[m.queue] || (by[m.queue] = [])).push(m);
  const box = document.getElementById("queues");
  const parts = [];
  for (const [k, title] of QUEUES) {
    parts.push(el("h3", {}, `${title} (${by[k].length})`));
    if (!by[k].length) { parts.push(el("div", {class: "muted"}, "empty")); continue; }
    const t = el("table", {class: "compact queue", "data-queue": k});
    t.append(el("tr", {}, ...["Queue id", "Sender", "Arrived", "Bytes", "", "Recipient", "State",
                             "Attempts", "Next retry", "Remote host", "Last reply", "Actions"]
                             .map((h) => el("th", {}, h))));
    for (const m of by[k]) t.append(...messageRows(m));
    parts.push(t);
  }
  box.replaceChildren(...parts);
  document.getElementById("queue-summary").textContent =
    `${q.count} message${q.count === 1 ? "" : "s"}` + (q.truncated ? ` (the first ${q.limit} only)` : "");
}

async function act(id, action) {
  const secret = document.getElementById("secret").value;
  if (!secret) { status("Type the administrator's password or the token first.", false); return; }
  if (action.startsWith("delete") && !window.confirm(`Delete ${id}` + (action === "delete-ndr" ? " and send an NDR?" : "?"))) return;
  busy = true;
  status(`${action} ${id}…`, true);
  try {
    const r = await fetch("/api/queue-action", {
      method: "POST", credentials: "same-origin", cache: "no-store",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({id: id, action: action, csrf: CSRF, secret: secret}),
    });
    const a = await r.json().catch(() => ({ok: false, error: "HTTP " + r.status}));
    status(a.ok ? `${id}: ${a.text}` : `${id}: ${a.error || a.text}`, a.ok);
  } catch (e) {
    status(`${id}: ${e.message}`, false);
  } finally {
    busy = false;
  }
  loadQueues().catch(() => {});
}

// --- counters ----------------------------------------------------------------------------

function series(key) {
  const i = keys.indexOf(key);
  return i < 0 ? [] : samples.map((s) => [s[1], s[i + 2]]);
}

function rates(key) {
  const xs = series(key), out = [];
  for (let k = 1; k < xs.length; k++) {
    const dt = (xs[k][0] - xs[k - 1][0]) / 1000;
    out.push([xs[k][0], dt > 0 && xs[k][1] >= xs[k - 1][1] ? (xs[k][1] - xs[k - 1][1]) / dt : 0]);
  }
  return out;
}

function draw(id, lines) {
  const c = document.getElementById(id), g = c.getContext("2d");
  const W = c.width, H = c.height, L = 46, B = 16;
  g.clearRect(0, 0, W, H);
  let tmin = Infinity, tmax = -Infinity, vmax = 0;
  for (const l of lines) for (const [t, v] of l) {
    tmin = Math.min(tmin, t); tmax = Math.max(tmax, t); vmax = Math.max(vmax, v);
  }
  vmax = vmax > 0 ? vmax * 1.1 : 1;
  g.strokeStyle = "#ccc"; g.fillStyle = "#555"; g.font = "10px sans-serif"; g.lineWidth = 1;
  for (let k = 0; k <= 2; k++) {
    const y = H - B - (H - B - 4) * k / 2;
    g.beginPath(); g.moveTo(L, y); g.lineTo(W, y); g.stroke();
    const v = vmax * k / 2;
    g.fillText(v >= 1000 ? (v / 1000).toFixed(1) + "k" : v.toFixed(v < 10 ? 1 : 0), 2, y + 3);
  }
  if (!(tmax > tmin)) { g.fillText("collecting…", L + 8, H / 2); return; }
  g.fillText(`${Math.round((tmax - tmin) / 1000)} s`, L, H - 3);
  lines.forEach((l, n) => {
    g.strokeStyle = COLOURS[n % COLOURS.length]; g.lineWidth = 1.5; g.beginPath();
    l.forEach(([t, v], k) => {
      const x = L + (W - L - 2) * (t - tmin) / (tmax - tmin), y = H - B - (H - B - 4) * v / vmax;
      if (k) g.lineTo(x, y); else g.moveTo(x, y);
    });
    g.stroke();
  });
}

function counterTable() {
  const last = samples[samples.length - 1];
  if (!last) return;
  const t = document.getElementById("counters");
  const cells = keys.map((k, i) => el("tr", {}, el("td", {}, k), el("td", {}, last[i + 2])));
  t.replaceChildren(el("tr", {}, el("th", {}, "Counter"), el("th", {}, "Now")), ...cells);
}

async function loadStats() {
  const s = await getJSON("/api/stats?since=" + lastStats);
  keys = s.keys;
  for (const x of s.samples) samples.push(x);
  if (samples.length > HISTORY) samples.splice(0, samples.length - HISTORY);
  if (samples.length) lastStats = samples[samples.length - 1][0];
  draw("chart-messages", [rates("messages_received_total"), rates("messages_sent_total")]);
  draw("chart-bytes", [rates("bytes_received_total"), rates("bytes_sent_total")]);
  draw("chart-connections", [series("connections_inbound"), series("connections_outbound")]);
  draw("chart-queued", ["queue_messages.inbound", "queue_messages.mts-in", "queue_messages.mts-out",
                        "queue_messages.outbound"].map(series));
  counterTable();
}

// --- events ------------------------------------------------------------------------------

async function loadEvents() {
  const evs = await getJSON("/api/events?since=" + lastEvent);
  const body = document.querySelector("#events tbody");
  for (const e of evs) {
    lastEvent = Math.max(lastEvent, e.seq);
    body.prepend(el("tr", {class: "sev-" + e.severity}, el("td", {}, when(e.time)), el("td", {}, e.id),
                       el("td", {}, e.category), el("td", {}, e.severity), el("td", {}, e.text)));
  }
  while (body.rows.length > EVENTS_SHOWN) body.deleteRow(body.rows.length - 1);
}

// --- polling -----------------------------------------------------------------------------

function every(ms, fn) {
  const run = () => fn().catch((e) => console.warn(e.message)).finally(() => setTimeout(run, ms));
  run();
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("queues").addEventListener("click", (ev) => {
    const b = ev.target.closest("button.act");
    if (b && !busy) act(b.dataset.id, b.dataset.action);
  });
  every(STATE_MS, loadState);
  every(QUEUES_MS, () => (busy ? Promise.resolve() : loadQueues()));
  every(STATS_MS, loadStats);
  every(EVENTS_MS, loadEvents);
});
