"use strict";
// The technician dashboard: one page, no framework, no CDN. Data comes from /api/v1 and the
// live stream (/api/v1/stream, Server-Sent Events).
let me = null, stream = null;
const $ = (s) => document.querySelector(s);
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => "&#" + c.charCodeAt(0) + ";");
const ts = (ms) => (ms ? new Date(ms).toLocaleString() : "-");
const fmt = (v) => (typeof v === "number" ? (Number.isInteger(v) ? v : v.toFixed(2))
  : v && typeof v === "object"  // a KPI per device: "inv-1 12.5, meter 3"
    ? (Object.entries(v).map(([k, x]) => `${esc(k)} ${fmt(x ?? "-")}`).join(", ") || "-")
    : esc(v));
const say = (t) => { $("#msg").textContent = t || ""; };

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
  if (stream) { stream.close(); stream = null; }
  say("");
  const [page, arg] = location.hash.replace(/^#\/?/, "").split("/");
  const view = {device: device, chargers: chargers, alarms: alarms, logs: logs}[page] || overview;
  view(decodeURIComponent(arg || "")).catch((e) => say(e.message));
}

async function overview() {
  const o = await api("/api/v1/overview");
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
    card("KPIs today", `<span id="kpis">…</span>`) +
    `</div><table id="devices"><tr><th>Device</th><th>Driver</th><th>Status</th><th>Since</th><th>Last seen</th></tr>` +
    o.devices.list.map((d) => `<tr><td><a href="#/device/${encodeURIComponent(d.id)}">${esc(d.id)}</a> ${esc(d.name)}</td>` +
      `<td>${esc(d.driver)}</td><td class="${esc(d.status)}" title="${esc(d.reason)}">${esc(d.status)}</td>` +
      `<td>${ts(d.since)}</td><td>${ts(d.last_seen)}</td></tr>`).join("") + "</table>";
  // The plugins' calculate_custom_kpis runs when the dashboard loads; not waited for.
  api("/api/v1/kpis?period=today").then((r) => {
    const k = Object.entries(r.result.kpis);
    $("#kpis").innerHTML = k.length ? k.map(([n, v]) => `${esc(n)}: ${fmt(v ?? "-")}`).join("<br>") : "none";
  }, () => { $("#kpis").textContent = "no plugins"; });
}

function spark(values) {
  if (values.length < 2) return "";
  const lo = Math.min(...values), hi = Math.max(...values), span = hi - lo || 1;
  const pts = values.map((v, i) => `${(i * 120 / (values.length - 1)).toFixed(1)},${(22 - (v - lo) * 20 / span).toFixed(1)}`);
  return `<svg class="spark" viewBox="0 0 120 24"><polyline points="${pts.join(" ")}"/></svg>`;
}

async function device(id) {
  const d = await api("/api/v1/devices/" + encodeURIComponent(id));
  const history = {}, write = me.role === "operator";
  const poll = d.poll ? Object.entries(d.poll).map(([k, v]) => `${esc(k)}: ${esc(JSON.stringify(v))}`).join(", ")
    : "this driver keeps no poll statistics";
  $("#main").innerHTML = `<h2>${esc(d.id)} <small>${esc(d.name)}</small></h2>` +
    `<p>Driver ${esc(d.driver)}, status <span class="${esc(d.status)}">${esc(d.status)}</span> ${esc(d.reason)} since ${ts(d.since)}. Poll: ${poll}</p>` +
    `<table id="points"><tr><th>Point</th><th>Value</th><th>Quality</th><th>Time</th><th>Trend (live)</th><th>Write</th></tr></table>` +
    (write ? `<form id="write-any">Write a point: <input name="point" placeholder="point" size="16"> = <input name="value" size="8"> <button>Write</button></form>` : "");
  const table = $("#points");
  const parse = (raw) => { const num = Number(raw);
    return raw === "true" ? true : raw === "false" ? false : raw !== "" && !isNaN(num) ? num : raw; };
  const send = (p, raw) => act(`/api/v1/devices/${encodeURIComponent(id)}/points/${encodeURIComponent(p)}`,
    {value: parse(raw)}, () => say(`Wrote ${p} = ${raw}`));
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
}

