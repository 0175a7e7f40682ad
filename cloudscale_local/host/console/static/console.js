// The dashboard: one EventSource for charts and events, fetches only on a click or a change.
// Everything shown from an event is set as text, never as HTML: rejected items are whatever a producer sent.
"use strict";

const KEPT_IN_PAGE = 500;
const CONSOLE_HEADER = "X-CloudScale-Console";
const events = [];
const seenTenants = new Set();
const seenTypes = new Set();
let selectedSeq = null;
let lastDeadLetterDepth = null;

const $ = (id) => document.getElementById(id);

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

// --- charts ---------------------------------------------------------------------------------
const chartsRoot = $("charts");
const charts = {
  throughput: new LineChart(chartsRoot, "chart-throughput", "Events per second", "/s"),
  latency: new LineChart(chartsRoot, "chart-latency", "Ingest latency", " ms"),
  depth: new LineChart(chartsRoot, "chart-depth", "Queue and dead letters", ""),
  lag: new LineChart(chartsRoot, "chart-lag", "Analytics lag (received → analytics)", " ms"),
  limited: new LineChart(chartsRoot, "chart-limited", "429s by limit", "/s"),
  fraud: new LineChart(chartsRoot, "chart-fraud", "Fraud by rule", "/s"),
};

function onStats(stats) {
  charts.throughput.push({ ingested: stats.ingested, rejected: stats.rejected, stored: stats.stored, analytics: stats.analytics });
  charts.latency.push({ p50: stats.ingestP50Ms, p99: stats.ingestP99Ms });
  charts.depth.push({ queue: stats.queueDepth, "dead letters": stats.deadLetterDepth });
  charts.lag.push({ "mean lag": stats.analyticsLagMs });
  charts.limited.push(stats.rateLimited);
  charts.fraud.push(stats.fraud);
  if (stats.deadLetterDepth !== lastDeadLetterDepth) {
    lastDeadLetterDepth = stats.deadLetterDepth;
    loadDeadLetters();
  }
}

// --- live events ----------------------------------------------------------------------------
function filters() {
  return {
    tenant: $("filter-tenant").value.trim(),
    type: $("filter-type").value.trim(),
    outcome: $("filter-outcome").value,
  };
}

function matches(event, wanted) {
  return (!wanted.tenant || event.tenantId === wanted.tenant)
    && (!wanted.type || event.eventType === wanted.type)
    && (!wanted.outcome || event.outcome === wanted.outcome);
}

function reasonText(reason) {
  return reason.field ? `${reason.field}: ${reason.message} (${reason.code})` : `${reason.message} (${reason.code})`;
}

function eventRow(event) {
  const row = element("li", `event ${event.outcome}`);
  row.tabIndex = 0;
  row.dataset.seq = event.seq;
  if (event.eventId) row.dataset.eventId = event.eventId;
  if (event.seq === selectedSeq) row.classList.add("selected");
  row.append(
    element("span", "time", new Date(event.at).toLocaleTimeString()),
    element("span", "outcome", event.outcome),
    element("span", "tenant", event.tenantId ?? "(no tenant)"),
    element("span", "type", event.eventType ?? "(no type)"),
    element("span", "meta", `${event.status} · ${event.api}`),
  );
  const correlation = event.event && event.event.correlationId;
  if (correlation) row.append(element("span", "meta", `correlation ${correlation}`));
  for (const reason of event.reasons) row.append(element("span", "reason", reasonText(reason)));
  row.addEventListener("click", () => showEvent(event));
  row.addEventListener("keydown", (key) => { if (key.key === "Enter") showEvent(event); });
  return row;
}

function rememberOption(set, listId, value) {
  if (!value || set.has(value)) return;
  set.add(value);
  $(listId).append(element("option", null, value));
  $(listId).lastChild.value = value;
}

function onEvent(event) {
  events.unshift(event);
  if (events.length > KEPT_IN_PAGE) events.pop();
  rememberOption(seenTenants, "tenants", event.tenantId);
  rememberOption(seenTypes, "types", event.eventType);
  const list = $("event-list");
  if (matches(event, filters())) {
    list.prepend(eventRow(event));
    while (list.children.length > KEPT_IN_PAGE) list.lastChild.remove();
  }
  $("events-empty").hidden = events.length > 0;
}

function renderEvents() {
  const wanted = filters();
  const list = $("event-list");
  list.replaceChildren(...events.filter((event) => matches(event, wanted)).map(eventRow));
}

for (const id of ["filter-tenant", "filter-type", "filter-outcome"]) {
  $(id).addEventListener("input", renderEvents);
}
$("filters").addEventListener("submit", (submitted) => submitted.preventDefault());

// --- one event ------------------------------------------------------------------------------
let shown = null;

function showEvent(event) {
  shown = event;
  selectedSeq = event.seq;
  for (const row of document.querySelectorAll(".event.selected")) row.classList.remove("selected");
  const row = document.querySelector(`.event[data-seq="${event.seq}"]`);
  if (row) row.classList.add("selected");
  $("detail").hidden = false;
  $("detail-title").textContent = `Event ${event.eventId ?? `#${event.seq}`}`;
  const facts = $("detail-facts");
  facts.replaceChildren();
  for (const [name, value] of [["outcome", event.outcome], ["status", event.status], ["api", event.api],
    ["tenant", event.tenantId], ["type", event.eventType], ["received", event.at]]) {
    facts.append(element("dt", null, name), element("dd", null, value ?? "–"));
  }
  $("detail-reasons").replaceChildren(...event.reasons.map((reason) => element("li", null, reasonText(reason))));
  loadStored();
  $("detail").scrollIntoView({ block: "nearest" });
}

