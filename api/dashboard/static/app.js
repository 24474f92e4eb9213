// Street-lighting control dashboard (docs/dashboard.md).
//
// Plain JavaScript with no dependencies: the machines that run it have no internet access.
// Everything shown comes from the control API (/api/v1) with the user's bearer token, which is
// kept in sessionStorage (one tab, gone when the tab closes). Live updates arrive on the
// server-sent event stream /api/v1/live/stream, read with fetch() because EventSource cannot
// send an Authorization header.
//
// Rules: every text from the API is inserted as text (never as HTML); times from the API are
// UTC epoch nanoseconds (shown in the council's time zone); levels are fractions 0..1 (shown
// as %). Logging out clears every view, so the next user of the tab sees nothing of the last.

const API = "/api/v1";
const TOKEN_KEY = "streetlight.token";
const SVG_NS = "http://www.w3.org/2000/svg";
const PAGE = 500;
const EVENT_LOG_MAX = 50;
const RING_MS = 2000;
const JOB_POLL_MS = 400;
const SERIES_COLOURS = ["#2d5bd7", "#d97706", "#067647", "#9e1f63", "#5b6472", "#0e7490", "#b42318"];

let state = freshState();
let streamGeneration = 0;

function freshState() {
  return {
    token: null,
    me: null,
    council: null,
    clockOffsetMs: 0,
    lamps: new Map(), // lamp_id -> lamp record
    groups: [],
    levels: new Map(), // lamp_id -> level_frac (live)
    dots: new Map(), // lamp_id -> SVG circle
    positions: new Map(), // lamp_id -> [x_m, y_m]
    view: { scale: 1, tx: 0, ty: 0, fitted: false },
    selectedLamp: null,
    selectedGroup: null,
    chartTimer: null,
    policy: null, // {id, name, number, document, valid, issues, versions}
    jobGeneration: 0,
    streamAbort: null,
  };
}

// --- DOM helpers -------------------------------------------------------------------------------

const $ = (selector, root = document) => root.querySelector(selector);

function setAttrs(el, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "testid") {
      el.setAttribute("data-testid", value);
    } else if (key === "text") {
      el.textContent = String(value);
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
}

function appendAll(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

/** An HTML element; strings among the children become text nodes. */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  appendAll(el, children);
  return el;
}

/** Replace an element's children (arrays are flattened, strings become text). */
function fill(el, ...children) {
  el.replaceChildren();
  appendAll(el, children);
  return el;
}

/** An SVG element. */
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  appendAll(el, children);
  return el;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const enc = encodeURIComponent;

// --- formatting --------------------------------------------------------------------------------

const nsToMs = (ns) => Number(ns) / 1e6;
const msToNs = (ms) => (BigInt(Math.round(ms)) * 1000000n).toString();
const serverNowMs = () => Date.now() + state.clockOffsetMs;

function fmtTime(ns) {
  if (ns === null || ns === undefined) return "—";
  const options = { dateStyle: "short", timeStyle: "medium" };
  if (state.council) options.timeZone = state.council.tz;
  return new Intl.DateTimeFormat(undefined, options).format(new Date(nsToMs(ns)));
}

function fmtClock(ms) {
  const options = { hour: "2-digit", minute: "2-digit" };
  if (state.council) options.timeZone = state.council.tz;
  return new Intl.DateTimeFormat(undefined, options).format(new Date(ms));
}

function fmtNum(value, digits = 1) {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  return Number(value).toLocaleString(undefined, {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

const fmtPct = (frac, digits = 1) =>
  frac === null || frac === undefined ? "—" : `${fmtNum(frac * 100, digits)} %`;

/** Today's date (YYYY-MM-DD) in the council's time zone, shifted by ``days``. */
function localDate(days = 0) {
  const options = { year: "numeric", month: "2-digit", day: "2-digit" };
  if (state.council) options.timeZone = state.council.tz;
  const today = new Intl.DateTimeFormat("en-CA", options).format(new Date(serverNowMs()));
  const date = new Date(`${today}T12:00:00Z`);
  date.setUTCDate(date.getUTCDate() + days);
  return date.toISOString().slice(0, 10);
}

/** Off is dark grey; lit levels ramp from a dim amber to bright yellow at full output. */
function levelColour(level) {
  if (level === null || level === undefined) return "#4b5563";
  if (level <= 0) return "#3a3a3a";
  const low = [92, 74, 22];
  const high = [255, 236, 40];
  const t = Math.min(1, Math.max(0, level));
  const mix = low.map((c, i) => Math.round(c + (high[i] - c) * t));
  return `rgb(${mix[0]}, ${mix[1]}, ${mix[2]})`;
}

// --- API ---------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.detail) || `the service answered HTTP ${status}`);
    this.status = status;
    this.body = body || {};
    this.issues = (body && body.errors) || [];
  }
}

async function api(path, options = {}) {
  const headers = { Accept: "application/json" };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  let body;
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(options.json);
  } else if (options.form) {
    body = new URLSearchParams(options.form);
  }
  let url = API + path;
  if (options.query) {
    const query = new URLSearchParams();
    for (const [key, value] of Object.entries(options.query)) {
      if (value !== null && value !== undefined && value !== "") query.set(key, String(value));
    }
    const text = query.toString();
    if (text) url += `?${text}`;
  }
  const token = state.token;
  const response = await fetch(url, { method: options.method || "GET", headers, body });
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") || "";
  const data = type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) {
    const problem = typeof data === "object" ? data : { detail: String(data) };
    if (response.status === 401 && token && token === state.token && !options.login) {
      logout(`You have been logged out: ${problem.detail || "the session ended"}`);
    }
    throw new ApiError(response.status, problem);
  }
  return data;
}

/** Every item of a paginated list. */
async function fetchAll(path, query = {}) {
  const items = [];
  for (let offset = 0; ; ) {
    const page = await api(path, { query: { ...query, limit: PAGE, offset } });
    items.push(...page.items);
    offset += page.items.length;
    if (page.items.length === 0 || offset >= page.total) return items;
  }
}

/** An error as DOM: its detail, and its located problems if any. */
function errorView(error, testid = "error") {
  const issues = error instanceof ApiError ? error.issues : [];
  return h(
    "div",
    { class: "error", testid },
    error.message,
    issues.length
      ? h("ul", {}, issues.map((i) => h("li", {}, h("code", {}, i.where), `: ${i.message}`)))
      : null,
  );
}

// --- login and session -------------------------------------------------------------------------

function showLogin(message = "") {
  $("#app").hidden = true;
  $("#login").hidden = false;
  $("[data-testid=login-error]").textContent = message;
  $("[data-testid=login-username]").focus();
}

async function onLogin(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const error = $("[data-testid=login-error]");
  error.textContent = "";
  const data = new FormData(form);
  try {
    const token = await api("/auth/token", {
      method: "POST",
      form: { username: data.get("username"), password: data.get("password") },
      login: true,
    });
    sessionStorage.setItem(TOKEN_KEY, token.access_token);
    form.reset();
    await start(token.access_token);
  } catch (err) {
    error.textContent = err.message;
  }
}

async function start(token) {
  clearViews();
  state = freshState();
  state.token = token;
  let me;
  let council;
  try {
    const sent = Date.now();
    const health = await api("/health");
    const received = Date.now();
    state.clockOffsetMs = nsToMs(health.time_ns) - (sent + received) / 2;
    [me, council] = await Promise.all([api("/auth/me"), api("/council")]);
  } catch (err) {
    if (state.token === token) logout(err.message);
    return;
  }
  state.me = me;
  state.council = council;
  $("#login").hidden = true;
  $("#app").hidden = false;
  $("[data-testid=council-name]").textContent = council.name;
  $("[data-testid=user-name]").textContent = `${me.actor.replace(/^user:/, "")} (${me.role})`;
  startStream();
  // The map's lamps and groups first: every view uses them (group lists, lamp names).
  await loadMap();
  if (state.token !== token) return;
  route();
  await Promise.all([refreshAlarmBadge(), loadOverrides()]);
}

const canEdit = () => state.me && state.me.role !== "viewer";

function logout(message = "") {
  streamGeneration += 1;
  if (state.streamAbort) state.streamAbort.abort();
  if (state.chartTimer) clearTimeout(state.chartTimer);
  sessionStorage.removeItem(TOKEN_KEY);
  state = freshState();
  clearViews();
  setStreamStatus("offline");
  showLogin(message);
}

/** Empty every view so nothing of the last user's council stays in the page. */
function clearViews() {
  for (const selector of [
    "#map",
    "#legend",
    "#lamp-panel",
    "#group-panel",
    "#override-list",
    "#event-log",
    "#group-select",
    "#view-policies",
    "#view-reports",
    "#view-alarms",
  ]) {
    $(selector).replaceChildren();
  }
  $("#lamp-panel").hidden = true;
  $("#group-panel").hidden = true;
  $("#lamp-count").textContent = "";
  $("#override-list-error").textContent = "";
  $("[data-testid=council-name]").textContent = "";
  $("[data-testid=user-name]").textContent = "";
  const badge = $("[data-testid=alarm-badge]");
  badge.textContent = "";
  badge.hidden = true;
  for (const view of ["policies", "reports", "alarms"]) {
    $(`#view-${view}`).dataset.ready = "";
  }
}

