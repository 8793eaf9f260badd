// The eventfold console: a page of plain JavaScript over the HTTP API, served from the
// binary. Every figure it shows comes from an API call made with the token the user
// gave (kept in session storage, sent as a bearer token), so it shows nothing the
// token may not read: a refused call shows its error and no data.
"use strict";

const TOKEN_KEY = "eventfold-token";
const view = document.getElementById("view");
const errorBox = document.getElementById("error");
// The live tail of the page shown, stopped when the user leaves it.
let stopLive = null;

/// Calls the API; answers the parsed JSON (or text), throws an Error with the
/// server's code and message on an error answer.
async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers["Authorization"] = "Bearer " + token;
  const response = await fetch(path, Object.assign({}, options, { headers }));
  const text = await response.text();
  let body = text;
  try { body = text ? JSON.parse(text) : null; } catch (_) { /* text answers, e.g. /metrics */ }
  if (!response.ok) {
    const error = new Error(body && body.message ? body.message : response.status + " " + response.statusText);
    error.code = body && body.error ? body.error : String(response.status);
    error.status = response.status;
    throw error;
  }
  return body;
}

/// An element with attributes and children (strings become text: nothing the store
/// holds is ever parsed as HTML).
function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "onclick" || name === "onsubmit" || name === "onchange") node[name] = value;
    else if (value !== undefined && value !== null) node.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function table(columns, rows, id) {
  return el("table", id ? { id } : {},
    el("thead", {}, el("tr", {}, columns.map((c) => el("th", {}, c)))),
    el("tbody", {}, rows.map((cells) => el("tr", {}, cells.map((c) => el("td", {}, c))))));
}

function show(...children) {
  view.replaceChildren(...children.flat());
}

function showError(error) {
  const hint = error.status === 401 ? " — enter a token above" : error.status === 403 ? " — this token may not read it" : "";
  errorBox.textContent = (error.code ? error.code + ": " : "") + error.message + hint;
  errorBox.hidden = false;
}

const enc = encodeURIComponent;
const json = (value) => JSON.stringify(value, null, 2);

/// Reads a Server-Sent Events answer with fetch (EventSource cannot send a token),
/// calling `onEvent` with each event's JSON, until `signal` aborts.
async function follow(path, signal, onEvent) {
  const headers = { Accept: "text/event-stream" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers["Authorization"] = "Bearer " + token;
  const response = await fetch(path, { headers, signal });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    const error = new Error(body.message || response.statusText);
    error.code = body.error; error.status = response.status;
    throw error;
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const message = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = message.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
      const kind = (message.split("\n").find((l) => l.startsWith("event:")) || "").slice(6).trim();
      if (kind === "error") throw new Error(data);
      if (data) onEvent(JSON.parse(data));
    }
  }
}

