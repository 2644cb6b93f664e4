"use strict";
// The technician dashboard: one page, no framework, no CDN. Data comes from /api/v1 and the
// live stream (/api/v1/stream, Server-Sent Events).
let me = null, stream = null, cleanups = [];
// Each route() starts a new view: what an older view's request brings back after that is
// dropped, so a slow answer never writes into (or over) the page the user went to.
let nav = 0;
const $ = (s) => document.querySelector(s);
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => "&#" + c.charCodeAt(0) + ";");
const ts = (ms) => (ms ? new Date(ms).toLocaleString() : "-");
const fmt = (v) => (typeof v === "number" ? (Number.isInteger(v) ? v : v.toFixed(2))
  : v && typeof v === "object"  // a KPI per device: "inv-1 12.5, meter 3"
    ? (Object.entries(v).map(([k, x]) => `${esc(k)} ${fmt(x ?? "-")}`).join(", ") || "-")
    : esc(v));
const say = (t, ok) => { $("#msg").textContent = t || ""; $("#msg").className = ok ? "ok" : ""; };

async function api(path, body) {
  const opt = body === undefined ? {} : {method: "POST", body: JSON.stringify(body),
    headers: {"Content-Type": "application/json", "X-CSRF-Token": me ? me.csrf : ""}};
  const r = await fetch(path, {credentials: "same-origin", ...opt});
  const data = await r.json().catch(() => ({}));
  if (!r.ok) { const e = new Error((data.error && data.error.message) || r.statusText);
    e.status = r.status; throw e; }
  return data;
}
const act = (path, body, then) => api(path, body).then(() => { say(""); then && then(); },
  (e) => say(`Refused (${e.status}): ${e.message}`));

async function boot() {
  try { me = await api("/api/v1/session"); } catch (e) { if (e.status === 401) return login(); throw e; }
  $("#gw").textContent = "fieldgate " + me.gateway;
  $("#who").textContent = `${me.user} (${me.role})`;
  $("#nav").hidden = false; $("#logout").hidden = me.kind === "local";
  window.onhashchange = route; route();
}
function login() {
  $("#main").replaceChildren($("#login-form").content.cloneNode(true));
  $("#login").onsubmit = async (ev) => {
    ev.preventDefault(); const f = new FormData(ev.target);
    try { await api("/api/v1/login", {user: f.get("user"), password: f.get("password")}); boot(); }
    catch (e) { say(e.message); }
  };
}
$("#logout").onclick = () => api("/api/v1/logout", {}).finally(() => location.reload());

