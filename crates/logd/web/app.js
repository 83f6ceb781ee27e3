// flotilla logd's page: search, live tail, fleet, alerts. Plain JavaScript, no library,
// nothing loaded from elsewhere; it only talks to this logd's HTTP API.
//
// It never loads every record: a search asks /api/query for the newest `limit` matches
// and "Older" pages backwards with `until`; the tail is /api/tail's event stream and
// keeps at most TAIL_MAX_ROWS rows. State for tests and scripts is in the DOM:
// body[data-view], #search/#tail/#fleet/#alerts[data-state], tbody[data-rows],
// #tail[data-received], #status's text.
"use strict";

(function () {
  const TAIL_MAX_ROWS = 2000;
  const TAIL_BACKFILL = 50;
  // The most records /api/query returns at once (logd's MAX_LIMIT).
  const MAX_LIMIT = 100000;
  const POLL_MS = 5000;
  const FLEET_MAX_ROWS = 1000;
  const SD_VALUE_MAX = 240;
  const VIEWS = ["search", "tail", "fleet", "alerts"];
  // Filters that may be given several times: whitespace- or comma-separated in the form,
  // a value holding either in double quotes ("my app, v2"; see multiValues).
  const MULTI = ["host", "app", "msgid", "procid"];
  const SINGLE = ["severity", "grep", "substr", "sd"];
  const TIME = ["since", "until"];

  const $ = (id) => document.getElementById(id);

  // ---------------------------------------------------------------------------------
  // Small helpers.

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    if (attrs) {
      for (const [k, v] of Object.entries(attrs)) {
        if (v === undefined || v === null || v === false) continue;
        if (k === "class") node.className = v;
        else if (k === "text") node.textContent = v;
        else if (k.startsWith("data-")) node.setAttribute(k, String(v));
        else node.setAttribute(k, v === true ? "" : String(v));
      }
    }
    for (const c of children) {
      if (c === undefined || c === null || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function setStatus(text) {
    $("status").textContent = text;
  }

  function fmtInt(n) {
    return typeof n === "number" ? n.toLocaleString("en-US") : n == null ? "–" : String(n);
  }

  // "2024-05-01T12:34:56.123456789Z" -> "2024-05-01 12:34:56.123"
  function fmtTime(rfc3339) {
    if (!rfc3339) return "–";
    const m = /^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(?:\.(\d+))?/.exec(rfc3339);
    if (!m) return rfc3339;
    return `${m[1]} ${m[2]}.${(m[3] || "").padEnd(3, "0").slice(0, 3)}`;
  }

  function fmtDuration(ms) {
    if (!(ms >= 0)) return "–";
    const s = Math.round(ms / 1000);
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
    return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
  }

  // The server's clock minus ours (from /api/fleet's "now"), so that "ago" is right
  // even when the browser's clock is off.
  let clockSkew = 0;

  function now() {
    return Date.now() + clockSkew;
  }

  function ago(rfc3339) {
    if (!rfc3339) return "–";
    const t = Date.parse(rfc3339);
    if (Number.isNaN(t)) return rfc3339;
    const d = now() - t;
    return d < 0 ? "just now" : `${fmtDuration(d)} ago`;
  }

  function timeCell(rfc3339, cls) {
    return el("td", { class: cls, title: rfc3339 || undefined }, ago(rfc3339));
  }

  // A received-at time's microsecond since the epoch (logd's time parser keeps
  // microseconds), or null.
  function microKey(rfc3339) {
    const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z$/.exec(rfc3339 || "");
    if (!m) return null;
    const secondsMs = Date.parse(m[1] + "Z");
    if (Number.isNaN(secondsMs)) return null;
    return secondsMs * 1000 + parseInt((m[2] || "").padEnd(6, "0").slice(0, 6), 10); // below 2^53
  }

  // The RFC 3339 time (microseconds) just after microsecond `micro`: the `until` of the
  // next older page.
  function untilAfterMicro(micro) {
    if (micro === null) return null;
    const total = micro + 1;
    const ms = Math.floor(total / 1000);
    const iso = new Date(ms).toISOString(); // YYYY-MM-DDTHH:MM:SS.sssZ
    const us = String(total % 1000000).padStart(6, "0");
    return `${iso.slice(0, 19)}.${us}Z`;
  }

  async function apiError(res) {
    let detail = "";
    try {
      const body = await res.text();
      try {
        detail = JSON.parse(body).error || body;
      } catch (_) {
        detail = body;
      }
    } catch (_) {
      /* no body */
    }
    return `${res.status} ${res.statusText}${detail ? ": " + detail : ""}`;
  }

  // ---------------------------------------------------------------------------------
  // Filters and the URL hash ("#search?app=api&severity=..err", "#tail?...", "#fleet").

  function formParams(withTimes) {
    const form = $("filters");
    const p = new URLSearchParams();
    if (withTimes) {
      for (const k of TIME) {
        const v = form.elements[k].value.trim();
        if (v) p.append(k, v);
      }
    }
    for (const k of MULTI) {
      for (const v of multiValues(form.elements[k].value)) p.append(k, v);
    }
    for (const k of SINGLE) {
      const v = form.elements[k].value.trim();
      if (v) p.append(k, v);
    }
    return p;
  }

  // A multi-value field's values: separated by whitespace or commas; "…" keeps one whole
  // (inside, \" and \\ stand for " and \).
  function multiValues(text) {
    const out = [];
    for (const m of text.matchAll(/"((?:[^"\\]|\\.)*)"?|[^\s,]+/g)) {
      const v = m[1] !== undefined ? m[1].replace(/\\(.)/g, "$1") : m[0];
      if (v) out.push(v);
    }
    return out;
  }

  // One value as a multi-value field shows it: quoted when it would not come back whole.
  function multiText(v) {
    return /[\s,"]/.test(v) ? `"${v.replace(/["\\]/g, "\\$&")}"` : v;
  }

  function fillForm(p) {
    const form = $("filters");
    for (const k of [...TIME, ...SINGLE]) form.elements[k].value = p.get(k) || "";
    for (const k of MULTI) form.elements[k].value = p.getAll(k).map(multiText).join(" ");
    const limit = p.get("limit");
    if (limit && [...form.elements.limit.options].some((o) => o.value === limit)) {
      form.elements.limit.value = limit;
    }
  }

  function limit() {
    return parseInt($("filters").elements.limit.value, 10) || 100;
  }

  let lastHash = null;

  function writeHash(view) {
    let hash = "#" + view;
    if (view === "search" || view === "tail") {
      const p = formParams(view === "search");
      if (view === "search" && limit() !== 100) p.set("limit", String(limit()));
      const q = p.toString();
      if (q) hash += "?" + q;
    }
    if (hash !== location.hash) history.pushState(null, "", hash);
    lastHash = location.hash;
  }

  function readHash() {
    const raw = location.hash.replace(/^#/, "");
    const q = raw.indexOf("?");
    const view = q < 0 ? raw : raw.slice(0, q);
    const params = new URLSearchParams(q < 0 ? "" : raw.slice(q + 1));
    return { view: VIEWS.includes(view) ? view : "search", params };
  }

  // ---------------------------------------------------------------------------------
  // Views.

  let view = null;

  function showView(name) {
    if (view === name) return;
    const previous = view;
    view = name;
    document.body.dataset.view = name;
    for (const v of VIEWS) {
      $("view-" + v).hidden = v !== name;
      const tab = $("tab-" + v);
      tab.setAttribute("aria-selected", String(v === name));
      tab.tabIndex = v === name ? 0 : -1;
    }
    $("run").textContent = name === "tail" ? "Follow" : "Search";
    if (previous === "tail" && name !== "tail") tailSuspend();
    if (name === "fleet") loadFleet();
    if (name === "alerts") loadAlerts();
  }

  function applyHash() {
    const { view: v, params } = readHash();
    lastHash = location.hash;
    if (v === "search" || v === "tail") fillForm(params);
    showView(v);
    if (v === "search") runSearch();
    if (v === "tail") tailStart(false);
  }

  // ---------------------------------------------------------------------------------
  // Records as table rows.

  function sdCell(sd) {
    const td = el("td", { class: "c-sd" });
    const ids = sd ? Object.keys(sd) : [];
    if (ids.length === 0) {
      td.append(el("span", { class: "dim" }, "–"));
      return td;
    }
    for (const id of ids) {
      const span = el("span", { class: "sd-el" }, el("span", { class: "sd-id" }, id));
      const params = sd[id] || {};
      for (const [k, raw] of Object.entries(params)) {
        const v = typeof raw === "string" ? raw : JSON.stringify(raw);
        const shown = v.length > SD_VALUE_MAX ? v.slice(0, SD_VALUE_MAX) + "…" : v;
        span.append(
          " ",
          el("span", { class: "sd-k" }, k),
          "=",
          el("span", { class: "sd-v", title: v.length > SD_VALUE_MAX ? v : undefined }, `"${shown}"`),
        );
      }
      td.append(span);
    }
    return td;
  }

  function recordRow(r, fresh) {
    const title = [
      `received ${r.received_at}`,
      r.timestamp ? `sent ${r.timestamp}` : "no timestamp",
      `${r.transport} from ${r.source}`,
      `${r.format}, ${r.facility}.${r.severity}`,
      `id ${r.id}${r.node ? " on " + r.node : ""}`,
    ].join("\n");
    const msg = r.msg + (r.truncated ? " [truncated]" : "");
    return el(
      "tr",
      { class: fresh ? "fresh" : undefined, "data-id": r.id, "data-node": r.node || "" },
      el("td", { class: "c-time", title }, fmtTime(r.received_at)),
      el("td", { class: "c-host" }, r.hostname || "–"),
      el("td", { class: "c-app" }, r.app_name || "–"),
      el("td", { class: "c-procid" }, r.proc_id || "–"),
      el("td", { class: "c-msgid" }, r.msg_id || "–"),
      el("td", { class: "c-sev" }, el("span", { class: "sev sev-" + r.severity }, r.severity)),
      el("td", { class: "c-msg" }, msg),
      sdCell(r.structured_data),
    );
  }

  function recordKey(r) {
    return `${r.node || ""}:${r.id}`;
  }

  function parseLines(text) {
    const out = [];
    for (const line of text.split("\n")) {
      if (line.trim()) out.push(JSON.parse(line));
    }
    return out;
  }

  // ---------------------------------------------------------------------------------
  // Search.

  const search = {
    gen: 0,
    controller: null,
    params: null,
    seen: new Set(),
    // The received-at microsecond of every row shown, newest first.
    micros: [],
    shown: 0,
  };

  function searchState(state) {
    $("search").dataset.state = state;
  }

  function setSearchRows() {
    const n = $("search-rows").rows.length;
    $("search-rows").dataset.rows = String(n);
    $("search").dataset.rows = String(n);
  }

  async function runSearch() {
    if (search.controller) search.controller.abort();
    const gen = ++search.gen;
    search.params = formParams(true);
    search.seen = new Set();
    search.micros = [];
    $("search-rows").replaceChildren();
    setSearchRows();
    $("search-total").textContent = "";
    $("search-older").hidden = true;
    $("search-end").hidden = true;
    await fetchPage(gen, null);
  }

  // One page: the newest `limit()` matches before `until`, plus `extra` (the rows already
  // shown from the oldest row's microsecond, which come again and are skipped).
  async function fetchPage(gen, until, extra) {
    const p = new URLSearchParams(search.params);
    if (until) p.set("until", until);
    const n = Math.min(limit() + (extra || 0), MAX_LIMIT);
    p.set("limit", String(n));
    const controller = new AbortController();
    search.controller = controller;
    searchState("loading");
    $("search-error").hidden = true;
    $("search-older").disabled = true;
    setStatus("Searching…");
    const started = performance.now();
    let records;
    let headers;
    try {
      const res = await fetch("api/query?" + p.toString(), { signal: controller.signal });
      if (!res.ok) throw new Error(await apiError(res));
      headers = res.headers;
      records = parseLines(await res.text());
    } catch (e) {
      if (gen !== search.gen || e.name === "AbortError") return;
      searchState("error");
      $("search-error").textContent = `Search failed: ${e.message}`;
      $("search-error").hidden = false;
      $("search-summary").textContent = "Search failed.";
      setStatus(`Search failed: ${e.message}`);
      return;
    } finally {
      $("search-older").disabled = false;
    }
    if (gen !== search.gen) return;
    const ms = Math.round(performance.now() - started);
    // Oldest first from the API; shown newest first.
    const fresh = records.filter((r) => !search.seen.has(recordKey(r)));
    const frag = document.createDocumentFragment();
    for (let i = fresh.length - 1; i >= 0; i--) {
      search.seen.add(recordKey(fresh[i]));
      frag.append(recordRow(fresh[i], false));
    }
    $("search-rows").append(frag);
    for (let i = fresh.length - 1; i >= 0; i--) search.micros.push(microKey(fresh[i].received_at));
    setSearchRows();
    const shown = $("search-rows").rows.length;
    const more = records.length >= n && fresh.length > 0;
    $("search-older").hidden = !more;
    $("search-end").hidden = more || shown === 0;
    const h = (k) => {
      const v = headers.get("x-flotilla-" + k);
      return v === null ? null : Number(v);
    };
    const stats = [];
    if (h("records-scanned") !== null) {
      if (h("blocks-in-range")) {
        stats.push(`${fmtInt(h("blocks-opened"))} of ${fmtInt(h("blocks-in-range"))} stored blocks opened`);
      }
      stats.push(`${fmtInt(h("records-scanned"))} records scanned`);
      if (h("corrupt-blocks")) stats.push(`${fmtInt(h("corrupt-blocks"))} corrupt blocks skipped`);
    }
    stats.push(`${ms} ms`);
    let what;
    if (shown === 0) what = "No match.";
    else if (!more && !until) what = `All ${fmtInt(shown)} matches shown.`;
    else if (!more) what = `${fmtInt(shown)} matches shown: the oldest is reached.`;
    else what = `The newest ${fmtInt(shown)} matches shown (newest first).`;
    $("search-summary").textContent = what;
    $("search-total").textContent = stats.join(" · ");
    searchState("done");
    setStatus(`Search: ${fmtInt(shown)} rows (${ms} ms)`);
  }

  // logd stamps a whole received batch with one time, so many records can share the
  // oldest row's microsecond: ask for the page before the end of that microsecond with
  // room for the rows of it already shown (the newest in that window; skipped by id).
  async function olderPage() {
    const micros = search.micros;
    if (micros.length === 0) return;
    const oldest = micros[micros.length - 1];
    const until = untilAfterMicro(oldest);
    if (!until) return;
    let again = 0;
    for (let i = micros.length - 1; i >= 0 && micros[i] === oldest; i--) again++;
    await fetchPage(search.gen, until, again);
  }

  async function countAll() {
    const p = new URLSearchParams(search.params || formParams(true));
    p.set("limit", "0");
    const button = $("search-count");
    button.disabled = true;
    $("search-total").textContent = "Counting every match…";
    const started = performance.now();
    try {
      const res = await fetch("api/query/stats?" + p.toString());
      if (!res.ok) throw new Error(await apiError(res));
      const body = await res.json();
      const s = body.stats || {};
      const ms = Math.round(performance.now() - started);
      $("search-total").textContent =
        `${fmtInt(body.matched)} matches in all · ${fmtInt(s.records_scanned)} records scanned in ` +
        `${fmtInt(s.blocks_opened)} of ${fmtInt(s.blocks_in_range)} blocks · ${ms} ms`;
      $("search").dataset.total = String(body.matched);
    } catch (e) {
      $("search-total").textContent = `Counting failed: ${e.message}`;
    } finally {
      button.disabled = false;
    }
  }

  // ---------------------------------------------------------------------------------
  // Live tail.

  const tail = {
    source: null,
    paused: false,
    // Where a resume continues: the `id:` of the last record event (a record id, or with
    // several nodes the cursor NODE=ID,… naming the last record seen from each), "" before any.
    cursor: "",
    received: 0,
    pending: [],
    timer: 0,
    lagged: 0,
    // A resume skipped records (an event `lagged` with `backfill_capped`).
    capped: false,
    params: "",
  };

  function tailState(state, text) {
    $("tail").dataset.state = state;
    $("tail-state").textContent = text || state;
  }

  function tailClose() {
    if (tail.source) {
      tail.source.close();
      tail.source = null;
    }
  }

  // Starts following with the form's filters; `resume` continues after the last record
  // shown (the newest TAIL_MAX_ROWS of those missed meanwhile come first).
  function tailStart(resume) {
    tailClose();
    const p = formParams(false);
    if (!resume) {
      tail.cursor = "";
      tail.received = 0;
      tail.lagged = 0;
      tail.capped = false;
      tail.pending = [];
      $("tail-rows").replaceChildren();
      $("tail-lagged").hidden = true;
      updateTailCounts();
    }
    tail.params = p.toString();
    if (resume && tail.cursor) {
      p.set("after", tail.cursor);
      p.set("backfill", String(TAIL_MAX_ROWS));
    } else {
      p.set("backfill", String(TAIL_BACKFILL));
    }
    tail.paused = false;
    $("tail-toggle").textContent = "Pause";
    $("tail-error").hidden = true;
    tailState("connecting", "connecting…");
    const source = new EventSource("api/tail?" + p.toString());
    tail.source = source;
    source.onopen = () => {
      if (tail.source !== source) return;
      tailState("live", "live");
      setStatus("Tail: live");
    };
    source.addEventListener("record", (e) => {
      if (tail.source !== source) return;
      let r;
      try {
        r = JSON.parse(e.data);
      } catch (_) {
        return;
      }
      if (e.lastEventId) tail.cursor = e.lastEventId;
      tail.received++;
      tail.pending.push(r);
      if (tail.pending.length > TAIL_MAX_ROWS) tail.pending.splice(0, tail.pending.length - TAIL_MAX_ROWS);
      if (!tail.timer) tail.timer = setTimeout(tailFlush, 50);
    });
    source.addEventListener("lagged", (e) => {
      if (tail.source !== source) return;
      let data = {};
      try {
        data = JSON.parse(e.data) || {};
      } catch (_) {
        /* nothing known */
      }
      if (data.backfill_capped) {
        // A resume found more records than it sends: only the newest came.
        tail.capped = true;
      } else {
        tail.lagged += data.missed_batches || 0;
      }
      $("tail").dataset.lagged = String(tail.lagged + (tail.capped ? 1 : 0));
      const what = [];
      if (tail.lagged) what.push(`${fmtInt(tail.lagged)} store batches were skipped`);
      if (tail.capped) what.push("the records from while it was away were more than it fetches back: the older ones were skipped");
      $("tail-lagged").textContent =
        `The tail fell behind: ${what.join("; ") || "records were skipped"}. ` +
        `Search for the records in that time to see them all.`;
      $("tail-lagged").hidden = false;
    });
    source.onerror = () => {
      if (tail.source !== source) return;
      if (source.readyState === EventSource.CLOSED) {
        tailState("error", "disconnected");
        $("tail-error").textContent = "The tail was refused (check the filters) or logd is gone.";
        $("tail-error").hidden = false;
        setStatus("Tail: disconnected");
        // A 400 closes the stream: say why.
        fetch("api/tail?" + p.toString()).then(async (res) => {
          if (!res.ok && tail.source === source) {
            $("tail-error").textContent = `Tail refused: ${await apiError(res)}`;
          } else if (res.body) {
            res.body.cancel();
          }
        }, () => {});
      } else {
        tailState("connecting", "reconnecting…");
        setStatus("Tail: reconnecting…");
      }
    };
  }

  function tailFlush() {
    tail.timer = 0;
    const batch = tail.pending;
    tail.pending = [];
    if (batch.length === 0) return;
    const body = $("tail-rows");
    const frag = document.createDocumentFragment();
    for (let i = batch.length - 1; i >= 0; i--) frag.append(recordRow(batch[i], true));
    body.prepend(frag);
    while (body.rows.length > TAIL_MAX_ROWS) body.deleteRow(-1);
    updateTailCounts();
  }

  function updateTailCounts() {
    const n = $("tail-rows").rows.length;
    $("tail-rows").dataset.rows = String(n);
    $("tail").dataset.rows = String(n);
    $("tail").dataset.received = String(tail.received);
    $("tail-summary").textContent =
      `${fmtInt(tail.received)} received · ${fmtInt(n)} shown (at most ${fmtInt(TAIL_MAX_ROWS)}, newest first)`;
  }

  function tailPause() {
    tailClose();
    tail.paused = true;
    if (tail.timer) {
      clearTimeout(tail.timer);
      tailFlush();
    }
    $("tail-toggle").textContent = "Resume";
    tailState("paused", "paused");
    setStatus("Tail: paused");
  }

  // Leaving the tail view: stop the stream but resume where it was when coming back.
  function tailSuspend() {
    if (tail.source) {
      tailClose();
      tailState("suspended", "suspended");
    }
  }

  // ---------------------------------------------------------------------------------
  // Polled JSON views (fleet, alerts): 404 means "this logd has none".

  async function getJson(path) {
    let res;
    try {
      res = await fetch(path, { cache: "no-store" });
    } catch (e) {
      return { state: "error", message: `${path}: ${e.message}` };
    }
    if (res.status === 404) return { state: "unavailable", message: await apiError(res) };
    if (!res.ok) return { state: "error", message: `${path}: ${await apiError(res)}` };
    try {
      return { state: "ok", body: await res.json() };
    } catch (e) {
      return { state: "error", message: `${path}: not JSON (${e.message})` };
    }
  }

  function badge(id, n, title) {
    const b = $(id);
    b.hidden = !(n > 0);
    b.textContent = String(n);
    b.title = title;
  }

  // ---------------------------------------------------------------------------------
  // Fleet.

  const STATE_RANK = { crashed: 0, "boot-looping": 1, silent: 2, up: 3 };
  const FLEET_COLUMNS = [
    { key: "state", label: "state", sort: (s) => STATE_RANK[s.state] ?? 9 },
    { key: "host", label: "host", sort: (s) => s.host || "" },
    { key: "app", label: "app", sort: (s) => s.app || "" },
    { key: "version", label: "version", sort: (s) => s.version || "" },
    { key: "pid", label: "pid", sort: (s) => Number(s.pid) || 0, num: true },
    { key: "ip", label: "ip", sort: (s) => ipText(s.ip) },
    { key: "last_boot", label: "last boot", sort: (s) => timeKey(s.last_boot) },
    { key: "boots_last_hour", label: "boots/h", sort: (s) => s.boots_last_hour || 0, num: true },
    { key: "last_heartbeat", label: "heartbeat", sort: (s) => timeKey(s.last_heartbeat) },
    { key: "last_message", label: "last message", sort: (s) => timeKey(s.last_message) },
    { key: "crashes", label: "crashes", sort: (s) => s.crashes || 0, num: true },
    { key: "last_crash", label: "last crash", sort: (s) => timeKey(s.last_crash && s.last_crash.at) },
    { key: "errors_last_hour", label: "errors/h", sort: (s) => s.errors_last_hour || 0, num: true },
    { key: "records", label: "records", sort: (s) => s.records || 0, num: true },
  ];
  const fleet = { sort: "state", dir: 1, data: null, inflight: false };

  function timeKey(t) {
    const v = t ? Date.parse(t) : NaN;
    return Number.isNaN(v) ? -Infinity : v;
  }

  function ipText(ip) {
    if (!Array.isArray(ip)) return "";
    return ip
      .filter((pair) => Array.isArray(pair) && !String(pair[1]).startsWith("127.") && pair[1] !== "::1/128")
      .map((pair) => `${pair[0]} ${pair[1]}`)
      .join(", ");
  }

  function fleetHead() {
    const row = $("fleet-head");
    row.replaceChildren();
    for (const c of FLEET_COLUMNS) {
      const sorted = fleet.sort === c.key;
      const th = el("th", {
        scope: "col",
        class: c.num ? "num" : undefined,
        "aria-sort": sorted ? (fleet.dir > 0 ? "ascending" : "descending") : "none",
      });
      const button = el("button", { type: "button", class: "sort", "data-key": c.key }, c.label);
      button.addEventListener("click", () => {
        if (fleet.sort === c.key) fleet.dir = -fleet.dir;
        else {
          fleet.sort = c.key;
          fleet.dir = c.num || c.key.startsWith("last") ? -1 : 1;
        }
        fleetHead();
        renderFleet();
      });
      th.append(button);
      row.append(th);
    }
  }

  async function loadFleet() {
    if (fleet.inflight) return;
    fleet.inflight = true;
    if (!fleet.data) $("fleet").dataset.state = "loading";
    const got = await getJson("api/fleet");
    fleet.inflight = false;
    const box = $("fleet");
    $("fleet-body").hidden = got.state !== "ok";
    if (got.state !== "ok") {
      box.dataset.state = got.state;
      fleet.data = null;
      $("fleet-rows").replaceChildren();
      $("fleet-rows").dataset.rows = "0";
      box.dataset.rows = "0";
      $("fleet-counts").replaceChildren();
      $("fleet-message").textContent =
        got.state === "unavailable"
          ? `The fleet view is not available on this logd (GET /api/fleet: ${got.message}).`
          : `The fleet view could not be loaded: ${got.message}`;
      $("fleet-message").hidden = false;
      if (view === "fleet") setStatus(got.state === "unavailable" ? "Fleet: not available" : "Fleet: error");
      return;
    }
    $("fleet-message").hidden = true;
    fleet.data = got.body || {};
    const serverNow = Date.parse(fleet.data.now);
    if (!Number.isNaN(serverNow)) clockSkew = serverNow - Date.now();
    box.dataset.state = "ok";
    $("fleet-updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    renderFleet();
  }

  function renderFleet() {
    const data = fleet.data;
    if (!data) return;
    const services = Array.isArray(data.services) ? data.services : [];
    const counts = { up: 0, silent: 0, crashed: 0, "boot-looping": 0 };
    for (const s of services) counts[s.state] = (counts[s.state] || 0) + 1;
    const countBox = $("fleet-counts");
    countBox.replaceChildren(el("span", { class: "muted" }, `${fmtInt(services.length)} services:`));
    for (const [state, n] of Object.entries(counts)) {
      countBox.append(el("span", { class: `state state-${state}`, "data-state": state }, `${fmtInt(n)} ${state}`));
    }
    const bad = (counts.crashed || 0) + (counts["boot-looping"] || 0) + (counts.silent || 0);
    badge("fleet-badge", bad, `${bad} services not up`);

    const nodes = Array.isArray(data.nodes) ? data.nodes.filter((n) => n && n.ok === false) : [];
    $("fleet-nodes").hidden = nodes.length === 0;
    $("fleet-nodes").textContent = nodes
      .map((n) => `Node ${n.node || "?"} (${n.url || "?"}) did not answer: ${n.error || "unknown error"}; its services may be missing.`)
      .join(" ");

    const needle = $("fleet-filter").value.trim().toLowerCase();
    let rows = needle
      ? services.filter((s) => `${s.host || ""} ${s.app || ""}`.toLowerCase().includes(needle))
      : services.slice();
    const column = FLEET_COLUMNS.find((c) => c.key === fleet.sort) || FLEET_COLUMNS[0];
    const tie = (s) => `${s.host || ""}\u0000${s.app || ""}`;
    rows.sort((a, b) => {
      const x = column.sort(a);
      const y = column.sort(b);
      const c = x < y ? -1 : x > y ? 1 : 0;
      if (c !== 0) return c * fleet.dir;
      const ta = tie(a);
      const tb = tie(b);
      return ta < tb ? -1 : ta > tb ? 1 : 0;
    });
    const total = rows.length;
    rows = rows.slice(0, FLEET_MAX_ROWS);
    const body = $("fleet-rows");
    const frag = document.createDocumentFragment();
    if (total === 0) {
      frag.append(el("tr", { class: "empty" }, el("td", { colspan: FLEET_COLUMNS.length }, needle ? "No service matches the filter." : "No service has sent anything yet.")));
    }
    for (const s of rows) frag.append(fleetRow(s));
    body.replaceChildren(frag);
    body.dataset.rows = String(rows.length);
    $("fleet").dataset.rows = String(rows.length);
    $("fleet-more").hidden = total <= rows.length;
    $("fleet-more").textContent = `${fmtInt(rows.length)} of ${fmtInt(total)} services shown: filter to see the others.`;
    if (view === "fleet") setStatus(`Fleet: ${fmtInt(services.length)} services`);
  }

  function fleetRow(s) {
    const crash = s.last_crash;
    const tr = el(
      "tr",
      {
        tabindex: 0,
        "data-host": s.host || "",
        "data-app": s.app || "",
        "data-state": s.state || "",
        title: `Search the records of ${s.app || "?"} on ${s.host || "?"}`,
      },
      el("td", { class: "c-state" }, el("span", { class: `state state-${s.state}` }, s.state || "?")),
      el("td", { class: "c-host" }, s.host || "–"),
      el("td", { class: "c-app" }, s.app || "–"),
      el("td", {}, s.version || "–"),
      el("td", { class: "num" }, s.pid ?? "–"),
      el("td", { class: "c-ip" }, ipText(s.ip) || "–"),
      timeCell(s.last_boot),
      el("td", { class: "num" + ((s.boots_last_hour || 0) > 3 ? " hot" : "") }, fmtInt(s.boots_last_hour ?? 0)),
      el(
        "td",
        { title: s.last_heartbeat || undefined },
        ago(s.last_heartbeat),
        s.heartbeat_interval_s ? el("span", { class: "dim" }, ` (every ${s.heartbeat_interval_s} s)`) : null,
      ),
      timeCell(s.last_message),
      el("td", { class: "num" + ((s.crashes || 0) > 0 ? " hot" : "") }, fmtInt(s.crashes ?? 0)),
      crash
        ? el("td", { class: "c-msg", title: `${crash.at || ""}\n${crash.message || ""}` }, `${ago(crash.at)}: ${crash.message || ""}`)
        : el("td", { class: "dim" }, "–"),
      el("td", { class: "num" + ((s.errors_last_hour || 0) > 0 ? " hot" : "") }, fmtInt(s.errors_last_hour ?? 0)),
      el("td", { class: "num" }, fmtInt(s.records ?? 0)),
    );
    // Through the URL hash: the host and app go in encoded, each read back as one value
    // (a name with a space or a comma stays whole).
    const open = () => {
      const p = new URLSearchParams();
      if (s.host) p.append("host", s.host);
      if (s.app) p.append("app", s.app);
      if (limit() !== 100) p.set("limit", String(limit()));
      const q = p.toString();
      history.pushState(null, "", "#search" + (q ? "?" + q : ""));
      applyHash();
    };
    tr.addEventListener("click", open);
    tr.addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === " ") {
        e.preventDefault();
        open();
      }
    });
    return tr;
  }

  // ---------------------------------------------------------------------------------
  // Alerts.

  const alerts = { inflight: false };

  function labelChips(labels) {
    const td = el("td", { class: "c-labels" });
    for (const [k, v] of Object.entries(labels || {})) {
      if (k === "alertname") continue;
      td.append(el("span", { class: "label" }, `${k}=${v}`));
    }
    return td;
  }

  function alertRow(a, recent) {
    const resolved = a.status === "resolved" || (recent && !!a.ends_at);
    const start = Date.parse(a.starts_at);
    const end = a.ends_at ? Date.parse(a.ends_at) : resolved ? NaN : now();
    return el(
      "tr",
      {
        class: resolved ? "resolved" : "firing",
        "data-name": a.name || "",
        "data-status": a.status || "",
        "data-fingerprint": a.fingerprint || "",
      },
      recent
        ? el("td", {}, el("span", { class: `state ${resolved ? "state-up" : "state-crashed"}` }, resolved ? "resolved" : "firing"))
        : null,
      el("td", {}, el("strong", {}, a.name || "?")),
      labelChips(a.labels),
      el("td", {}, a.summary || ""),
      timeCell(a.starts_at),
      recent ? timeCell(a.ends_at) : null,
      el("td", {}, fmtDuration(end - start)),
    );
  }

  function fillAlerts(id, list, recent, cols, empty) {
    const body = $(id);
    const frag = document.createDocumentFragment();
    if (list.length === 0) frag.append(el("tr", { class: "empty" }, el("td", { colspan: cols }, empty)));
    for (const a of list) frag.append(alertRow(a, recent));
    body.replaceChildren(frag);
    body.dataset.rows = String(list.length);
  }

  // `deliveries`: {node: [{target, delivered, failed_attempts, dropped, pending, last_error}]}.
  function fillDeliveries(deliveries) {
    const body = $("alerts-deliveries");
    const frag = document.createDocumentFragment();
    let n = 0;
    const count = (v, bad) =>
      el("td", { class: "num" + (v > 0 ? (bad ? " hot" : "") : " dim") }, fmtInt(v ?? 0));
    for (const [node, targets] of Object.entries(deliveries || {})) {
      for (const t of Array.isArray(targets) ? targets : []) {
        n++;
        frag.append(
          el(
            "tr",
            { "data-target": t.target || "" },
            el("td", {}, node),
            el("td", {}, t.target || "?"),
            count(t.delivered, false),
            count(t.failed_attempts, true),
            count(t.dropped, true),
            count(t.pending, false),
            el("td", { class: t.last_error ? "hot" : "dim" }, t.last_error || "–"),
          ),
        );
      }
    }
    if (n === 0) {
      frag.append(el("tr", { class: "empty" }, el("td", { colspan: 7 }, "No notification target is configured.")));
    }
    body.replaceChildren(frag);
    body.dataset.rows = String(n);
  }

  async function loadAlerts() {
    if (alerts.inflight) return;
    alerts.inflight = true;
    const box = $("alerts");
    if (box.dataset.state === "idle") box.dataset.state = "loading";
    const got = await getJson("api/alerts");
    alerts.inflight = false;
    $("alerts-body").hidden = got.state !== "ok";
    if (got.state !== "ok") {
      box.dataset.state = got.state;
      $("alerts-message").textContent =
        got.state === "unavailable"
          ? `Alerts are not available on this logd (GET /api/alerts: ${got.message}).`
          : `The alerts could not be loaded: ${got.message}`;
      $("alerts-message").hidden = false;
      fillAlerts("alerts-firing", [], false, 5, "–");
      fillAlerts("alerts-recent", [], true, 7, "–");
      fillDeliveries({});
      if (view === "alerts") setStatus(got.state === "unavailable" ? "Alerts: not available" : "Alerts: error");
      return;
    }
    $("alerts-message").hidden = true;
    const data = got.body || {};
    const firing = Array.isArray(data.firing) ? data.firing : [];
    const recent = Array.isArray(data.recent) ? data.recent : [];
    firing.sort((a, b) => timeKey(b.starts_at) - timeKey(a.starts_at));
    const latest = (a) => Math.max(timeKey(a.starts_at), timeKey(a.ends_at));
    recent.sort((a, b) => latest(b) - latest(a));
    fillAlerts("alerts-firing", firing, false, 5, "Nothing is firing.");
    fillAlerts("alerts-recent", recent, true, 7, "Nothing fired recently.");
    fillDeliveries(data.deliveries);
    const down = Array.isArray(data.nodes) ? data.nodes.filter((n) => n && n.ok === false) : [];
    if (down.length > 0) {
      $("alerts-message").textContent = down
        .map((n) => `Node ${n.node || "?"} (${n.url || "?"}) did not answer: ${n.error || "unknown error"}; its alerts are missing.`)
        .join(" ");
      $("alerts-message").hidden = false;
    }
    box.dataset.firing = String(firing.length);
    box.dataset.recent = String(recent.length);
    box.dataset.state = "ok";
    $("alerts-firing-count").textContent = `(${firing.length})`;
    $("alerts-recent-count").textContent = `(${recent.length})`;
    badge("alerts-badge", firing.length, `${firing.length} alerts firing`);
    if (view === "alerts") setStatus(`Alerts: ${firing.length} firing, ${recent.length} resolved recently`);
  }

  // ---------------------------------------------------------------------------------
  // Wiring.

  function init() {
    fleetHead();
    $("filters").addEventListener("submit", (e) => {
      e.preventDefault();
      const v = view === "tail" ? "tail" : "search";
      writeHash(v);
      if (v === "tail") tailStart(false);
      else runSearch();
    });
    $("clear").addEventListener("click", () => {
      fillForm(new URLSearchParams());
      $("filters").requestSubmit();
    });
    $("search-older").addEventListener("click", olderPage);
    $("search-count").addEventListener("click", countAll);
    $("tail-toggle").addEventListener("click", () => {
      if (tail.paused || !tail.source) tailStart(tail.cursor !== "");
      else tailPause();
    });
    $("tail-clear").addEventListener("click", () => {
      $("tail-rows").replaceChildren();
      tail.received = 0;
      updateTailCounts();
    });
    $("fleet-filter").addEventListener("input", renderFleet);
    const tabs = VIEWS.map((v) => $("tab-" + v));
    for (const tab of tabs) {
      tab.addEventListener("click", () => {
        const v = tab.dataset.view;
        if (v === view) return;
        showView(v);
        writeHash(v);
        if (v === "tail" && !tail.paused) tailStart(tail.cursor !== "" && tail.params === formParams(false).toString());
        if (v === "search" && !search.params) runSearch();
      });
      tab.addEventListener("keydown", (e) => {
        const i = tabs.indexOf(tab);
        const next = e.key === "ArrowRight" ? i + 1 : e.key === "ArrowLeft" ? i - 1 : null;
        if (next === null) return;
        e.preventDefault();
        const target = tabs[(next + tabs.length) % tabs.length];
        target.focus();
        target.click();
      });
    }
    window.addEventListener("hashchange", () => {
      if (location.hash !== lastHash) applyHash();
    });
    window.addEventListener("popstate", () => {
      if (location.hash !== lastHash) applyHash();
    });
    setInterval(() => {
      if (document.hidden) return;
      if (view === "fleet") loadFleet();
      if (view === "alerts") loadAlerts();
    }, POLL_MS);
    applyHash();
    // The tabs' badges: once at start, whatever the view.
    if (view !== "fleet") loadFleet();
    if (view !== "alerts") loadAlerts();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