// --- routing -----------------------------------------------------------------------------------

const VIEWS = ["map", "policies", "reports", "alarms"];

function route() {
  if (!state.token) return;
  const name = VIEWS.includes(location.hash.slice(1)) ? location.hash.slice(1) : "map";
  for (const view of VIEWS) {
    $(`#view-${view}`).hidden = view !== name;
    $(`[data-testid=nav-${view}]`).classList.toggle("active", view === name);
  }
  if (name === "map") {
    if (!state.view.fitted && state.positions.size) fitMap();
  } else if (name === "policies") {
    showPolicies();
  } else if (name === "reports") {
    showReports();
  } else if (name === "alarms") {
    showAlarms();
  }
}

// --- live stream -------------------------------------------------------------------------------

function setStreamStatus(status) {
  const el = $("[data-testid=stream-status]");
  el.dataset.state = status;
  el.textContent = status;
}

function startStream() {
  const generation = ++streamGeneration;
  const abort = new AbortController();
  state.streamAbort = abort;
  const token = state.token;
  (async () => {
    let delayMs = 1000;
    while (generation === streamGeneration) {
      setStreamStatus("connecting");
      try {
        const response = await fetch(`${API}/live/stream`, {
          headers: { Authorization: `Bearer ${token}`, Accept: "text/event-stream" },
          signal: abort.signal,
          cache: "no-store",
        });
        if (response.status === 401) {
          const problem = await response.json().catch(() => ({}));
          if (generation === streamGeneration) {
            logout(`You have been logged out: ${problem.detail || "the session ended"}`);
          }
          return;
        }
        if (!response.ok || !response.body) throw new Error(`stream: HTTP ${response.status}`);
        // "live" only once bytes arrive: the server subscribes to the feed before it sends any,
        // so from then on nothing published is missed.
        await readEvents(
          response.body,
          (name, data) => {
            if (generation === streamGeneration) onLiveEvent(name, data);
          },
          () => {
            if (generation !== streamGeneration) return;
            setStreamStatus("live");
            delayMs = 1000;
          },
        );
      } catch (err) {
        if (abort.signal.aborted || generation !== streamGeneration) return;
        console.warn("live stream interrupted:", err);
      }
      if (generation !== streamGeneration) return;
      setStreamStatus("offline");
      await sleep(delayMs);
      delayMs = Math.min(delayMs * 2, 30000);
    }
  })();
}

/** Parse a text/event-stream body (WHATWG HTML, "Server-sent events") and dispatch events. */
async function readEvents(body, dispatch, onOpen) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let name = "message";
  let data = [];
  let opened = false;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    if (!opened) {
      opened = true;
      onOpen();
    }
    buffer += value;
    for (;;) {
      const end = buffer.search(/\r\n|\r|\n/);
      if (end < 0) break;
      // A lone "\r" at the very end may be half of "\r\n": wait for the next chunk.
      if (buffer[end] === "\r" && end === buffer.length - 1) break;
      const line = buffer.slice(0, end);
      buffer = buffer.slice(end + (buffer.startsWith("\r\n", end) ? 2 : 1));
      if (line === "") {
        if (data.length) {
          try {
            dispatch(name, JSON.parse(data.join("\n")));
          } catch (err) {
            console.warn("bad live event", name, err);
          }
        }
        name = "message";
        data = [];
        continue;
      }
      if (line.startsWith(":")) continue; // heartbeat comment
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let text = colon < 0 ? "" : line.slice(colon + 1);
      if (text.startsWith(" ")) text = text.slice(1);
      if (field === "event") name = text;
      else if (field === "data") data.push(text);
    }
  }
}

function onLiveEvent(name, data) {
  if (name === "snapshot" || name === "levels") {
    applyLevels(data.levels || {});
  } else if (name === "presence") {
    flashPresence(data.lamp_ids || []);
    logEvent(data.time_ns, `presence at ${data.source_id}: ${(data.lamp_ids || []).join(", ")}`, "presence");
  } else if (name === "alarm") {
    const what = data.open ? "raised" : "cleared";
    logEvent(data.time_ns, `alarm ${what}: ${data.kind} on ${data.scope} ${data.source_id}`, "alarm");
    refreshAlarmBadge();
    if (!$("#view-alarms").hidden) loadAlarms();
  } else if (name === "dropped") {
    logEvent(null, `missed ${data.dropped} live event(s); reloading levels`, "dropped");
    reloadLevels();
  } else if (name === "end") {
    logEvent(null, `live stream ended: ${data.reason}`, "end");
  }
}

function logEvent(timeNs, text, kind) {
  const list = $("#event-log");
  const when = timeNs ? fmtTime(timeNs) : fmtTime(msToNs(serverNowMs()));
  list.prepend(h("li", { testid: "event-log-entry", "data-kind": kind }, `${when} ${text}`));
  while (list.children.length > EVENT_LOG_MAX) list.lastElementChild.remove();
}

async function reloadLevels() {
  try {
    const items = await fetchAll("/live/lamps");
    const levels = {};
    for (const item of items) if (item.level_frac !== null) levels[item.lamp_id] = item.level_frac;
    applyLevels(levels);
  } catch (err) {
    logEvent(null, `could not reload levels: ${err.message}`, "error");
  }
}

// --- map ---------------------------------------------------------------------------------------

async function loadMap() {
  const token = state.token;
  let lamps;
  let groups;
  try {
    [lamps, groups] = await Promise.all([fetchAll("/lamps"), fetchAll("/groups")]);
  } catch (err) {
    if (token === state.token) $("#lamp-count").textContent = `Could not load lamps: ${err.message}`;
    return;
  }
  if (token !== state.token) return;
  state.lamps = new Map(lamps.map((lamp) => [lamp.lamp_id, lamp]));
  state.groups = groups;
  renderGroupSelect();
  renderLegend();
  renderMap();
}

function renderGroupSelect() {
  const select = $("#group-select");
  fill(select, 
    h("option", { value: "" }, "— none —"),
    state.groups.map((g) => h("option", { value: g.id }, `${g.name} (${g.lamps})`)),
  );
}

function renderLegend() {
  const stops = [0.05, 0.25, 0.5, 0.75, 1].map((level, i) =>
    s("stop", { offset: `${i * 25}%`, "stop-color": levelColour(level) }),
  );
  fill($("#legend"), 
    h(
      "span",
      {},
      s(
        "svg",
        { width: 14, height: 14 },
        s("circle", { cx: 7, cy: 7, r: 5, fill: levelColour(null), stroke: "#9aa0a6", "stroke-dasharray": "2 1.5" }),
      ),
      " no data",
    ),
    h("span", {}, s("svg", { width: 14, height: 14 }, s("circle", { cx: 7, cy: 7, r: 5, fill: levelColour(0) })), " off"),
    h(
      "span",
      {},
      "dim ",
      s(
        "svg",
        { width: 140, height: 12 },
        s("defs", {}, s("linearGradient", { id: "level-ramp" }, stops)),
        s("rect", { width: 140, height: 12, rx: 3, fill: "url(#level-ramp)" }),
      ),
      " full output",
    ),
    h("span", {}, s("svg", { width: 14, height: 14 }, s("circle", { cx: 7, cy: 7, r: 5, fill: "none", stroke: "#38bdf8", "stroke-width": 2 })), " presence"),
  );
}

function renderMap() {
  const svg = $("#map");
  svg.replaceChildren();
  state.dots = new Map();
  state.positions = new Map();
  const lamps = [...state.lamps.values()];
  $("#lamp-count").textContent = `${lamps.length} lamps`;
  if (lamps.length === 0) {
    svg.append(s("text", { x: 20, y: 30, class: "empty" }, "This council has no lamps yet."));
    return;
  }
  // Equirectangular projection about the centre, x scaled by cos(latitude): metres, y down.
  const lats = lamps.map((l) => l.lat_deg);
  const lons = lamps.map((l) => l.lon_deg);
  const lat0 = (Math.min(...lats) + Math.max(...lats)) / 2;
  const lon0 = (Math.min(...lons) + Math.max(...lons)) / 2;
  const mPerDegLat = 111320;
  const mPerDegLon = 111320 * Math.cos((lat0 * Math.PI) / 180);
  const dots = s("g", { class: "dots" });
  const rings = s("g", { class: "rings", id: "rings" });
  for (const lamp of lamps) {
    state.positions.set(lamp.lamp_id, [(lamp.lon_deg - lon0) * mPerDegLon, -(lamp.lat_deg - lat0) * mPerDegLat]);
    const level = state.levels.has(lamp.lamp_id) ? state.levels.get(lamp.lamp_id) : null;
    const dot = s(
      "circle",
      {
        class: "lamp",
        r: 5,
        testid: "lamp-dot",
        "data-lamp-id": lamp.lamp_id,
        "data-level": level === null ? "" : String(level),
        fill: levelColour(level),
        tabindex: 0,
      },
      s("title", {}, lamp.lamp_id),
    );
    state.dots.set(lamp.lamp_id, dot);
    dots.append(dot);
  }
  svg.append(dots, rings);
  state.view.fitted = false;
  if (!$("#view-map").hidden) fitMap();
  if (state.selectedGroup) markGroup(state.selectedGroup);
}