async function chargers() {
  const r = (await api("/api/v1/chargers")).result, op = me.role === "operator";
  $("#main").innerHTML = `<h2>Chargers</h2><p>Site limit: ${r.site_limit_w ?? "none"} W</p><table id="chargers">` +
    `<tr><th>Charger</th><th>Connection</th><th>Connectors</th><th>Session</th><th></th></tr>` +
    r.chargers.map((c) => {
      const con = Object.entries(c.connectors).map(([n, s]) => `${n}: ${esc(s)}`).join(", ");
      const head = `<td>${esc(c.charger)}</td><td>${c.connected ? "connected " + esc(c.version) : "offline"}</td><td>${con}</td>`;
      if (!c.sessions.length) return `<tr>${head}<td>-</td><td></td></tr>`;
      return c.sessions.map((s) => `<tr data-tx="${esc(s.transaction_id)}">${head}<td>tag ${esc(s.id_tag)}, tx ${esc(s.transaction_id)}, ` +
        `${fmt(s.energy_wh ?? 0)} Wh so far, ${fmt(s.power_w ?? "-")} W, limit ${s.limit_w ?? "none"} W, since ${ts(s.started_ts)}</td>` +
        `<td>${op ? `<button class="stop" data-c="${esc(c.charger)}" data-tx="${esc(s.transaction_id)}">Stop</button>` : ""}</td></tr>`).join("");
    }).join("") + "</table>";
  for (const b of document.querySelectorAll("button.stop")) b.onclick = () =>
    act(`/api/v1/chargers/${encodeURIComponent(b.dataset.c)}/stop`, {transaction_id: b.dataset.tx}, () => { say("Stop sent"); setTimeout(route, 1500); });
}

async function alarms() {
  const r = (await api("/api/v1/alarms")).result;
  $("#main").innerHTML = `<h2>Open alarms</h2><table id="open-alarms"><tr><th>Severity</th><th>Device</th><th>Message</th><th>Since</th><th>Acknowledged</th></tr>` +
    r.open.map((a) => `<tr data-alarm="${esc(a.alarm_id)}"><td>${esc(a.severity)}</td><td>${esc(a.device)}</td><td>${esc(a.message)}</td>` +
      `<td>${ts(a.started_ts)}</td><td class="ack">${a.acked_by ? "by " + esc(a.acked_by) : `<button class="ack" data-id="${esc(a.alarm_id)}">Acknowledge</button>`}</td></tr>`).join("") +
    `</table><h2>Recent</h2><table>` + r.recent.map((e) => `<tr><td>${ts(e.ts)}</td><td>${esc(e.type)}</td><td>${esc(e.device)}</td><td>${esc(e.body.message)}</td></tr>`).join("") + "</table>";
  for (const b of document.querySelectorAll("button.ack")) b.onclick = () => act(`/api/v1/alarms/${encodeURIComponent(b.dataset.id)}/ack`, {}, route);
}
async function logs(level) {
  level = level || "INFO";
  const r = (await api(`/api/v1/logs?lines=200&level=${level}`)).result;
  $("#main").innerHTML = `<h2>Log</h2><select id="level">` + ["DEBUG", "INFO", "WARNING", "ERROR"].map((l) =>
    `<option${l === level ? " selected" : ""}>${l}</option>`).join("") + `</select> newest last, ${r.kept} kept` +
    `<table id="log">` + r.lines.map((e) => `<tr class="${e.level === "INFO" || e.level === "DEBUG" ? "" : "bad"}"><td>${ts(e.ts)}</td>` +
      `<td>${esc(e.level)}</td><td>${esc(e.logger)}</td><td><pre>${esc(e.msg)}</pre></td></tr>`).join("") + "</table>";
  $("#level").onchange = (ev) => { location.hash = "#/logs/" + ev.target.value; };
}
boot();