function route() {
  nav++;
  if (stream) { stream.close(); stream = null; }
  cleanups.forEach((f) => f()); cleanups = [];
  say("");
  const [page, arg] = location.hash.replace(/^#\/?/, "").split("/");
  const view = {device, chargers, alarms, logs, work}[page] || overview;
  view(decodeURIComponent(arg || "")).catch((e) => say(e.message));
}

async function overview() {
  const g = nav, o = await api("/api/v1/overview");
  if (g !== nav) return;
  const card = (t, v) => `<div class="card"><b>${t}</b><br>${v}</div>`;
  const st = Object.entries(o.devices.by_status).map(([k, n]) => `<span class="${k}">${n} ${k}</span>`).join(", ");
  const al = Array.isArray(o.alarms) ? o.alarms.length + " open" : "no rules";
  const ch = o.chargers && o.chargers.chargers ? o.chargers.chargers.map((c) =>
    `${esc(c.charger)}: ${c.connected ? "connected" : "offline"}, ${c.sessions.length} session(s)`).join("<br>") : "none";
  const b = o.buffer, u = o.uplink;
  $("#main").innerHTML = `<h2>Site ${esc(o.gateway)}</h2><div class="cards">` +
    card("Devices", `${o.devices.total}: ${st}`) + card("Alarms", `<a href="#/alarms">${al}</a>`) +
    card("Chargers", ch) + card("Buffer", `${b.samples} samples, ${b.bytes} B, oldest ${b.age_s} s, dropped ${b.dropped}`) +
    card("Uplink", u ? `${u.connected ? "connected" : "<span class=offline>disconnected</span>"} ${esc(u.broker)}, lag ${u.lag_samples} samples / ${u.lag_s} s` : "not configured") +
    `</div><table id="devices"><tr><th>Device</th><th>Driver</th><th>Status</th><th>Since</th><th>Last seen</th></tr>` +
    o.devices.list.map((d) => `<tr><td><a href="#/device/${encodeURIComponent(d.id)}">${esc(d.id)}</a> ${esc(d.name)}</td>` +
      `<td>${esc(d.driver)}</td><td class="${esc(d.status)}" title="${esc(d.reason)}">${esc(d.status)}</td>` +
      `<td>${ts(d.since)}</td><td>${ts(d.last_seen)}</td></tr>`).join("") + "</table>" +
    `<div class="split"><section><h3>KPIs</h3><table id="kpis"><tr><td>…</td></tr></table></section>` +
    `<section><h3>Energy per day <select id="e-dev"></select> <select id="e-days"><option>7</option><option>14</option><option>30</option></select></h3>` +
    `<div id="energy" class="chartbox">…</div></section></div>`;
  kpiTable();
  energyChart();
}

// Built-in site.* KPIs and every plugin's calculate_custom_kpis (run when the page loads).
async function kpiTable() {
  const g = nav, got = await Promise.all(["today", "month", "year"].map((p) =>
    api("/api/v1/kpis?period=" + p).then((r) => r.result, (e) => ({error: e.message}))));
  if (g !== nav) return;
  if (got[0].error) { $("#kpis").innerHTML = `<tr><td>${esc(got[0].error)}</td></tr>`; return; }
  const names = Object.keys(got[0].kpis).sort((a, b) => (b.startsWith("site.") - a.startsWith("site.")) || a.localeCompare(b));
  $("#kpis").innerHTML = `<tr><th>KPI</th><th>from</th><th>today</th><th>month</th><th>year</th></tr>` +
    (names.map((n) => `<tr data-kpi="${esc(n)}"><td>${esc(n)}</td><td>${n.startsWith("site.") ? "built-in" : "plugin"}</td>` +
      got.map((g) => `<td>${g.kpis ? kpiCell(g.kpis[n]) : "-"}</td>`).join("") + "</tr>").join("") ||
      "<tr><td>no KPIs</td></tr>") +
    (got[0].failed && got[0].failed.length ? `<tr><td colspan=5 class=bad>failed: ${esc(got[0].failed.join(", "))}</td></tr>` : "");
}

// A KPI per device folds away: "8 devices", opened to one line each.
const kpiCell = (v) => (v && typeof v === "object" ? `<details><summary>${Object.keys(v).length} device${Object.keys(v).length === 1 ? "" : "s"}</summary>` +
  Object.entries(v).map(([k, x]) => `${esc(k)} ${fmt(x ?? "-")}`).join("<br>") + "</details>" : fmt(v ?? "-"));

async function energyChart() {
  const g = nav, days = Number($("#e-days").value), box = $("#energy");
  let r;
  try { r = (await api(`/api/v1/history/energy?days=${days}&resolution=1d`)).result; }
  catch (e) { box.textContent = `no energy history: ${e.message}`; return; }
  if (g !== nav) return;
  const sel = $("#e-dev"), devs = Object.keys(r.devices).sort(), keep = sel.value;
  sel.innerHTML = devs.map((d) => `<option${d === keep ? " selected" : ""}>${esc(d)}</option>`).join("");
  sel.onchange = $("#e-days").onchange = energyChart;
  if (!devs.length) { box.textContent = "no energy history yet"; return; }
  // Buckets start at the site's local midnight; a date is named by its midday, so it reads
  // the same in the browser's timezone.
  const rows = r.devices[sel.value].map((e) => ({ts: e.ts, v: e.wh / 1000}));
  const x1 = Math.max(...rows.map((e) => e.ts)) + DAY, x0 = x1 - days * DAY;
  const date = (t, o) => new Date(t + DAY / 2).toLocaleDateString(undefined, o);
  chart(box, {label: `energy per day of ${sel.value}`, unit: "kWh", bars: true, step: DAY, x0, x1, rows,
    xticks: range(x0, x1, DAY * Math.ceil(days / 7)), xfmt: (t) => date(t, {month: "short", day: "numeric"}),
    tfmt: (t) => date(t)});
}

// -- charts: inline SVG, axes with units, hover readout ----------------------------------
const DAY = 86400000, HOUR = 3600000;
const range = (a, b, step) => { const out = []; for (let t = a; t < b; t += step) out.push(t); return out; };
const UNITS = [[/_kwh$/i, "kWh"], [/_wh$|Energy\.Active/i, "Wh"], [/_kw$/i, "kW"], [/_w$|Power\.Active/i, "W"],
  [/_kvar$/i, "kvar"], [/_var$/i, "var"], [/_va$/i, "VA"], [/_v$|Voltage/i, "V"], [/_a$|Current/i, "A"],
  [/_hz$|Frequency/i, "Hz"], [/_pct$|soc|SoC/i, "%"], [/_c$|temp/i, "°C"]];
const unitOf = (p) => (UNITS.find(([re]) => re.test(p)) || [0, ""])[1];
const num = (v, step) => { const a = Math.abs(v);
  if (step) return v.toFixed(Math.max(0, Math.min(6, -Math.floor(Math.log10(step) + 1e-9))));
  return a >= 1000 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : a >= 0.01 || a === 0 ? v.toFixed(2) : v.toPrecision(2); };
function axis(lo, hi, n) {
  const span = hi - lo || Math.abs(hi) || 1, raw = span / n, mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((x) => x >= raw);
  let a = Math.floor(lo / step) * step, b = Math.ceil(hi / step) * step;
  if (a === b) b = a + step;
  const ticks = []; for (let t = a; t <= b + step / 2; t += step) ticks.push(+t.toPrecision(12));
  return {lo: a, hi: b, ticks, step};
}
function chart(el, o) {
  if (!o.rows.length) { el.innerHTML = `<p class="nodata">no history yet</p>`; return; }
  const W = 380, H = 150, L = 50, R = 10, T = 16, B = 20, pw = W - L - R, ph = H - T - B;
  let lo = Math.min(...o.rows.map((r) => r.lo ?? r.v)), hi = Math.max(...o.rows.map((r) => r.hi ?? r.v));
  if (o.bars) { lo = Math.min(lo, 0); hi = Math.max(hi, 0); }
  const y = axis(lo, hi, 4);
  const X = (t) => L + (t - o.x0) / (o.x1 - o.x0) * pw, Y = (v) => T + ph - (v - y.lo) / (y.hi - y.lo) * ph;
  const f = (v) => v.toFixed(1);
  let s = `<svg class="chart${o.bars ? " bars" : ""}" viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(o.label)}" data-n="${o.rows.length}">` +
    `<text x="2" y="10" class="unit">${esc(o.unit || "(no unit)")}</text>`;
  for (const t of y.ticks) s += `<line class="grid" x1="${L}" x2="${W - R}" y1="${f(Y(t))}" y2="${f(Y(t))}"/>` +
    `<text x="${L - 4}" y="${f(Y(t) + 3)}" text-anchor="end">${num(t, y.step)}</text>`;
  for (const t of o.xticks) s += `<line class="grid" x1="${f(X(t))}" x2="${f(X(t))}" y1="${T}" y2="${T + ph}"/>` +
    `<text x="${f(X(t))}" y="${H - 6}" text-anchor="middle">${esc(o.xfmt(t))}</text>`;
  s += `<line class="axis" x1="${L}" x2="${L}" y1="${T}" y2="${T + ph}"/><line class="axis" x1="${L}" x2="${W - R}" y1="${T + ph}" y2="${T + ph}"/>`;
  if (o.bars) {
    for (const r of o.rows) { const x = X(r.ts), w = Math.max(X(r.ts + o.step) - x - 2, 1), y0 = Y(0), y1 = Y(r.v);
      s += `<rect class="bar" x="${f(x + 1)}" y="${f(Math.min(y0, y1))}" width="${f(w)}" height="${f(Math.abs(y1 - y0))}"/>`; }
  } else {
    // A gap in the data (no bucket for more than two steps) breaks the line and the band.
    const segs = []; let cur = [];
    for (const r of o.rows) { if (cur.length && r.ts - cur[cur.length - 1].ts > 2 * o.step) { segs.push(cur); cur = []; } cur.push(r); }
    segs.push(cur);
    const band = segs.map((g) => "M" + g.map((r) => `${f(X(r.ts))},${f(Y(r.hi))}`).join("L") + "L" +
      g.slice().reverse().map((r) => `${f(X(r.ts))},${f(Y(r.lo))}`).join("L") + "Z").join("");
    const line = segs.map((g) => "M" + g.map((r) => `${f(X(r.ts))},${f(Y(r.v))}`).join("L")).join("");
    s += `<path class="band" d="${band}"/><path class="line" d="${line}"/>` + segs.filter((g) => g.length === 1)
      .map(([r]) => `<circle class="dot" cx="${f(X(r.ts))}" cy="${f(Y(r.v))}" r="1.5"/>`).join("");
  }
  s += `<line class="cursor" x1="0" x2="0" y1="${T}" y2="${T + ph}" visibility="hidden"/>` +
    `<rect class="hover" x="${L}" y="${T}" width="${pw}" height="${ph}"/></svg><div class="readout">&nbsp;</div>`;
  el.innerHTML = s;
  const svg = el.querySelector("svg"), cursor = el.querySelector(".cursor"), out = el.querySelector(".readout");
  el.querySelector("rect.hover").addEventListener("pointermove", (ev) => {  // mouse, pen or finger
    const box = svg.getBoundingClientRect(), t = o.x0 + ((ev.clientX - box.left) * W / box.width - L) / pw * (o.x1 - o.x0);
    let best = o.rows[0];
    for (const r of o.rows) if (Math.abs(r.ts + (o.bars ? o.step / 2 : 0) - t) < Math.abs(best.ts + (o.bars ? o.step / 2 : 0) - t)) best = r;
    const x = f(X(best.ts + (o.bars ? o.step / 2 : 0)));
    cursor.setAttribute("x1", x); cursor.setAttribute("x2", x); cursor.setAttribute("visibility", "visible");
    out.textContent = `${o.tfmt(best.ts)}: ${num(best.v)} ${o.unit}` + (best.lo !== undefined && best.lo !== best.hi ? ` (min ${num(best.lo)}, max ${num(best.hi)})` : "");
  });
}

function spark(values) {
  if (values.length < 2) return "";
  const lo = Math.min(...values), hi = Math.max(...values), span = hi - lo || 1;
  const pts = values.map((v, i) => `${(i * 120 / (values.length - 1)).toFixed(1)},${(22 - (v - lo) * 20 / span).toFixed(1)}`);
  return `<svg class="spark" viewBox="0 0 120 24"><polyline points="${pts.join(" ")}"/></svg>`;
}

const msOf = (v) => (v === null || v === undefined ? "—" : `${v} ms`);
function pollView(p) {
  if (!p) return `<p id="poll">Poll statistics: <span class="none">—</span></p>`;
  const kinds = Object.entries(p.errors || {}).map(([k, n]) => `${esc(k)} ${n}`).join(", ") || "none";
  const le = p.last_error ? `${esc(p.last_error.kind)}: ${esc(p.last_error.message)} (${ts(p.last_error.ts_ms)})` : "—";
  const lat = p.latency_ms || {};
  return `<table id="poll"><tr><th>Poll requests</th><th>Errors</th><th>Errors by kind</th><th>p50</th><th>p99</th><th>Last error</th></tr>` +
    `<tr><td class="requests">${esc(p.requests)}</td><td class="errors">${esc(p.error_total)}</td><td class="kinds">${kinds}</td>` +
    `<td class="p50">${msOf(lat.p50)}</td><td class="p99">${msOf(lat.p99)}</td><td class="last">${le}</td></tr></table>`;
}

async function device(id) {
  const g = nav, d = await api("/api/v1/devices/" + encodeURIComponent(id));
  if (g !== nav) return;
  const history = {}, write = me.role === "operator";
  $("#main").innerHTML = `<h2>${esc(d.id)} <small>${esc(d.name)}</small></h2>` +
    `<p>Driver ${esc(d.driver)}, status <span class="${esc(d.status)}">${esc(d.status)}</span> ${esc(d.reason)} since ${ts(d.since)}.</p>` +
    `<div id="pollbox">${pollView(d.poll)}</div>` +
    `<table id="points"><tr><th>Point</th><th>Value</th><th>Quality</th><th>Time</th><th>Trend (live)</th><th>Write</th></tr></table>` +
    (write ? `<form id="write-any">Write a point: <input name="point" placeholder="point" size="16"> = <input name="value" size="8"> <button>Write</button></form>` : "") +
    `<h3>Last 24 h (local history, 1-minute average with min-max band)</h3><div id="charts" class="charts"></div>`;
  const timer = setInterval(() => api(`/api/v1/devices/${encodeURIComponent(id)}?points=false`).then((x) => {
    if (g === nav) $("#pollbox").innerHTML = pollView(x.poll); }, () => {}), 5000);
  cleanups.push(() => clearInterval(timer));
  const table = $("#points");
  const send = (p, raw) => act(`/api/v1/devices/${encodeURIComponent(id)}/points/${encodeURIComponent(p)}`,
    {value: parse(raw)}, () => say(`Wrote ${p} = ${raw}`, true));
  if (write) $("#write-any").onsubmit = (ev) => { ev.preventDefault();
    send(ev.target.point.value.trim(), ev.target.value.value.trim()); };
  const row = (p) => {
    let tr = table.querySelector(`tr[data-point="${CSS.escape(p)}"]`);
    if (!tr) {
      tr = table.insertRow(); tr.dataset.point = p;
      tr.innerHTML = `<td>${esc(p)}</td><td class="v"></td><td class="q"></td><td class="t"></td><td class="s"></td>` +
        `<td>${write ? `<form class="w"><input name="value" size="8"><button>Write</button></form>` : ""}</td>`;
      const form = tr.querySelector("form.w");
      if (form) form.onsubmit = (ev) => { ev.preventDefault(); send(p, form.value.value.trim()); };
    }
    return tr;
  };
  const show = (p, v, q, t) => {
    const tr = row(p);
    tr.querySelector(".v").textContent = typeof v === "number" ? fmt(v) : String(v);
    tr.querySelector(".q").textContent = q; tr.querySelector(".q").className = "q " + q;
    tr.querySelector(".t").textContent = ts(t);
    if (typeof v === "number") { const h = (history[p] = history[p] || []); h.push(v);
      if (h.length > 120) h.shift(); tr.querySelector(".s").innerHTML = spark(h); }
  };
  for (const [p, x] of Object.entries(d.points)) show(p, x.value, x.quality, x.ts);
  stream = new EventSource("/api/v1/stream?device=" + encodeURIComponent(id));
  stream.addEventListener("samples", (ev) => { for (const [, p, t, v, q] of JSON.parse(ev.data)) show(p, v, q, t); });
  // Power first: the plot people look for on a device page.
  const numeric = Object.entries(d.points).filter(([, x]) => typeof x.value === "number").map(([p]) => p)
    .sort((a, b) => (/power/i.test(b) - /power/i.test(a)) || a.localeCompare(b));
  $("#charts").innerHTML = numeric.map((p) => `<figure data-chart="${esc(p)}"><figcaption>${esc(p)}</figcaption><div class="chartbox">…</div></figure>`).join("") ||
    "<p>no numeric point has a value yet</p>";
  const x1 = Date.now(), x0 = x1 - 24 * HOUR, h0 = new Date(x0); h0.setMinutes(0, 0, 0);
  const first = h0.getTime() + HOUR * (6 - h0.getHours() % 6);
  // A chart is asked for when it comes near the screen: a device with many points does not
  // make the gateway read a day of every point at once.
  const load = (p) => {
    const box = $(`figure[data-chart="${CSS.escape(p)}"] .chartbox`);
    api(`/api/v1/history?device=${encodeURIComponent(id)}&point=${encodeURIComponent(p)}&hours=24&resolution=1m`).then((r) =>
      chart(box, {label: `${p} over 24 h`, unit: (d.units || {})[p] || unitOf(p), step: 60000, x0, x1,
        rows: r.result.rows.map((b) => ({ts: b.ts, v: b.avg, lo: b.min, hi: b.max})),
        xticks: range(first, x1, 6 * HOUR), xfmt: (t) => new Date(t).toLocaleTimeString(undefined, {hour: "2-digit", minute: "2-digit"}),
        tfmt: (t) => new Date(t).toLocaleString()}),
    (e) => { box.textContent = `no history: ${e.message}`; });
  };
  const seen = new IntersectionObserver((entries) => { for (const e of entries) if (e.isIntersecting) {
    seen.unobserve(e.target); load(e.target.dataset.chart); } }, {rootMargin: "400px"});
  for (const fig of document.querySelectorAll("#charts figure")) seen.observe(fig);
  cleanups.push(() => seen.disconnect());
}
const parse = (raw) => { const n = Number(raw);
  return raw === "true" ? true : raw === "false" ? false : raw !== "" && !isNaN(n) ? n : raw; };
// Forms an operator can use; a viewer sees them disabled (and the server refuses them: 403).
const opForm = (id, inner) => `<form id="${id}"><fieldset${me.role === "operator" ? "" : " disabled"}>${inner}` +
  (me.role === "operator" ? "" : ` <small class="ro">operator only: you are a ${esc(me.role)}</small>`) + "</fieldset></form>";

async function chargers() {
  const g = nav, r = (await api("/api/v1/chargers")).result, op = me.role === "operator";
  if (g !== nav) return;
  const startForm = (c) => `<form class="start" data-c="${esc(c.charger)}"><fieldset${op && c.connected ? "" : " disabled"}>` +
    `<input name="id_tag" placeholder="id tag" size="10" required> <select name="connector">` +
    Object.keys(c.connectors).filter((n) => n !== "0").map((n) => `<option>${esc(n)}</option>`).join("") +
    `</select> <button>Start</button></fieldset></form>`;
  $("#main").innerHTML = `<h2>Chargers</h2><p>Site limit: ${r.site_limit_w ?? "none"} W` +
    (op ? "" : ` <small class="ro">start and stop: operator only, you are a ${esc(me.role)}</small>`) + `</p><table id="chargers">` +
    `<tr><th>Charger</th><th>Connection</th><th>Connectors</th><th>Session</th><th></th><th>Remote start</th></tr>` +
    r.chargers.map((c) => {
      const con = Object.entries(c.connectors).map(([n, s]) => `${n}: ${esc(s)}`).join(", ");
      const head = `<td>${esc(c.charger)}</td><td>${c.connected ? "connected " + esc(c.version) : "offline"}</td><td>${con}</td>`;
      if (!c.sessions.length) return `<tr>${head}<td>-</td><td></td><td>${startForm(c)}</td></tr>`;
      return c.sessions.map((s) => `<tr data-tx="${esc(s.transaction_id)}">${head}<td>tag ${esc(s.id_tag)}, tx ${esc(s.transaction_id)}, ` +
        `${fmt(s.energy_wh ?? 0)} Wh so far, ${fmt(s.power_w ?? "-")} W, limit ${s.limit_w ?? "none"} W, since ${ts(s.started_ts)}</td>` +
        `<td>${op ? `<button class="stop" data-c="${esc(c.charger)}" data-tx="${esc(s.transaction_id)}">Stop</button>` : ""}</td><td>${startForm(c)}</td></tr>`).join("");
    }).join("") + "</table>";
  for (const b of document.querySelectorAll("button.stop")) b.onclick = () =>
    act(`/api/v1/chargers/${encodeURIComponent(b.dataset.c)}/stop`, {transaction_id: b.dataset.tx}, () => { say("Stop sent", true); setTimeout(route, 1500); });
  for (const f of document.querySelectorAll("form.start")) f.onsubmit = (ev) => { ev.preventDefault();
    act(`/api/v1/chargers/${encodeURIComponent(f.dataset.c)}/start`, {id_tag: f.id_tag.value.trim(), connector: Number(f.connector.value)},
      () => { say(`Start sent to ${f.dataset.c}`, true); setTimeout(route, 1500); }); };
}

// Work orders and inspections: lists for everyone, forms for operators.
async function work() {
  const g = nav, [orders, insp, devs] = await Promise.all([api("/api/v1/workorders?limit=50").then((r) => r.result),
    api("/api/v1/inspections").then((r) => r.result), api("/api/v1/devices?points=false")]);
  if (g !== nav) return;
  const op = me.role === "operator", devOpts = devs.map((d) => `<option>${esc(d.id)}</option>`).join("");
  const active = (o) => !["done", "cancelled"].includes(o.status);
  const targets = insp.due.map((t, i) => `<option value="${i}">${esc(t.plan)} — ${esc(t.device || "site")}` +
    `${t.due ? " (due)" : `, due ${ts(t.due_ts)}`}</option>`).join("");
  $("#main").innerHTML = `<h2>Work orders</h2>` +
    opForm("wo-create", `<b>New work order</b> <input name="title" placeholder="title" size="28" required> ` +
      `<select name="device"><option value="">(no device)</option>${devOpts}</select> <select name="priority">` +
      ["low", "normal", "high", "urgent"].map((p) => `<option${p === "normal" ? " selected" : ""}>${p}</option>`).join("") +
      `</select> <input name="assignee" placeholder="assignee" size="10"> <input name="description" placeholder="description" size="30"> <button>Create</button>`) +
    `<table id="orders"><tr><th>Created</th><th>Title</th><th>Device</th><th>Priority</th><th>Status</th><th>Assignee</th><th></th></tr>` +
    orders.map((o) => `<tr data-order="${esc(o.order_id)}"><td>${ts(o.created_ts)}</td><td title="${esc(o.description)}">${esc(o.title)}</td>` +
      `<td>${esc(o.device || "-")}</td><td>${esc(o.priority)}</td><td class="status">${esc(o.status)}</td><td>${esc(o.assignee || "-")}</td><td>` +
      (active(o) ? `<form class="complete" data-id="${esc(o.order_id)}"><fieldset${op ? "" : " disabled"}><input name="resolution" placeholder="resolution" size="18"> <button>Complete</button></fieldset></form>`
        : esc(o.resolution || "")) + "</td></tr>").join("") + "</table>" +
    `<h2>Inspections</h2>` +
    opForm("insp", `<b>Complete an inspection</b> <select name="which">${targets}<option value="free">free-form (no plan)</option></select>` +
      ` <span id="insp-free"><select name="device"><option value="">(the site)</option>${devOpts}</select> <select name="result"><option>pass</option><option>fail</option></select></span>` +
      `<div id="checklist"></div><input name="findings" placeholder="findings" size="40"> <button>Complete</button>`) +
    `<table id="inspections"><tr><th>Completed</th><th>Plan</th><th>Device</th><th>Inspector</th><th>Result</th><th>Findings</th><th>Work order</th></tr>` +
    insp.recent.map((x) => `<tr><td>${ts(x.completed_ts)}</td><td>${esc(x.plan || "-")}</td><td>${esc(x.device || "site")}</td><td>${esc(x.inspector)}</td>` +
      `<td class="${x.result === "fail" ? "bad" : ""}">${esc(x.result)}${x.out_of_range.length ? " (" + esc(x.out_of_range.join(", ")) + ")" : ""}</td>` +
      `<td>${esc(x.findings)}</td><td>${esc(x.work_order_id || "-")}</td></tr>`).join("") + "</table>" +
    `<p class="ro">Inspections of a plan are listed here; a free-form one (no plan) is recorded only as an inspection_completed event (GET /api/v1/events).</p>`;
  const f = $("#insp");
  const plan = () => (f.elements.which.value === "free" ? null : insp.due[Number(f.elements.which.value)]);
  const checklist = () => { const t = plan(), p = t && insp.plans.find((x) => x.name === t.plan);
    $("#insp-free").hidden = !!t;
    $("#checklist").innerHTML = p ? p.checklist.map((i) => `<label>${esc(i.question)} <input name="answer" data-id="${esc(i.id)}" size="10" placeholder="` +
      esc(i.expect !== null ? `expect ${i.expect}` : [i.min, i.max].some((v) => v !== null) ? `${i.min ?? ""}..${i.max ?? ""}` : "") + `"></label>`).join("") : ""; };
  f.elements.which.onchange = checklist; checklist();
  $("#wo-create").onsubmit = (ev) => { ev.preventDefault(); const w = ev.target;
    act("/api/v1/commands/workorders.create", {title: w.elements.title.value.trim(), device: w.device.value || null, priority: w.priority.value,
      assignee: w.assignee.value.trim() || null, description: w.description.value.trim(), by: me.user}, () => { route(); say("Work order created", true); }); };
  for (const c of document.querySelectorAll("form.complete")) c.onsubmit = (ev) => { ev.preventDefault();
    act("/api/v1/commands/workorders.complete", {order_id: c.dataset.id, resolution: c.resolution.value.trim(), by: me.user},
      () => { route(); say("Work order completed", true); }); };
  f.onsubmit = (ev) => { ev.preventDefault(); const t = plan();
    const body = {inspector: me.user, findings: f.findings.value.trim()};
    if (t) { body.plan = t.plan; body.device = t.device; body.answers = {};
      for (const a of f.querySelectorAll("input[name=answer]")) if (a.value.trim() !== "") body.answers[a.dataset.id] = parse(a.value.trim());
    } else { body.device = f.device.value || null; body.result = f.result.value; }
    api("/api/v1/commands/inspections.complete", body).then((r) => { route();
      say(`Inspection recorded: ${r.result.result}` + (r.result.work_order_id ? `, work order ${r.result.work_order_id} opened` : ""), true); },
    (e) => say(`Refused (${e.status}): ${e.message}`)); };
}

async function alarms() {
  const g = nav, r = (await api("/api/v1/alarms")).result;
  if (g !== nav) return;
  $("#main").innerHTML = `<h2>Open alarms</h2><table id="open-alarms"><tr><th>Severity</th><th>Device</th><th>Message</th><th>Since</th><th>Acknowledged</th></tr>` +
    r.open.map((a) => `<tr data-alarm="${esc(a.alarm_id)}"><td>${esc(a.severity)}</td><td>${esc(a.device)}</td><td>${esc(a.message)}</td>` +
      `<td>${ts(a.started_ts)}</td><td class="ack">${a.acked_by ? "by " + esc(a.acked_by) : `<button class="ack" data-id="${esc(a.alarm_id)}">Acknowledge</button>`}</td></tr>`).join("") +
    `</table><h2>Recent</h2><table>` + r.recent.map((e) => `<tr><td>${ts(e.ts)}</td><td>${esc(e.type)}</td><td>${esc(e.device)}</td><td>${esc(e.body.message)}</td></tr>`).join("") + "</table>";
  for (const b of document.querySelectorAll("button.ack")) b.onclick = () => act(`/api/v1/alarms/${encodeURIComponent(b.dataset.id)}/ack`, {}, route);
}
async function logs(level) {
  level = level || "INFO";
  const g = nav, r = (await api(`/api/v1/logs?lines=200&level=${level}`)).result;
  if (g !== nav) return;
  $("#main").innerHTML = `<h2>Log</h2><select id="level">` + ["DEBUG", "INFO", "WARNING", "ERROR"].map((l) =>
    `<option${l === level ? " selected" : ""}>${l}</option>`).join("") + `</select> newest last, ${r.kept} kept` +
    `<table id="log">` + r.lines.map((e) => `<tr class="${e.level === "INFO" || e.level === "DEBUG" ? "" : "bad"}"><td>${ts(e.ts)}</td>` +
      `<td>${esc(e.level)}</td><td>${esc(e.logger)}</td><td><pre>${esc(e.msg)}</pre></td></tr>`).join("") + "</table>";
  $("#level").onchange = (ev) => { location.hash = "#/logs/" + ev.target.value; };
}
boot();