function fitMap() {
  const svg = $("#map");
  const box = svg.getBoundingClientRect();
  if (!box.width || !box.height || state.positions.size === 0) return;
  const xs = [...state.positions.values()].map((p) => p[0]);
  const ys = [...state.positions.values()].map((p) => p[1]);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const pad = 30;
  const scale = Math.min((box.width - 2 * pad) / Math.max(x1 - x0, 50), (box.height - 2 * pad) / Math.max(y1 - y0, 50));
  state.view = {
    scale,
    tx: box.width / 2 - scale * ((x0 + x1) / 2),
    ty: box.height / 2 - scale * ((y0 + y1) / 2),
    fitted: true,
  };
  placeDots();
}

/** Put every dot and ring at its screen position (dots keep their size when zooming). */
function placeDots() {
  const { scale, tx, ty } = state.view;
  for (const [id, dot] of state.dots) {
    const [x, y] = state.positions.get(id);
    dot.setAttribute("cx", (tx + scale * x).toFixed(1));
    dot.setAttribute("cy", (ty + scale * y).toFixed(1));
  }
  for (const ring of $("#map").querySelectorAll(".ring")) {
    const pos = state.positions.get(ring.dataset.lampId);
    if (!pos) continue;
    ring.setAttribute("cx", (tx + scale * pos[0]).toFixed(1));
    ring.setAttribute("cy", (ty + scale * pos[1]).toFixed(1));
  }
}

function installMapControls() {
  const svg = $("#map");
  let drag = null;
  svg.addEventListener(
    "wheel",
    (event) => {
      if (!state.view.fitted) return;
      event.preventDefault();
      const box = svg.getBoundingClientRect();
      const px = event.clientX - box.left;
      const py = event.clientY - box.top;
      const factor = Math.exp(-event.deltaY * 0.0015);
      const scale = Math.min(Math.max(state.view.scale * factor, 1e-4), 1e3);
      const k = scale / state.view.scale;
      state.view.tx = px - (px - state.view.tx) * k;
      state.view.ty = py - (py - state.view.ty) * k;
      state.view.scale = scale;
      placeDots();
    },
    { passive: false },
  );
  svg.addEventListener("pointerdown", (event) => {
    drag = { x: event.clientX, y: event.clientY, moved: false };
  });
  svg.addEventListener("pointermove", (event) => {
    if (!drag) return;
    const dx = event.clientX - drag.x;
    const dy = event.clientY - drag.y;
    if (!drag.moved && Math.hypot(dx, dy) < 3) return;
    if (!drag.moved) svg.setPointerCapture(event.pointerId);
    drag.moved = true;
    svg.classList.add("dragging");
    state.view.tx += dx;
    state.view.ty += dy;
    drag.x = event.clientX;
    drag.y = event.clientY;
    placeDots();
  });
  const stop = (event) => {
    if (!drag) return;
    const wasDrag = drag.moved;
    drag = null;
    svg.classList.remove("dragging");
    if (wasDrag) return;
    const dot = event.target.closest ? event.target.closest("[data-lamp-id]") : null;
    if (dot && event.type === "pointerup") selectLamp(dot.dataset.lampId);
  };
  svg.addEventListener("pointerup", stop);
  svg.addEventListener("pointercancel", stop);
  svg.addEventListener("keydown", (event) => {
    const dot = event.target.closest ? event.target.closest("[data-lamp-id]") : null;
    if (dot && (event.key === "Enter" || event.key === " ")) selectLamp(dot.dataset.lampId);
  });
  $("#map-fit").addEventListener("click", fitMap);
  window.addEventListener("resize", () => {
    if (!$("#view-map").hidden && state.positions.size) placeDots();
  });
}

function applyLevels(levels) {
  for (const [id, raw] of Object.entries(levels)) {
    const level = Number(raw);
    state.levels.set(id, level);
    const dot = state.dots.get(id);
    if (dot) {
      dot.setAttribute("data-level", String(level));
      dot.setAttribute("fill", levelColour(level));
    }
    if (id === state.selectedLamp) {
      const el = $("[data-testid=live-level]");
      if (el) el.textContent = fmtPct(level);
      scheduleChartRefresh();
    }
  }
  if (state.selectedGroup) renderGroupLevels();
}

function flashPresence(lampIds) {
  const rings = $("#rings");
  if (!rings) return;
  const { scale, tx, ty } = state.view;
  for (const id of lampIds) {
    const pos = state.positions.get(id);
    if (!pos) continue;
    const ring = s("circle", {
      class: "ring",
      testid: "presence-ring",
      "data-lamp-id": id,
      cx: (tx + scale * pos[0]).toFixed(1),
      cy: (ty + scale * pos[1]).toFixed(1),
      r: 6,
    });
    rings.append(ring);
    const dot = state.dots.get(id);
    if (dot) dot.dataset.presenceCount = String(Number(dot.dataset.presenceCount || 0) + 1);
    setTimeout(() => ring.remove(), RING_MS);
  }
}

// --- lamp details ------------------------------------------------------------------------------

function fields(entries, testid) {
  return h(
    "dl",
    { class: "fields", testid },
    entries.map(([label, value, id]) => [h("dt", {}, label), h("dd", { testid: id }, value)]),
  );
}

async function selectLamp(lampId) {
  const lamp = state.lamps.get(lampId);
  if (!lamp) return;
  for (const dot of state.dots.values()) dot.classList.remove("selected");
  const dot = state.dots.get(lampId);
  if (dot) dot.classList.add("selected");
  state.selectedLamp = lampId;
  const panel = $("#lamp-panel");
  panel.hidden = false;
  const level = state.levels.has(lampId) ? state.levels.get(lampId) : null;
  const windowSelect = h(
    "select",
    { testid: "chart-window", onchange: () => loadLampChart(lampId) },
    [
      ["1", "last hour"],
      ["6", "last 6 h"],
      ["24", "last 24 h"],
      ["168", "last 7 days"],
    ].map(([value, label]) => h("option", { value, selected: value === "6" }, label)),
  );
  fill(panel, 
    h("h2", {}, "Lamp ", h("span", { testid: "lamp-title" }, lampId)),
    fields(
      [
        ["Street", lamp.street || "—"],
        ["Group", lamp.group_name || "—"],
        ["Class", lamp.lighting_class],
        ["Rated power", `${fmtNum(lamp.rated_power_w, 0)} W`],
        ["Lamp type", lamp.lamp_type || "—"],
        ["Gateway", lamp.gateway_id || "—"],
        ["Position", `${lamp.lat_deg.toFixed(5)}, ${lamp.lon_deg.toFixed(5)}`],
      ],
      "lamp-fields",
    ),
    h("h3", {}, "Live"),
    fields(
      [
        ["Level", fmtPct(level), "live-level"],
        ["Power", "…", "live-power"],
        ["Energy meter", "…", "live-energy"],
        ["Status", "…", "live-status"],
        ["Override", "…", "live-override"],
        ["Open alarms", "…", "live-alarms"],
        ["Last reading", "…", "live-time"],
      ],
      "lamp-live",
    ),
    h("h3", {}, "Level and power ", windowSelect),
    h("div", { id: "lamp-chart", testid: "lamp-chart-box" }),
    lamp.group_id
      ? h("p", {}, h("button", { type: "button", class: "secondary", testid: "lamp-group-link", onclick: () => selectGroup(lamp.group_id) }, `Group ${lamp.group_name}`))
      : null,
    canEdit() ? overrideForm({ lamp_id: lampId }) : null,
  );
  await Promise.all([loadLampLive(lampId), loadLampChart(lampId)]);
}

