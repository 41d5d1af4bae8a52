// browserd's web console: a sessions page fed by the event stream, and a
// session page with its timeline, tabs and actions. The API key stays in
// this tab's sessionStorage and goes only to this server, as a Bearer
// header. Everything shown is text (textContent), never markup.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { key: sessionStorage.getItem("browserd.key") || "", sessions: new Map(), actors: new Map(), open: null, streams: [] };

function headers() {
  return state.key ? { Authorization: `Bearer ${state.key}` } : {};
}

async function api(path, body) {
  const init = { headers: headers() };
  if (body !== undefined) {
    init.method = "POST";
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(`/console/api/${path}`, init);
  const json = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(json.error || response.statusText);
    error.status = response.status;
    throw error;
  }
  return json;
}

// Server-Sent Events over fetch (EventSource cannot send a header).
function stream(path, onEvent, onState) {
  const controller = new AbortController();
  let lastId = null;
  let stopped = false;
  const run = async () => {
    while (!stopped) {
      try {
        const query = lastId === null ? path : `${path}${path.includes("?") ? "&" : "?"}after=${lastId}`;
        const response = await fetch(`/console/api/${query}`, { headers: headers(), signal: controller.signal });
        if (!response.ok) throw new Error((await response.json().catch(() => ({}))).error || response.statusText);
        onState("live");
        const reader = response.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true });
          let cut;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, cut);
            buffer = buffer.slice(cut + 2);
            let id = null, data = "", kind = "message";
            for (const line of block.split("\n")) {
              if (line.startsWith("id: ")) id = line.slice(4);
              else if (line.startsWith("data: ")) data += line.slice(6);
              else if (line.startsWith("event: ")) kind = line.slice(7);
            }
            if (kind === "message" && data) {
              if (id !== null) lastId = id;
              onEvent(JSON.parse(data));
            }
          }
        }
      } catch (e) {
        if (stopped) return;
        onState(`reconnecting (${e.message})`);
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  };
  run();
  const handle = { stop() { stopped = true; controller.abort(); } };
  state.streams.push(handle);
  return handle;
}

function fmtTime(ts) {
  if (!ts) return "";
  const d = new Date(ts);
  return isNaN(d) ? ts : d.toLocaleTimeString();
}

function metadataText(m) {
  return Object.entries(m || {}).map(([k, v]) => `${k}=${v}`).join(", ");
}

function metadataFilter() {
  const wanted = {};
  for (const part of $("metadata-filter").value.split(",")) {
    const [k, ...rest] = part.split("=");
    if (k.trim()) wanted[k.trim()] = rest.join("=").trim();
  }
  return wanted;
}

function matches(s) {
  const status = $("status-filter").value;
  if (status && s.status !== `SESSION_STATUS_${status}`) return false;
  const wanted = metadataFilter();
  return Object.entries(wanted).every(([k, v]) => (s.metadata || {})[k] === v);
}

function short(name, prefix) {
  return (name || "").replace(prefix, "");
}

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  row.appendChild(td);
}