const pages = {
  async streams(_, query) {
    const prefix = query.get("prefix") || "";
    const after = query.get("after");
    let path = "/streams?limit=50&prefix=" + enc(prefix);
    if (after) path += "&after=" + enc(after);
    const page = await api(path);
    const search = el("form", { class: "toolbar", onsubmit: (e) => {
      e.preventDefault();
      location.hash = "#/streams?prefix=" + enc(document.getElementById("prefix").value);
    } }, el("input", { id: "prefix", placeholder: "stream name starts with…", value: prefix }), el("button", { type: "submit" }, "Search"));
    const rows = page.streams.map((s) => [
      el("a", { class: "stream-link", href: "#/stream/" + enc(s.stream) }, s.stream),
      s.last_revision,
      el("a", { href: "#/live/" + enc(s.stream) }, "follow live"),
    ]);
    const next = page.next ? el("a", { href: "#/streams?prefix=" + enc(prefix) + "&after=" + enc(page.next) }, "next page →") : null;
    show(el("h1", {}, "Streams"), search,
      rows.length ? table(["stream", "last revision", ""], rows, "streams") : el("p", { class: "muted" }, "No stream matches."), next);
  },

  async stream([name], query) {
    const from = Number(query.get("from") || 0);
    const page = await api("/streams/" + enc(name) + "?limit=20&from=" + from);
    const rows = page.events.map((e) => [
      el("a", { class: "event-link", href: "#/event/" + enc(name) + "/" + e.revision }, String(e.revision)),
      e.type, e.version, e.position, e.recorded_at,
    ]);
    const links = el("div", { class: "toolbar" },
      el("a", { href: "#/live/" + enc(name) }, "follow live"),
      el("a", { href: "/feed/streams/" + enc(name) }, "Atom feed"),
      from > 0 ? el("a", { href: "#/stream/" + enc(name) + "?from=" + Math.max(0, from - 20) }, "← earlier") : null,
      page.end_of_stream ? null : el("a", { href: "#/stream/" + enc(name) + "?from=" + page.next }, "later →"));
    show(el("h1", {}, "Stream ", el("code", {}, name)), links,
      table(["revision", "type", "version", "position", "recorded at"], rows, "events"));
  },

  async event([name, revision], query) {
    const version = query.get("version");
    const headers = version ? { Accept: "application/vnd.eventfold.v" + version + "+json" } : {};
    const event = await api("/streams/" + enc(name) + "/" + enc(revision), { headers });
    let versions = [];
    try {
      const schema = await api("/schemas/" + enc(event.type));
      versions = schema.versions.map((v) => v.version);
    } catch (_) { /* no schema registered: as stored only */ }
    const select = el("select", { id: "version", onchange: (e) => {
      const v = e.target.value;
      location.hash = "#/event/" + enc(name) + "/" + revision + (v ? "?version=" + v : "");
    } }, el("option", { value: "" }, "as stored"),
      versions.map((v) => el("option", Object.assign({ value: v }, String(v) === version ? { selected: "" } : {}), "version " + v)));
    show(el("h1", {}, "Event ", el("code", {}, revision + "@" + name)),
      el("div", { class: "toolbar" }, el("label", {}, "Schema version ", select),
        el("a", { href: "#/stream/" + enc(name) + "?from=" + Math.floor(revision / 20) * 20 }, "back to the stream")),
      el("pre", { id: "event-json" }, json(event)));
  },

  async live([name]) {
    const stream = name || "$all";
    const list = el("ul", { class: "live", id: "live-events" });
    const status = el("p", { class: "muted", id: "live-status" }, "Connecting…");
    show(el("h1", {}, "Live: ", el("code", {}, stream)),
      el("form", { class: "toolbar", onsubmit: (e) => {
        e.preventDefault();
        location.hash = "#/live/" + enc(document.getElementById("live-stream").value || "$all");
      } }, el("input", { id: "live-stream", value: stream }), el("button", { type: "submit" }, "Follow")),
      status, list);
    // From the current end: the tail shows what arrives from now on.
    let path;
    if (stream === "$all") {
      const health = await api("/health");
      const from = health.head_position === null ? 0 : health.head_position + 1;
      path = "/subscribe/all?from=" + from;
    } else {
      const head = await api("/streams/" + enc(stream) + "/head");
      const from = head.last_revision === null ? 0 : head.last_revision + 1;
      path = "/subscribe/streams/" + enc(stream) + "?from=" + from;
    }
    const controller = new AbortController();
    stopLive = () => controller.abort();
    status.textContent = "Following; new events appear at the top.";
    status.dataset.ready = "true";
    follow(path, controller.signal, (e) => {
      list.prepend(el("li", {}, el("a", { href: "#/event/" + enc(e.stream) + "/" + e.revision }, e.revision + "@" + e.stream),
        " ", el("span", { class: "pill" }, e.type), " ", e.recorded_at));
    }).catch((error) => { if (error.name !== "AbortError") showError(error); });
  },

  async groups() {
    const [page, health] = await Promise.all([api("/streams?prefix=" + enc("$persistent-") + "&limit=1000"), api("/health")]);
    const head = health.head_position;
    const rows = [];
    for (const s of page.streams) {
      const group = s.stream.slice("$persistent-".length);
      const { status } = await api("/subscriptions/" + enc(group));
      const lag = head === null ? 0 : head - (status.checkpoint === null ? -1 : status.checkpoint);
      rows.push([el("a", { class: "group-link", href: "#/group/" + enc(group) }, group), status.checkpoint ?? "–", lag, status.in_flight, status.retrying, status.parked]);
    }
    show(el("h1", {}, "Consumer groups"),
      rows.length ? table(["group", "checkpoint", "lag (events)", "in flight", "retrying", "parked"], rows, "groups") : el("p", { class: "muted" }, "No consumer group."));
  },

  async group([name]) {
    const [{ status, settings }, { parked }] = await Promise.all([
      api("/subscriptions/" + enc(name)), api("/subscriptions/" + enc(name) + "/parked")]);
    const outcome = el("p", { class: "muted", id: "replayed" });
    const replay = el("button", { id: "replay-parked", onclick: async () => {
      try {
        const { queued } = await api("/subscriptions/" + enc(name) + "/parked/replay", { method: "POST", headers: { "Content-Type": "application/json" }, body: "{}" });
        outcome.textContent = queued + " parked event(s) queued for delivery again.";
        outcome.dataset.queued = String(queued);
      } catch (error) { showError(error); }
    } }, "Replay parked events");
    show(el("h1", {}, "Consumer group ", el("code", {}, name)),
      el("pre", {}, json({ status, settings })),
      el("h2", {}, "Parked events (" + parked.length + ")"),
      parked.length ? [table(["position", "event", "attempts", "reason"], parked.map((p) => [
        p.position, el("a", { href: "#/event/" + enc(p.stream) + "/" + p.revision }, p.revision + "@" + p.stream), p.attempts, p.reason]), "parked"),
        el("p", { class: "muted" }, "Parked events stay listed here as the group's record; replaying delivers them again, before new events."),
        replay, outcome]
        : el("p", { class: "muted", id: "no-parked" }, "Nothing was parked."));
  },

  async schemas([type]) {
    if (type) {
      const versions = await api("/schemas/" + enc(type));
      show(el("h1", {}, "Schemas of ", el("code", {}, type)), el("pre", { id: "schema-json" }, json(versions)));
      return;
    }
    const { types } = await api("/schemas");
    show(el("h1", {}, "Schemas"), types.length ? table(["type", "versions", "newest"], types.map((t) => [
      el("a", { href: "#/schemas/" + enc(t.type) }, t.type), Array.isArray(t.versions) ? t.versions.join(", ") : String(t.versions), json(t.newest)])) : el("p", { class: "muted" }, "No schema is registered."));
  },

  async projections() {
    const { projections } = await api("/projections");
    const result = el("pre", { id: "state-json" }, "");
    const form = el("form", { class: "toolbar", onsubmit: async (e) => {
      e.preventDefault();
      const stream = document.getElementById("state-stream").value;
      const projection = document.getElementById("state-projection").value;
      const revision = document.getElementById("state-revision").value;
      let path = "/streams/" + enc(stream) + "/state?projection=" + enc(projection);
      if (revision !== "") path += "&revision=" + enc(revision);
      try { result.textContent = json(await api(path)); } catch (error) { showError(error); }
    } }, el("input", { id: "state-stream", placeholder: "stream" }),
      el("select", { id: "state-projection" }, projections.map((p) => el("option", { value: p.name }, p.name))),
      el("input", { id: "state-revision", placeholder: "revision (default: last)", type: "number", min: "0" }),
      el("button", { type: "submit" }, "State"));
    show(el("h1", {}, "Projections"),
      projections.length ? projections.map((p) => [el("h2", {}, p.name), el("pre", {}, json({ init: p.init, handlers: p.handlers }))])
        : el("p", { class: "muted" }, "No projection is registered."),
      el("h2", {}, "State of a stream as of a revision"), form, result);
  },

  async surgery() {
    // Stream surgery writes one audit record per operation to `$surgery`; a store where
    // none was done has no such stream.
    let events = [];
    try {
      events = (await api("/streams/" + enc("$surgery") + "?direction=backward&limit=100")).events;
    } catch (error) {
      if (error.code !== "stream_not_found") throw error;
    }
    // Newest first: the operation, why, who, when, and its arguments.
    show(el("h1", {}, "Surgery log"),
      events.length ? table(["revision", "operation", "reason", "who", "at", "arguments"], events.map((e) => [
        e.revision, String(e.data.operation), String(e.data.reason), String(e.data.who), String(e.data.at),
        el("pre", {}, json(e.data.arguments))]), "surgery")
        : el("p", { class: "muted", id: "no-surgery" }, "No stream surgery was done on this store."));
  },

  async health() {
    const health = await api("/health");
    let metrics = "";
    try { metrics = await api("/metrics"); } catch (error) { metrics = "(metrics: " + error.message + ")"; }
    const lines = String(metrics).split("\n").filter((l) => l.startsWith("eventfold_"));
    show(el("h1", {}, "Health"), el("pre", { id: "health-json" }, json(health)),
      el("h2", {}, "Metrics"), el("pre", {}, lines.join("\n")));
  },
};