async function loadLampLive(lampId) {
  try {
    const live = await api(`/live/lamps/${enc(lampId)}`);
    if (state.selectedLamp !== lampId) return;
    const set = (id, text) => {
      const el = $(`[data-testid=${id}]`);
      if (el) el.textContent = text;
    };
    if (live.level_frac !== null && !state.levels.has(lampId)) set("live-level", fmtPct(live.level_frac));
    set("live-power", live.power_w === null ? "—" : `${fmtNum(live.power_w, 1)} W`);
    set("live-energy", live.energy_wh === null ? "—" : `${fmtNum(live.energy_wh / 1000, 3)} kWh`);
    set("live-status", live.status_flags.length ? live.status_flags.join(", ") : live.status === null ? "—" : "ok");
    set("live-override", live.override_level_frac === null ? "none" : fmtPct(live.override_level_frac));
    set("live-alarms", live.open_alarms.length ? live.open_alarms.join(", ") : "none");
    set("live-time", fmtTime(live.time_ns));
  } catch (err) {
    if (state.selectedLamp !== lampId) return;
    for (const id of ["live-power", "live-energy", "live-status", "live-override", "live-alarms", "live-time"]) {
      const el = $(`[data-testid=${id}]`);
      if (el) el.textContent = "—";
    }
    const box = $("#lamp-chart");
    if (box && err instanceof ApiError && err.status === 503) fill(box, errorView(err, "lamp-live-error"));
  }
}

function scheduleChartRefresh() {
  if (state.chartTimer) return;
  const lampId = state.selectedLamp;
  state.chartTimer = setTimeout(() => {
    state.chartTimer = null;
    if (state.selectedLamp === lampId) {
      loadLampLive(lampId);
      loadLampChart(lampId);
    }
  }, 1500);
}

async function loadLampChart(lampId) {
  const box = $("#lamp-chart");
  const select = $("[data-testid=chart-window]");
  if (!box || !select) return;
  const hours = Number(select.value);
  const endMs = serverNowMs() + 1000;
  const startMs = endMs - hours * 3600e3;
  const query = { start_ns: msToNs(startMs), end_ns: msToNs(endMs) };
  let level;
  let power;
  try {
    [level, power] = await Promise.all([
      api(`/live/lamps/${enc(lampId)}/series`, { query: { ...query, kind: "level_frac" } }),
      api(`/live/lamps/${enc(lampId)}/series`, { query: { ...query, kind: "power_w" } }),
    ]);
  } catch (err) {
    if (state.selectedLamp === lampId) fill(box, errorView(err, "lamp-chart-error"));
    return;
  }
  if (state.selectedLamp !== lampId) return;
  fill(box, 
    lineChart(startMs, endMs, [
      { name: "level", cls: "level", unit: "%", max: 1, scale: 100, points: level.map(([t, v]) => [nsToMs(t), v]) },
      { name: "power", cls: "power", unit: "W", points: power.map(([t, v]) => [nsToMs(t), v]) },
    ]),
  );
}

/** A step-line chart of two series over [startMs, endMs]: level on the left axis, power right. */
function lineChart(startMs, endMs, series) {
  const width = 370;
  const height = 170;
  const m = { left: 38, right: 44, top: 10, bottom: 24 };
  const plotW = width - m.left - m.right;
  const plotH = height - m.top - m.bottom;
  const x = (t) => m.left + ((t - startMs) / (endMs - startMs)) * plotW;
  const svg = s("svg", { class: "chart", testid: "lamp-chart", width, height, viewBox: `0 0 ${width} ${height}` });
  svg.append(
    s("line", { class: "axis", x1: m.left, y1: m.top + plotH, x2: m.left + plotW, y2: m.top + plotH }),
    s("line", { class: "axis", x1: m.left, y1: m.top, x2: m.left, y2: m.top + plotH }),
    s("line", { class: "axis", x1: m.left + plotW, y1: m.top, x2: m.left + plotW, y2: m.top + plotH }),
    s("text", { x: m.left, y: height - 6 }, fmtClock(startMs)),
    s("text", { x: m.left + plotW, y: height - 6, "text-anchor": "end" }, fmtClock(endMs)),
  );
  const total = series.reduce((n, one) => n + one.points.length, 0);
  if (total === 0) {
    svg.append(s("text", { x: m.left + plotW / 2, y: m.top + plotH / 2, "text-anchor": "middle", testid: "chart-empty" }, "no readings in this window"));
  }
  series.forEach((one, k) => {
    const max = one.max ?? niceMax(Math.max(0, ...one.points.map((p) => p[1])));
    const y = (v) => m.top + plotH - (Math.min(Math.max(v, 0), max) / max) * plotH;
    const axisX = k === 0 ? m.left - 4 : m.left + plotW + 4;
    const anchor = k === 0 ? "end" : "start";
    svg.append(
      s("text", { x: axisX, y: m.top + 8, "text-anchor": anchor, class: `${one.cls}-label` }, `${fmtNum(max * (one.scale || 1), 0)} ${one.unit}`),
      s("text", { x: axisX, y: m.top + plotH, "text-anchor": anchor }, `0 ${one.unit}`),
    );
    const vertices = [];
    one.points.forEach(([t, v], i) => {
      if (i > 0) vertices.push(`${x(t).toFixed(1)},${y(one.points[i - 1][1]).toFixed(1)}`);
      vertices.push(`${x(t).toFixed(1)},${y(v).toFixed(1)}`);
    });
    svg.append(
      s("polyline", {
        class: one.cls,
        testid: `chart-${one.name}`,
        "data-points": one.points.length,
        "data-last": one.points.length ? String(one.points[one.points.length - 1][1]) : "",
        points: vertices.join(" "),
      }),
    );
  });
  return svg;
}

function niceMax(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

// --- overrides ---------------------------------------------------------------------------------

function overrideForm(target) {
  const message = h("p", { class: "ok", testid: "override-message" });
  const error = h("div", { testid: "override-error-box" });
  const form = h(
    "form",
    { class: "inline", testid: "override-form" },
    h("strong", {}, target.lamp_id ? "Override this lamp" : "Override the group"),
    h("label", {}, "Level %", h("input", { type: "number", name: "level", min: 0, max: 100, step: 1, value: 100, required: true, testid: "override-level" })),
    h("label", {}, "for", h("input", { type: "number", name: "minutes", min: 1, max: 527040, step: 1, value: 60, required: true, testid: "override-duration" }), "min"),
    h("label", {}, "Reason", h("input", { type: "text", name: "reason", maxlength: 2000, testid: "override-reason" })),
    h("button", { type: "submit", testid: "override-submit" }, "Hold level"),
    message,
    error,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    message.textContent = "";
    error.replaceChildren();
    const data = new FormData(form);
    try {
      const created = await api("/overrides", {
        method: "POST",
        json: {
          ...target,
          level_frac: Number(data.get("level")) / 100,
          duration_s: Number(data.get("minutes")) * 60,
          reason: String(data.get("reason") || ""),
        },
      });
      message.textContent = `Override ${created.id} holds ${fmtPct(created.level_frac, 0)} until ${fmtTime(created.expires_ns)}.`;
      await loadOverrides();
      if (target.lamp_id && state.selectedLamp === target.lamp_id) loadLampLive(target.lamp_id);
    } catch (err) {
      fill(error, errorView(err, "override-error"));
    }
  });
  return form;
}