// "12.345678s" (protobuf JSON) as "12s", "3m 4s", "1h 2m".
function fmtDuration(text) {
  const seconds = parseFloat(text || "");
  if (!Number.isFinite(seconds)) return "";
  const s = Math.floor(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

function renderSessions() {
  const body = $("sessions").querySelector("tbody");
  body.replaceChildren();
  const rows = [...state.sessions.values()].filter(matches)
    .sort((a, b) => (b.createdAt || "").localeCompare(a.createdAt || ""));
  for (const s of rows) {
    const tr = document.createElement("tr");
    tr.dataset.id = s.id;
    const status = short(s.status, "SESSION_STATUS_");
    cell(tr, s.id, "id");
    cell(tr, status, `status-${status}`);
    cell(tr, s.project);
    cell(tr, s.nodeId || "");
    cell(tr, metadataText(s.metadata));
    cell(tr, fmtTime(s.createdAt));
    cell(tr, fmtDuration(s.usage));
    cell(tr, short(s.endReason, "END_REASON_").replace("UNSPECIFIED", ""));
    cell(tr, state.actors.get(s.id) || "");
    tr.addEventListener("click", () => openSession(s.id));
    body.appendChild(tr);
  }
  $("no-sessions").hidden = rows.length > 0;
}

function onEvent(event) {
  if (event.session) state.sessions.set(event.session.id, event.session);
  if (event.actor) state.actors.set(event.sessionId, event.actor);
  renderSessions();
  if (state.open && state.open.id === event.sessionId) renderDetails(event.session);
}

async function showSessions() {
  $("session-view").hidden = true;
  $("sessions-view").hidden = false;
  if (state.sessionsStream) return;
  // The stream first, then the list: an event between the two is not
  // missed, and events apply in order over the listed state.
  state.sessionsStream = stream("events", onEvent, (s) => { $("stream-state").textContent = `events: ${s}`; });
  const { sessions } = await api("sessions");
  for (const s of sessions) if (!state.sessions.has(s.id)) state.sessions.set(s.id, s);
  renderSessions();
}

function renderDetails(s) {
  if (!s) return;
  const status = short(s.status, "SESSION_STATUS_");
  $("session-title").textContent = `Session ${s.id} — ${status}`;
  const dl = $("details");
  dl.replaceChildren();
  const add = (k, v) => {
    if (v === undefined || v === null || v === "") return;
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = v;
    dl.append(dt, dd);
  };
  add("status", status);
  add("project", s.project);
  add("node", s.nodeId);
  add("end reason", short(s.endReason, "END_REASON_").replace("UNSPECIFIED", ""));
  add("error", s.error);
  add("created", s.createdAt);
  add("started", s.startedAt);
  add("expires", s.expiresAt);
  add("ended", s.endedAt);
  add("timeout", s.timeout);
  add("usage", fmtDuration(s.usage));
  add("keep alive", s.keepAlive ? "yes" : "no");
  add("metadata", metadataText(s.metadata));
  add("viewport", s.viewport ? `${s.viewport.width}×${s.viewport.height}` : "");
  add("browser", s.browserVersion);
  add("proxy", s.proxyUrl);
  if (s.egress) {
    const rules = [["allow", s.egress.allow], ["deny", s.egress.deny]]
      .filter(([, list]) => list && list.length)
      .map(([verb, list]) => `${verb} ${list.join(", ")}`);
    add("egress", rules.join("; "));
  }
  const u = s.egressUsage;
  if (u) {
    add("traffic", `${fmtBytes(u.bytesSent)} sent, ${fmtBytes(u.bytesReceived)} received, ` +
      `${u.requests} requests, ${u.refused} refused by the egress policy`);
  }
  const live = s.status === "SESSION_STATUS_LIVE";
  for (const id of ["live-control", "live-view-only", "extend", "release"]) $(id).disabled = !live;
  state.open.session = s;
}

/** `n` bytes (a protobuf JSON uint64 string) in binary units. */
function fmtBytes(n) {
  let value = Number(n);
  for (const unit of ["B", "KiB", "MiB", "GiB"]) {
    if (value < 1024 || unit === "GiB") return unit === "B" ? `${value} B` : `${value.toFixed(1)} ${unit}`;
    value /= 1024;
  }
}

async function loadPages(id) {
  try {
    const { session, pages } = await api(`sessions/${id}`);
    renderDetails(session);
    const ul = $("pages");
    ul.replaceChildren();
    for (const p of pages) {
      const li = document.createElement("li");
      li.textContent = `${p.title || "(untitled)"} — ${p.url}`;
      ul.appendChild(li);
    }
  } catch (e) {
    $("action-result").textContent = e.message;
  }
}

function openSession(id) {
  if (state.open && state.open.timeline) state.open.timeline.stop();
  $("sessions-view").hidden = true;
  $("session-view").hidden = false;
  $("timeline").replaceChildren();
  $("links").replaceChildren();
  $("action-result").textContent = "";
  state.open = { id };
  renderDetails(state.sessions.get(id));
  loadPages(id);
  state.open.timeline = stream(`events?session=${encodeURIComponent(id)}&after=0`, (e) => {
    const li = document.createElement("li");
    const kind = short(e.kind, "EVENT_KIND_").toLowerCase().replace(/_/g, " ");
    const to = short(e.toStatus, "SESSION_STATUS_");
    const reason = short(e.endReason, "END_REASON_").replace("UNSPECIFIED", "");
    li.textContent = `#${e.sequence} ${fmtTime(e.occurredAt)} ${kind} → ${to}${reason ? ` (${reason})` : ""}${e.actor ? ` by ${e.actor}` : ""}`;
    $("timeline").appendChild(li);
    if (e.session) renderDetails(e.session);
  }, () => {});
  clearInterval(state.pagesTimer);
  state.pagesTimer = setInterval(() => { if (state.open && state.open.id === id && !$("session-view").hidden) loadPages(id); }, 3000);
}

async function act(what) {
  const id = state.open.id;
  const result = $("action-result");
  result.textContent = "";
  try {
    if (what === "release") await api(`sessions/${id}/release`, {});
    if (what === "extend") {
      const current = parseFloat(state.open.session.timeout) || 0;
      await api(`sessions/${id}/extend`, { timeout_seconds: Math.ceil(current) + 300 });
    }
    if (what === "control" || what === "view") {
      const link = await api(`sessions/${id}/live`, { control: what === "control" });
      const a = document.createElement("a");
      a.href = link.url;
      a.target = "_blank";
      a.rel = "noopener noreferrer";
      a.className = what === "control" ? "live-link control" : "live-link view-only";
      a.textContent = `${what === "control" ? "Live view (control)" : "View-only"} link ${link.linkId}, until ${fmtTime(link.expiresAt)}`;
      const revoke = document.createElement("button");
      revoke.textContent = "Revoke";
      revoke.addEventListener("click", async () => {
        await api(`links/${link.linkId}/revoke`, {});
        revoke.disabled = true;
        revoke.textContent = "Revoked";
      });
      const row = document.createElement("div");
      row.append(a, revoke);
      $("links").appendChild(row);
      if (what === "control") window.open(link.url, "_blank", "noopener,noreferrer");
    }
  } catch (e) {
    result.textContent = e.message;
    result.className = "error";
  }
}

async function start() {
  try {
    const who = await api("whoami");
    $("who").textContent = `${who.admin ? "admin" : "project"} ${who.project} (${who.actor})`;
    $("sign-in").hidden = true;
    $("sign-out").hidden = !state.key;
    showSessions();
  } catch (e) {
    if (e.status !== 401) {
      $("sign-in-error").textContent = e.message;
    } else if (state.key) {
      $("sign-in-error").textContent = "That key was refused (unknown or revoked).";
      state.key = "";
      sessionStorage.removeItem("browserd.key");
    }
    $("sign-in").hidden = false;
    $("sessions-view").hidden = true;
  }
}

$("sign-in").addEventListener("submit", (e) => {
  e.preventDefault();
  state.key = $("key").value.trim();
  $("key").value = "";
  sessionStorage.setItem("browserd.key", state.key);
  start();
});
$("sign-out").addEventListener("click", () => {
  sessionStorage.removeItem("browserd.key");
  for (const s of state.streams) s.stop();
  location.reload();
});
$("status-filter").addEventListener("change", renderSessions);
$("metadata-filter").addEventListener("input", renderSessions);
$("back").addEventListener("click", (e) => { e.preventDefault(); if (state.open && state.open.timeline) state.open.timeline.stop(); state.open = null; showSessions(); });
$("release").addEventListener("click", () => act("release"));
$("extend").addEventListener("click", () => act("extend"));
$("live-control").addEventListener("click", () => act("control"));
$("live-view-only").addEventListener("click", () => act("view"));
start();