/// Shows the page the location's hash names (`#/streams`, `#/stream/NAME`, ...).
async function route() {
  if (stopLive) { stopLive(); stopLive = null; }
  errorBox.hidden = true;
  const hash = location.hash.replace(/^#\/?/, "") || "streams";
  const [path, search] = hash.split("?");
  const [page, ...rest] = path.split("/");
  const args = rest.map(decodeURIComponent);
  const handler = pages[page] || pages.streams;
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("active", link.dataset.nav === page || (page === "stream" && link.dataset.nav === "streams"));
  }
  view.dataset.page = page;
  view.dataset.loaded = "false";
  // Counts the pages shown, so that a reader (a test) can tell this one from the last.
  const shown = Number(view.dataset.routes || 0) + 1;
  view.dataset.routes = String(shown);
  try {
    await handler(args, new URLSearchParams(search || ""));
  } catch (error) {
    show(el("p", { class: "muted" }, "Nothing to show."));
    showError(error);
  }
  if (view.dataset.routes === String(shown)) view.dataset.loaded = "true";
}

document.getElementById("token").value = sessionStorage.getItem(TOKEN_KEY) || "";
document.getElementById("token-form").onsubmit = (e) => {
  e.preventDefault();
  const token = document.getElementById("token").value.trim();
  if (token) sessionStorage.setItem(TOKEN_KEY, token); else sessionStorage.removeItem(TOKEN_KEY);
  route();
};
window.addEventListener("hashchange", route);
route();