async function loadOverrides() {
  const token = state.token;
  const list = $("#override-list");
  const problem = $("#override-list-error");
  let items;
  try {
    items = await fetchAll("/overrides", { state: "current" });
  } catch (err) {
    if (token === state.token) problem.textContent = err.message;
    return;
  }
  if (token !== state.token) return;
  problem.textContent = "";
  fill(list, 
    items.map((o) =>
      h(
        "tr",
        { testid: "override-row", "data-override-id": o.id, "data-lamp-id": o.lamp_id ?? "", "data-group-id": o.group_id ?? "" },
        h("td", {}, o.lamp_id ? `lamp ${o.lamp_id}` : `group ${o.group_name}`),
        h("td", { class: "num" }, o.level_frac === null ? "resume" : fmtPct(o.level_frac, 0)),
        h("td", {}, o.state),
        h("td", {}, o.expires_ns === null ? "until cancelled" : fmtTime(o.expires_ns)),
        h("td", {}, o.reason),
        h(
          "td",
          {},
          canEdit()
            ? h("button", { type: "button", class: "danger", testid: "cancel-override", onclick: () => cancelOverride(o.id) }, "Cancel")
            : null,
        ),
      ),
    ),
  );
  if (items.length === 0) list.append(h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No overrides in force.")));
}

async function cancelOverride(id) {
  try {
    await api(`/overrides/${id}`, { method: "DELETE" });
  } catch (err) {
    $("#override-list-error").textContent = err.message;
  }
  await loadOverrides();
  if (state.selectedLamp) loadLampLive(state.selectedLamp);
}

// --- group details -----------------------------------------------------------------------------

function markGroup(groupId) {
  const svg = $("#map");
  svg.classList.toggle("group-focus", Boolean(groupId));
  for (const [id, dot] of state.dots) {
    const lamp = state.lamps.get(id);
    dot.classList.toggle("in-group", Boolean(groupId) && lamp && lamp.group_id === groupId);
  }
}

async function selectGroup(groupId) {
  const id = Number(groupId) || null;
  state.selectedGroup = id;
  $("#group-select").value = id ? String(id) : "";
  markGroup(id);
  const panel = $("#group-panel");
  if (!id) {
    panel.hidden = true;
    panel.replaceChildren();
    return;
  }
  let group;
  let activations;
  try {
    [group, activations] = await Promise.all([api(`/groups/${id}`), api(`/groups/${id}/activations`, { query: { limit: 10 } })]);
  } catch (err) {
    panel.hidden = false;
    fill(panel, errorView(err, "group-error"));
    return;
  }
  if (state.selectedGroup !== id) return;
  panel.hidden = false;
  fill(panel, 
    h("h2", {}, "Group ", h("span", { testid: "group-title" }, group.name)),
    fields(
      [
        ["Description", group.description || "—"],
        ["Lamps", String(group.lamps), "group-lamps"],
        ["Policy in force", group.active ? `${group.active.policy_name} v${group.active.version} since ${fmtTime(group.active.activated_ns)}` : "none (fail-bright default)", "group-policy"],
      ],
      "group-fields",
    ),
    h("h3", {}, "Live levels of its lamps"),
    h("div", { id: "group-levels" }),
    h("h3", {}, "Recent activations"),
    activationTable(activations.items),
    canEdit() ? overrideForm({ group_id: id }) : null,
  );
  renderGroupLevels();
}

function activationTable(items) {
  if (!items.length) return h("p", { class: "muted", testid: "activation-none" }, "No policy has been activated on this group.");
  return h(
    "table",
    { class: "grid", testid: "activation-list" },
    h("thead", {}, h("tr", {}, ["When", "Policy", "In force", "By", "Note"].map((t) => h("th", {}, t)))),
    h(
      "tbody",
      {},
      items.map((a) =>
        h(
          "tr",
          { testid: "activation-row", "data-active": String(a.active), "data-version": a.version },
          h("td", {}, fmtTime(a.activated_ns)),
          h("td", {}, `${a.policy_name} v${a.version}`),
          h("td", {}, a.active ? "yes" : "no"),
          h("td", {}, a.activated_by),
          h("td", {}, a.rolled_back_from ? `roll-back (replaced activation ${a.rolled_back_from})` : a.dry_run_id ? "dry-run checked" : ""),
        ),
      ),
    ),
  );
}

/** A bar chart of how many of the group's lamps are off, at each level band, or unknown. */
function renderGroupLevels() {
  const box = $("#group-levels");
  if (!box || !state.selectedGroup) return;
  const bands = [
    ["no data", (l) => l === null],
    ["off", (l) => l !== null && l <= 0],
    ["1–25 %", (l) => l > 0 && l <= 0.25],
    ["26–50 %", (l) => l > 0.25 && l <= 0.5],
    ["51–75 %", (l) => l > 0.5 && l <= 0.75],
    ["76–100 %", (l) => l > 0.75],
  ];
  const counts = bands.map(() => 0);
  for (const lamp of state.lamps.values()) {
    if (lamp.group_id !== state.selectedGroup) continue;
    const level = state.levels.has(lamp.lamp_id) ? state.levels.get(lamp.lamp_id) : null;
    const k = bands.findIndex(([, test]) => test(level));
    if (k >= 0) counts[k] += 1;
  }
  fill(box, 
    barChart({
      testid: "group-levels-chart",
      categories: bands.map(([label]) => label),
      series: ["lamps"],
      value: (category) => counts[bands.findIndex(([label]) => label === category)],
      unit: "lamps",
      digits: 0,
      width: 370,
      height: 150,
      colours: ["#d97706"],
    }),
  );
}

// --- charts ------------------------------------------------------------------------------------

/** Grouped bars: one group of bars per category, one bar per series. */
function barChart({ testid, categories, series, value, unit, digits = 1, width = 680, height = 230, colours = SERIES_COLOURS }) {
  const m = { left: 56, right: 10, top: 12, bottom: 40 };
  const plotW = width - m.left - m.right;
  const plotH = height - m.top - m.bottom;
  const values = categories.flatMap((c) => series.map((name) => value(c, name) ?? 0));
  const max = niceMax(Math.max(0, ...values));
  const svg = s("svg", { class: "chart", testid, width, height, viewBox: `0 0 ${width} ${height}` });
  svg.append(
    s("line", { class: "axis", x1: m.left, y1: m.top + plotH, x2: m.left + plotW, y2: m.top + plotH }),
    s("line", { class: "axis", x1: m.left, y1: m.top, x2: m.left, y2: m.top + plotH }),
    s("text", { x: m.left - 4, y: m.top + 8, "text-anchor": "end" }, `${fmtNum(max, digits)}`),
    s("text", { x: m.left - 4, y: m.top + plotH, "text-anchor": "end" }, "0"),
    s("text", { x: 4, y: m.top + plotH / 2 }, unit),
  );
  const slot = plotW / Math.max(categories.length, 1);
  const barW = Math.max(2, (slot * 0.8) / Math.max(series.length, 1));
  categories.forEach((category, i) => {
    series.forEach((name, k) => {
      const v = value(category, name);
      if (v === null || v === undefined) return;
      const barH = (v / max) * plotH;
      svg.append(
        s(
          "rect",
          {
            testid: "bar",
            "data-category": category,
            "data-series": name,
            "data-value": String(v),
            x: (m.left + i * slot + slot * 0.1 + k * barW).toFixed(1),
            y: (m.top + plotH - barH).toFixed(1),
            width: (barW - 1).toFixed(1),
            height: Math.max(barH, 0).toFixed(1),
            fill: colours[k % colours.length],
          },
          s("title", {}, `${category} · ${name}: ${fmtNum(v, digits)} ${unit}`),
        ),
      );
    });
    if (categories.length <= 16 || i % Math.ceil(categories.length / 16) === 0) {
      svg.append(s("text", { class: "bar-label", x: (m.left + i * slot + slot / 2).toFixed(1), y: m.top + plotH + 14, "text-anchor": "middle" }, category.length > 10 ? category.slice(5) : category));
    }
  });
  const legend = h(
    "div",
    { class: "legend" },
    series.length > 1
      ? series.map((name, k) => {
          const swatch = h("span", { class: "legend-swatch" });
          swatch.style.background = colours[k % colours.length];
          return h("span", {}, swatch, name);
        })
      : null,
  );
  return h("div", {}, svg, legend);
}

// --- policies ----------------------------------------------------------------------------------

const NEW_POLICY_TEMPLATE = `schema_version: 1
name: my-policy
version: 1
description: ""
lighting_classes: [P3, P4, P5]

switching:
  on: {event: lux}
  off: {event: lux}
  lux_on: 35
  lux_off: 18

calendar:
  - profile: default

profiles:
  default:
    steps:
      - {from: "22:00", to: "06:00", level_frac: 0.75}

fail_safe_level_frac: 1.0
`;

function showPolicies() {
  const view = $("#view-policies");
  if (view.dataset.ready === "yes") {
    loadPolicyList();
    return;
  }
  view.dataset.ready = "yes";
  const editor = h("textarea", { id: "policy-editor", testid: "policy-editor", spellcheck: "false", wrap: "off", "aria-label": "Policy document (YAML)" });
  const gutter = h("ol", { class: "gutter", id: "policy-gutter", testid: "policy-gutter", "aria-hidden": "true" });
  editor.addEventListener("input", () => {
    renderGutter([]);
    $("#policy-dirty").textContent = editorDirty() ? "unsaved changes" : "";
  });
  editor.addEventListener("scroll", () => {
    gutter.scrollTop = editor.scrollTop;
  });
  const groupOptions = [h("option", { value: "" }, "— choose a group —"), state.groups.map((g) => h("option", { value: g.id }, g.name))];
  const edit = canEdit();
  fill(view, 
    h(
      "aside",
      { class: "card" },
      h("h2", {}, "Policies"),
      edit ? h("p", {}, h("button", { type: "button", testid: "policy-new", onclick: newPolicy }, "New policy")) : null,
      h(
        "table",
        { class: "grid" },
        h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", {}, "Versions"), h("th", {}, "Active on"))),
        h("tbody", { id: "policy-list", testid: "policy-list" }),
      ),
      h("p", { class: "error", id: "policy-list-error" }),
    ),
    h(
      "section",
      { class: "card" },
      h(
        "div",
        { class: "editor-head" },
        h("h2", { testid: "policy-title", id: "policy-title" }, "New policy"),
        h("label", {}, "Version", h("select", { id: "policy-version", testid: "policy-version", onchange: (e) => openPolicy(state.policy.id, Number(e.target.value)) })),
        h("span", { class: "muted", id: "policy-dirty", testid: "policy-dirty" }),
      ),
      h("div", { class: "code" }, gutter, editor),
      h(
        "div",
        { class: "actions" },
        h("button", { type: "button", testid: "policy-validate", onclick: validatePolicy }, "Validate"),
        edit ? h("button", { type: "button", class: "secondary", testid: "policy-save", onclick: () => savePolicy() }, "Save version") : null,
      ),
      h("div", { id: "policy-result", testid: "policy-result" }),
      edit
        ? h(
            "fieldset",
            {},
            h("legend", {}, "Try it and roll it out"),
            h(
              "div",
              { class: "actions" },
              h("label", {}, "Group", h("select", { id: "policy-group", testid: "policy-group", onchange: loadGroupActivations }, groupOptions)),
              h("label", {}, "Nights", h("input", { type: "number", id: "dry-run-nights", testid: "dry-run-nights", min: 1, max: 14, value: 1 })),
              h("label", {}, "First night", h("input", { type: "date", id: "dry-run-first-night", testid: "dry-run-first-night" })),
            ),
            h(
              "div",
              { class: "actions" },
              h("button", { type: "button", testid: "policy-simulate", onclick: simulatePolicy }, "Simulate"),
              h("button", { type: "button", class: "secondary", testid: "policy-activate", onclick: activatePolicy }, "Activate on group"),
              h("button", { type: "button", class: "danger", testid: "policy-rollback", onclick: rollbackGroup }, "Roll back group"),
            ),
            h(
              "div",
              { id: "dry-run", testid: "dry-run", hidden: true },
              h("progress", { id: "dry-run-progress", testid: "dry-run-progress", max: 1, value: 0 }),
              " ",
              h("span", { id: "dry-run-stage", testid: "dry-run-stage" }),
            ),
            h("div", { id: "policy-message", testid: "policy-message" }),
            h("div", { id: "comparison", testid: "comparison" }),
            h("h3", {}, "Activations of the group"),
            h("div", { id: "group-activations", testid: "group-activations" }),
          )
        : null,
    ),
  );
  newPolicy();
  loadPolicyList();
}

async function loadPolicyList() {
  const token = state.token;
  let policies;
  try {
    policies = await fetchAll("/policies");
  } catch (err) {
    if (token === state.token) $("#policy-list-error").textContent = err.message;
    return;
  }
  if (token !== state.token) return;
  const names = new Map(state.groups.map((g) => [g.id, g.name]));
  fill($("#policy-list"), 
    policies.map((p) =>
      h(
        "tr",
        {
          class: `clickable${state.policy && state.policy.id === p.id ? " chosen" : ""}`,
          testid: "policy-row",
          "data-policy-id": p.id,
          "data-policy-name": p.name,
          onclick: () => openPolicy(p.id),
        },
        h("td", {}, p.name),
        h("td", { class: "num" }, `${p.versions}${p.latest.valid ? "" : " (latest invalid)"}`),
        h("td", {}, p.active_on_groups.map((id) => names.get(id) || `#${id}`).join(", ") || "—"),
      ),
    ),
  );
  if (!policies.length) $("#policy-list").append(h("tr", {}, h("td", { colspan: 3, class: "muted" }, "No policies yet.")));
}

function newPolicy() {
  state.policy = null;
  $("#policy-title").textContent = "New policy";
  $("#policy-version").replaceChildren();
  $("#policy-version").disabled = true;
  $("#policy-editor").value = NEW_POLICY_TEMPLATE;
  $("#policy-dirty").textContent = "";
  $("#policy-result").replaceChildren();
  renderGutter([]);
  for (const row of document.querySelectorAll("[data-testid=policy-row]")) row.classList.remove("chosen");
}

function editorDirty() {
  const text = $("#policy-editor").value;
  return state.policy ? text !== state.policy.document : text !== NEW_POLICY_TEMPLATE;
}

async function openPolicy(policyId, number = null) {
  let policy;
  let versions;
  let version;
  try {
    [policy, versions] = await Promise.all([api(`/policies/${policyId}`), fetchAll(`/policies/${policyId}/versions`)]);
    const wanted = number ?? policy.latest.number;
    version = await api(`/policies/${policyId}/versions/${wanted}`);
  } catch (err) {
    fill($("#policy-result"), errorView(err, "policy-error"));
    return;
  }
  state.policy = {
    id: policy.id,
    name: policy.name,
    number: version.number,
    document: version.document,
    valid: version.valid,
    issues: version.issues,
    versions,
  };
  $("#policy-title").textContent = policy.name;
  const select = $("#policy-version");
  select.disabled = false;
  fill(select, 
    versions.map((v) =>
      h("option", { value: v.number, selected: v.number === version.number }, `v${v.number}${v.valid ? "" : ` (invalid, ${v.issues} problem(s))`}${version.active_on_groups.length && v.number === version.number ? " — active" : ""}`),
    ),
  );
  $("#policy-editor").value = version.document;
  $("#policy-dirty").textContent = "";
  for (const row of document.querySelectorAll("[data-testid=policy-row]")) {
    row.classList.toggle("chosen", Number(row.dataset.policyId) === policy.id);
  }
  if (version.valid) {
    fill($("#policy-result"), h("p", { class: "ok", testid: "policy-valid" }, `Version ${version.number} is valid.`));
    renderGutter([]);
  } else {
    showIssues(`Version ${version.number} was saved with problems; it cannot be simulated or activated.`, version.issues);
  }
}

/** Mark the lines that issues point at in the gutter. */
function renderGutter(lines) {
  const editor = $("#policy-editor");
  const gutter = $("#policy-gutter");
  if (!editor || !gutter) return;
  const count = editor.value.split(/\r\n|\r|\n/).length;
  const marked = new Map();
  for (const { line, message } of lines) {
    if (line) marked.set(line, [...(marked.get(line) || []), message]);
  }
  const items = [];
  for (let n = 1; n <= count; n += 1) {
    const messages = marked.get(n);
    items.push(h("li", { class: messages ? "issue" : null, "data-line": n, testid: messages ? "gutter-issue" : null, title: messages ? messages.join("\n") : null }, String(n)));
  }
  fill(gutter, ...items);
  gutter.scrollTop = editor.scrollTop;
}

function showIssues(summary, issues) {
  const text = $("#policy-editor").value;
  const located = issues.map((issue) => ({ ...issue, line: locateIssue(text, issue) }));
  located.sort((a, b) => (a.line ?? 1e9) - (b.line ?? 1e9));
  fill($("#policy-result"), 
    h("p", { class: "error", testid: "policy-invalid" }, summary),
    h(
      "ul",
      { class: "issues", testid: "policy-issues" },
      located.map((issue) =>
        h(
          "li",
          { testid: "policy-issue", "data-line": issue.line ?? "", "data-where": issue.where, onclick: () => issue.line && goToLine(issue.line) },
          issue.line ? h("span", { class: "line" }, `line ${issue.line}`) : h("span", { class: "line" }, "document"),
          " ",
          h("code", {}, issue.where),
          ": ",
          h("span", { testid: "policy-issue-message" }, issue.message),
        ),
      ),
    ),
  );
  renderGutter(located.map((issue) => ({ line: issue.line, message: `${issue.where}: ${issue.message}` })));
}

function goToLine(line) {
  const editor = $("#policy-editor");
  const lines = editor.value.split("\n");
  const start = lines.slice(0, line - 1).reduce((n, l) => n + l.length + 1, 0);
  editor.focus();
  editor.setSelectionRange(start, start + (lines[line - 1] || "").length);
  editor.scrollTop = Math.max(0, (line - 5) * 18);
}

/**
 * The 1-based line of the document an issue points at, or null.
 *
 * YAML errors carry "(line N, column M)" in their message; other issues carry a field path
 * (``profiles.part_night.steps[0].level_frac``) that is followed through the document's block
 * structure by indentation, and into one-line flow mappings ({from: ..., level_frac: ...}).
 * Where the path cannot be followed to the end, the deepest line reached is given.
 */
function locateIssue(text, issue) {
  const fromMessage = /\blines? (\d+)/.exec(issue.message);
  if (fromMessage) return Number(fromMessage[1]);
  const segments = [];
  for (const match of String(issue.where).matchAll(/([^.[\]]+)|\[(\d+)\]/g)) {
    segments.push(match[2] !== undefined ? Number(match[2]) : match[1]);
  }
  if (!segments.length || ["document", "body", "request"].includes(segments[0])) return null;
  const lines = text.split(/\r\n|\r|\n/);
  const entries = (node) => {
    const out = [];
    if (node.inline) out.push(node.inline);
    for (let i = node.start; i < node.end; i += 1) {
      const raw = lines[i];
      const trimmed = raw.trim();
      if (!trimmed || trimmed.startsWith("#")) continue;
      out.push({ line: i, col: raw.length - raw.trimStart().length, text: trimmed });
    }
    return out;
  };
  const blockEnd = (from, col, allowDashAtCol) => {
    for (let i = from; i < lines.length; i += 1) {
      const raw = lines[i];
      const trimmed = raw.trim();
      if (!trimmed || trimmed.startsWith("#")) continue;
      const indent = raw.length - raw.trimStart().length;
      if (indent < col || (indent === col && !(allowDashAtCol && trimmed.startsWith("-")))) return i;
    }
    return lines.length;
  };
  const keyPattern = (key) => new RegExp(`^["']?${key.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}["']?\\s*:(\\s|$)`);
  let node = { start: 0, end: lines.length, inline: null };
  let flowLine = null;
  let best = null;
  for (const segment of segments) {
    if (flowLine !== null) {
      // Inside a one-line flow collection: the line is as precise as it gets.
      continue;
    }
    const children = entries(node);
    if (!children.length) break;
    const col = children[0].col;
    const level = children.filter((e) => e.col === col);
    let hit = null;
    if (typeof segment === "number") {
      const items = level.filter((e) => e.text === "-" || e.text.startsWith("- "));
      const item = items[segment];
      if (item) {
        const rest = item.text.slice(1).trimStart();
        const restCol = item.col + (item.text.length - rest.length);
        hit = {
          line: item.line,
          node: { start: item.line + 1, end: blockEnd(item.line + 1, item.col + 1, false), inline: rest ? { line: item.line, col: restCol, text: rest } : null },
          flow: rest.startsWith("{") || rest.startsWith("["),
        };
      } else if (level.length === 1 && level[0].text.startsWith("[")) {
        hit = { line: level[0].line, node, flow: true };
      }
    } else {
      const entry = level.find((e) => keyPattern(segment).test(e.text));
      if (entry) {
        const value = entry.text.replace(keyPattern(segment), "").trim();
        hit = {
          line: entry.line,
          node: { start: entry.line + 1, end: blockEnd(entry.line + 1, entry.col, true), inline: null },
          flow: value.startsWith("{") || value.startsWith("["),
        };
      }
    }
    if (!hit) break;
    best = hit.line;
    node = hit.node;
    if (hit.flow) flowLine = hit.line;
  }
  return best === null ? null : best + 1;
}

async function validatePolicy() {
  const document = $("#policy-editor").value;
  try {
    const result = await api("/policies/validate", { method: "POST", json: { document } });
    fill($("#policy-result"), h("p", { class: "ok", testid: "policy-valid" }, `Valid: ${result.name}, document version ${result.version}.`));
    renderGutter([]);
    return true;
  } catch (err) {
    if (err instanceof ApiError && err.issues.length) showIssues(err.message, err.issues);
    else fill($("#policy-result"), errorView(err, "policy-error"));
    return false;
  }
}

/** Save the editor as a new version (or a new policy); returns the saved version or null. */
async function savePolicy() {
  const document = $("#policy-editor").value;
  try {
    if (state.policy) {
      const version = await api(`/policies/${state.policy.id}/versions`, { method: "POST", json: { document } });
      await openPolicy(state.policy.id, version.number);
    } else {
      const policy = await api("/policies", { method: "POST", json: { document } });
      await openPolicy(policy.id, policy.latest.number);
    }
    await loadPolicyList();
    return state.policy;
  } catch (err) {
    if (err instanceof ApiError && err.issues.length) showIssues(err.message, err.issues);
    else fill($("#policy-result"), errorView(err, "policy-error"));
    return null;
  }
}

function chosenGroup() {
  const select = $("#policy-group");
  const id = Number(select.value);
  if (!id) {
    setPolicyMessage(null, "Choose the group first.");
    return null;
  }
  return { id, name: select.selectedOptions[0].textContent };
}

function setPolicyMessage(ok, error = null) {
  const box = $("#policy-message");
  if (error instanceof Error) fill(box, errorView(error, "policy-action-error"));
  else if (error) fill(box, h("p", { class: "error", testid: "policy-action-error" }, error));
  else fill(box, h("p", { class: "ok", testid: "policy-action-ok" }, ok));
}

async function simulatePolicy() {
  const group = chosenGroup();
  if (!group) return;
  let policy = state.policy;
  if (!policy || editorDirty()) {
    policy = await savePolicy();
    if (!policy) return;
  }
  if (!policy.valid) {
    setPolicyMessage(null, `Version ${policy.number} is invalid; correct it before simulating.`);
    return;
  }
  const body = { group_id: group.id, nights: Number($("#dry-run-nights").value) || 1 };
  if ($("#dry-run-first-night").value) body.first_night = $("#dry-run-first-night").value;
  const generation = ++state.jobGeneration;
  const token = state.token;
  const progress = $("#dry-run-progress");
  const stage = $("#dry-run-stage");
  $("#dry-run").hidden = false;
  $("#comparison").replaceChildren();
  progress.value = 0;
  stage.textContent = "starting";
  setPolicyMessage(`Simulating ${policy.name} v${policy.number} on group ${group.name}…`);
  let job;
  try {
    job = await api(`/policies/${policy.id}/versions/${policy.number}/dry-runs`, { method: "POST", json: body });
    while (job.status === "queued" || job.status === "running") {
      progress.value = job.progress_frac;
      stage.textContent = `${job.status}: ${job.stage}`;
      await sleep(JOB_POLL_MS);
      if (generation !== state.jobGeneration || token !== state.token) return;
      job = await api(`/jobs/${job.id}`);
    }
    progress.value = job.progress_frac;
    stage.textContent = job.status;
    if (job.status !== "succeeded") {
      setPolicyMessage(null, `The dry run failed: ${job.error}`);
      return;
    }
    const report = await api(`/jobs/${job.id}/report`);
    if (generation !== state.jobGeneration || token !== state.token) return;
    renderComparison(report, job);
    setPolicyMessage(`Dry run of ${policy.name} v${policy.number} on group ${group.name} finished.`);
  } catch (err) {
    setPolicyMessage(null, err);
  }
}

function renderComparison(report, job) {
  const currency = report.currency;
  const columns = [
    // The service names the policy in force "<name> v<n> (active)"; say so where it does not.
    ["Policy", (p) => p.policy + (p.policy === report.current_policy && !p.policy.endsWith("(active)") ? " (current)" : ""), "policy"],
    ["Energy kWh", (p) => fmtNum(p.energy_kwh, 2), "energy"],
    [`Cost ${currency}`, (p) => fmtNum(p.cost, 2), "cost"],
    ["CO2 kg", (p) => fmtNum(p.co2_kg, 2), "co2"],
    ["Saving vs all-night", (p) => fmtPct(p.saving_vs_all_night_frac), "saving-all-night"],
    ["Saving vs current", (p) => fmtPct(p.saving_vs_current_frac), "saving-current"],
    ["Below required", (p) => fmtPct(p.compliance.below_required_share, 2), "below-required"],
    ["Users before boost", (p) => String(p.compliance.users_before_boost), "before-boost"],
    ["Dark user-s", (p) => fmtNum(p.compliance.dark_user_seconds, 0), "dark"],
    ["Commands", (p) => String(p.commands), "commands"],
    ["Switch-ons", (p) => String(p.switch_ons), "switch-ons"],
    ["Burning h", (p) => fmtNum(p.burning_hours, 1), "burning"],
  ];
  fill($("#comparison"), 
    h("h3", {}, "This policy against the one in force"),
    h(
      "p",
      { class: "muted", testid: "comparison-summary" },
      `${report.lamps} lamps, nights ${report.nights.join(", ")}; all-night reference ${fmtNum(report.all_night_energy_kwh, 2)} kWh; ` +
        (report.current_policy ? `current policy: ${report.current_policy}.` : "no policy in force on the group, so no current policy to compare with."),
    ),
    h(
      "table",
      { class: "grid", testid: "comparison-table", "data-job-id": job.id },
      h("thead", {}, h("tr", {}, columns.map(([label], k) => h("th", { class: k ? "num" : null }, label)))),
      h(
        "tbody",
        {},
        report.policies.map((p) =>
          h(
            "tr",
            { testid: "comparison-row", "data-policy": p.policy, class: p.policy === report.current_policy ? "current" : null },
            columns.map(([, get, key], k) => h("td", { class: k ? "num" : null, "data-col": key }, get(p))),
          ),
        ),
      ),
    ),
  );
}

async function activatePolicy() {
  const group = chosenGroup();
  if (!group) return;
  const policy = state.policy;
  if (!policy) {
    setPolicyMessage(null, "Save the policy first, then activate one of its versions.");
    return;
  }
  if (editorDirty()) {
    setPolicyMessage(null, "The editor has unsaved changes; save them as a version (or pick a saved version) first.");
    return;
  }
  try {
    const act = await api(`/policies/${policy.id}/versions/${policy.number}/activate`, { method: "POST", json: { group_id: group.id } });
    setPolicyMessage(`${act.policy_name} v${act.version} is now in force on group ${act.group_name}.`);
  } catch (err) {
    setPolicyMessage(null, err);
  }
  await Promise.all([loadGroupActivations(), loadPolicyList(), refreshGroups()]);
}

async function rollbackGroup() {
  const group = chosenGroup();
  if (!group) return;
  try {
    const act = await api(`/groups/${group.id}/rollback`, { method: "POST", json: {} });
    setPolicyMessage(`Group ${act.group_name} rolled back to ${act.policy_name} v${act.version}.`);
  } catch (err) {
    setPolicyMessage(null, err);
  }
  await Promise.all([loadGroupActivations(), loadPolicyList(), refreshGroups()]);
}

async function loadGroupActivations() {
  const box = $("#group-activations");
  const id = Number($("#policy-group").value);
  if (!box) return;
  if (!id) {
    box.replaceChildren();
    return;
  }
  try {
    const page = await api(`/groups/${id}/activations`, { query: { limit: 10 } });
    fill(box, activationTable(page.items));
  } catch (err) {
    fill(box, errorView(err, "activation-error"));
  }
}

async function refreshGroups() {
  try {
    state.groups = await fetchAll("/groups");
    const chosen = $("#group-select").value;
    renderGroupSelect();
    $("#group-select").value = chosen;
    if (state.selectedGroup) selectGroup(state.selectedGroup);
  } catch (err) {
    console.warn("could not reload groups", err);
  }
}

// --- reports -----------------------------------------------------------------------------------

function showReports() {
  const view = $("#view-reports");
  if (view.dataset.ready === "yes") return;
  view.dataset.ready = "yes";
  const form = h(
    "form",
    { class: "report-form card", testid: "report-form" },
    h("label", {}, "From", h("input", { type: "date", name: "first_day", required: true, value: localDate(-6), testid: "report-first-day" })),
    h("label", {}, "to", h("input", { type: "date", name: "last_day", required: true, value: localDate(0), testid: "report-last-day" })),
    h("label", {}, "Group", h("select", { name: "group_id", testid: "report-group" }, h("option", { value: "" }, "all groups"), state.groups.map((g) => h("option", { value: g.id }, g.name)))),
    h("button", { type: "submit", testid: "report-load" }, "Show"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    loadReports(form);
  });
  fill(view, 
    form,
    h("section", { class: "card", testid: "energy-report" }, h("h2", {}, "Energy (metered), kWh per day and group"), h("div", { id: "energy-report" })),
    h("section", { class: "card", testid: "compliance-report" }, h("h2", {}, "Compliance: presence detections at a lit lamp below its class's floor"), h("div", { id: "compliance-report" })),
  );
  loadReports(form);
}

async function loadReports(form) {
  const data = new FormData(form);
  const query = { first_day: data.get("first_day"), last_day: data.get("last_day"), group_id: data.get("group_id") };
  const energyBox = $("#energy-report");
  const complianceBox = $("#compliance-report");
  fill(energyBox, h("p", { class: "muted" }, "Loading…"));
  fill(complianceBox, h("p", { class: "muted" }, "Loading…"));
  const [energy, compliance] = await Promise.allSettled([api("/reports/energy", { query }), api("/reports/compliance", { query })]);
  const groupName = (row) => row.group_name ?? "(no group)";
  if (energy.status === "fulfilled") {
    const rows = energy.value.rows;
    const days = [...new Set(rows.map((r) => r.day))];
    const groups = [...new Set(rows.map(groupName))];
    const byKey = new Map(rows.map((r) => [`${r.day}|${groupName(r)}`, r.energy_kwh]));
    fill(energyBox, 
      barChart({ testid: "energy-chart", categories: days, series: groups, value: (d, g) => byKey.get(`${d}|${g}`) ?? null, unit: "kWh", digits: 2 }),
      h(
        "table",
        { class: "grid", testid: "energy-table" },
        h("thead", {}, h("tr", {}, ["Day", "Group", "Lamps", "Reporting", "Energy kWh"].map((t, k) => h("th", { class: k > 1 ? "num" : null }, t)))),
        h(
          "tbody",
          {},
          rows.map((r) =>
            h(
              "tr",
              { testid: "energy-row", "data-day": r.day, "data-group": groupName(r), "data-energy-kwh": String(r.energy_kwh) },
              h("td", {}, r.day),
              h("td", {}, groupName(r)),
              h("td", { class: "num" }, String(r.lamps)),
              h("td", { class: "num" }, String(r.lamps_reporting)),
              h("td", { class: "num" }, fmtNum(r.energy_kwh, 3)),
            ),
          ),
        ),
      ),
    );
  } else {
    fill(energyBox, errorView(energy.reason, "energy-error"));
  }
  if (compliance.status === "fulfilled") {
    const rows = compliance.value.rows;
    const days = [...new Set(rows.map((r) => r.day))];
    const groups = [...new Set(rows.map(groupName))];
    const byKey = new Map(rows.map((r) => [`${r.day}|${groupName(r)}`, r.below_floor_share]));
    fill(complianceBox, 
      barChart({
        testid: "compliance-chart",
        categories: days,
        series: groups,
        value: (d, g) => {
          const share = byKey.get(`${d}|${g}`);
          return share === null || share === undefined ? null : share * 100;
        },
        unit: "% below",
        digits: 1,
      }),
      h(
        "table",
        { class: "grid", testid: "compliance-table" },
        h("thead", {}, h("tr", {}, ["Day", "Group", "Policy", "Detections", "Judged", "Below floor", "Share below"].map((t, k) => h("th", { class: k > 2 ? "num" : null }, t)))),
        h(
          "tbody",
          {},
          rows.map((r) =>
            h(
              "tr",
              { testid: "compliance-row", "data-day": r.day, "data-group": groupName(r) },
              h("td", {}, r.day),
              h("td", {}, groupName(r)),
              h("td", {}, r.policy_id === null ? "default floors" : `#${r.policy_id} v${r.version}`),
              h("td", { class: "num" }, String(r.presence_readings)),
              h("td", { class: "num" }, String(r.judged)),
              h("td", { class: "num" }, String(r.below_floor)),
              h("td", { class: "num", "data-col": "share" }, fmtPct(r.below_floor_share)),
            ),
          ),
        ),
      ),
    );
  } else {
    fill(complianceBox, errorView(compliance.reason, "compliance-error"));
  }
}

// --- alarms ------------------------------------------------------------------------------------

function showAlarms() {
  const view = $("#view-alarms");
  if (view.dataset.ready !== "yes") {
    view.dataset.ready = "yes";
    fill(view, 
      h(
        "section",
        { class: "card" },
        h(
          "div",
          { class: "report-form" },
          h("h2", {}, "Alarms"),
          h(
            "label",
            {},
            "Show",
            h(
              "select",
              { id: "alarm-state", testid: "alarm-state", onchange: loadAlarms },
              h("option", { value: "open" }, "open"),
              h("option", { value: "closed" }, "closed"),
              h("option", { value: "all" }, "all"),
            ),
          ),
        ),
        h(
          "table",
          { class: "grid", testid: "alarm-table" },
          h("thead", {}, h("tr", {}, ["Kind", "Lamp", "Gateway", "Started", "Ended", "Detail"].map((t) => h("th", {}, t)))),
          h("tbody", { id: "alarm-list", testid: "alarm-list" }),
        ),
        h("p", { class: "error", id: "alarm-error", testid: "alarm-error" }),
      ),
    );
  }
  loadAlarms();
}

async function loadAlarms() {
  const list = $("#alarm-list");
  if (!list) return;
  const token = state.token;
  try {
    const alarms = await fetchAll("/alarms", { state: $("#alarm-state").value });
    if (token !== state.token) return;
    $("#alarm-error").textContent = "";
    fill(list, 
      alarms.map((a) =>
        h(
          "tr",
          { testid: "alarm-row", "data-alarm-id": a.alarm_id, "data-open": String(a.open) },
          h("td", {}, a.kind),
          h("td", {}, a.lamp_id ?? "—"),
          h("td", {}, a.gateway_id ?? "—"),
          h("td", {}, fmtTime(a.started_ns)),
          h("td", {}, a.ended_ns === null ? "open" : fmtTime(a.ended_ns)),
          h("td", {}, a.detail),
        ),
      ),
    );
    if (!alarms.length) list.append(h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No alarms.")));
  } catch (err) {
    if (token === state.token) $("#alarm-error").textContent = err.message;
  }
}

async function refreshAlarmBadge() {
  const token = state.token;
  try {
    const page = await api("/alarms", { query: { state: "open", limit: 1 } });
    if (token !== state.token) return;
    const badge = $("[data-testid=alarm-badge]");
    badge.textContent = String(page.total);
    badge.hidden = page.total === 0;
  } catch (err) {
    console.warn("could not count alarms", err);
  }
}

// --- start -------------------------------------------------------------------------------------

function init() {
  $("#login-form").addEventListener("submit", onLogin);
  $("#logout").addEventListener("click", () => logout());
  $("#group-select").addEventListener("change", (event) => selectGroup(event.target.value));
  window.addEventListener("hashchange", route);
  installMapControls();
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) start(token);
  else showLogin();
}

init();