// The process stage stores an event a moment after ingest took it: a 404 is looked at again a
// few times while the event stays shown, then left to the "Look again" button.
const STORED_TRIES = 20;
const STORED_RETRY_MS = 500;

async function loadStored(tries = 1) {
  const event = shown;
  const status = $("detail-status");
  const documentBox = $("detail-document");
  const fraud = $("detail-fraud");
  $("detail-refresh").hidden = true;
  fraud.textContent = "–";
  if (event.outcome === "rejected" || !event.eventId || !event.tenantId) {
    status.textContent = "Rejected: never queued, never stored. What was sent:";
    documentBox.textContent = JSON.stringify(event.event, null, 2);
    return;
  }
  if (tries === 1) {
    status.textContent = "Loading…";
    documentBox.textContent = "";
  }
  const url = `/dashboard/api/events/${encodeURIComponent(event.tenantId)}/${encodeURIComponent(event.eventId)}`;
  const answer = await fetch(url, { headers: { Accept: "application/json" } });
  if (shown !== event) return;
  const body = await answer.json();
  if (answer.ok) {
    status.textContent = "As stored (enrichment and fraud result included):";
    documentBox.textContent = JSON.stringify(body, null, 2);
    const result = body.fraud || {};
    const reasons = (result.reasons || []).map((reason) => `${reason.code} (${reason.rule})`);
    fraud.textContent = `score ${result.score ?? "–"} · ${result.suspicious ? "SUSPICIOUS" : "not suspicious"}`
      + (reasons.length ? ` · ${reasons.join(", ")}` : "");
  } else {
    status.textContent = `${body.message ?? answer.statusText} (HTTP ${answer.status}). As sent:`;
    documentBox.textContent = JSON.stringify(event.event, null, 2);
    if (answer.status === 404 && tries < STORED_TRIES) {
      setTimeout(() => { if (shown === event) loadStored(tries + 1); }, STORED_RETRY_MS);
    } else {
      $("detail-refresh").hidden = false;
    }
  }
}
$("detail-refresh").addEventListener("click", () => loadStored());

// --- dead letters ---------------------------------------------------------------------------
let loadingDeadLetters = null;

async function loadDeadLetters() {
  if (loadingDeadLetters) return loadingDeadLetters;
  loadingDeadLetters = (async () => {
    const status = $("dead-letters-status");
    try {
      const answer = await fetch("/dashboard/api/dead-letters", { headers: { Accept: "application/json" } });
      const body = await answer.json();
      if (!answer.ok) {
        status.textContent = body.message ?? `HTTP ${answer.status}`;
        return;
      }
      const list = $("dead-letter-list");
      list.replaceChildren(...body.deadLetters.map(deadLetterRow));
      status.textContent = body.deadLetters.length ? "" : "None: every message was processed or is still queued.";
    } finally {
      loadingDeadLetters = null;
    }
  })();
  return loadingDeadLetters;
}

function deadLetterRow(deadLetter) {
  const row = element("li", "dead-letter");
  row.dataset.id = deadLetter.id;
  const event = deadLetter.body && deadLetter.body.event;
  row.append(
    element("div", "reason", `#${deadLetter.id} · ${deadLetter.reason ?? "no reason"}`),
    element("div", null, deadLetter.description ?? ""),
    element("div", "muted", [
      event ? `${event.tenantId ?? "?"} / ${event.eventType ?? "?"}` : `message ${deadLetter.messageId}`,
      `${deadLetter.deliveryCount ?? "?"} deliveries`,
      deadLetter.deadLetteredAt ? new Date(deadLetter.deadLetteredAt).toLocaleString() : "",
    ].filter(Boolean).join(" · ")),
  );
  const replay = element("button", "replay", "Replay");
  replay.type = "button";
  replay.addEventListener("click", () => replayDeadLetter(deadLetter, replay));
  row.append(replay);
  return row;
}

async function replayDeadLetter(deadLetter, button) {
  if (!window.confirm(`Put dead letter #${deadLetter.id} (${deadLetter.reason ?? "no reason"}) back on the events queue?`)) {
    return;
  }
  button.disabled = true;
  const answer = await fetch(`/dashboard/api/dead-letters/${encodeURIComponent(deadLetter.id)}/replay`, {
    method: "POST",
    headers: { [CONSOLE_HEADER]: "1", Accept: "application/json" },
  });
  const body = await answer.json();
  // Its own line: the list's status is rewritten whenever the list is loaded again.
  $("dead-letters-outcome").textContent = answer.ok
    ? `Replayed #${deadLetter.id}: back on the events queue.`
    : (body.message ?? `HTTP ${answer.status}`);
  await loadDeadLetters();
}

// --- the stream -----------------------------------------------------------------------------
function connect() {
  const pill = $("connection");
  const source = new EventSource("/dashboard/stream");
  source.addEventListener("open", () => { pill.textContent = "live"; pill.className = "pill live"; });
  source.addEventListener("error", () => { pill.textContent = "reconnecting…"; pill.className = "pill down"; });
  source.addEventListener("stats", (message) => onStats(JSON.parse(message.data)));
  source.addEventListener("event", (message) => onEvent(JSON.parse(message.data)));
}

loadDeadLetters();
connect();
