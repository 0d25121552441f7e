// livedash tiles: latest values, ages, sparklines and alert state, kept live.
//
// Readings are coalesced per series and drawn at most ~30 times a second,
// so a 1 kHz sensor costs the page 30 small redraws, not 1000.
import { emit, on } from "./bus.js";
import { domId, el } from "./dom.js";
import { age, fmtTime, fmtValue } from "./format.js";

const MAX_POINTS = 120;
const FRAME_MS = 33;

const pending = new Map();   // series -> {latest, points[]}
let flushTimer = null;
const ruleLabels = new Map(); // rule id -> "above 80" (or its name)

// A series is device + metric + tags; its tile's DOM id part matches _tile.html (fragments.tile_id).
export function tagText(tags) {
  return Object.keys(tags || {}).sort().map((k) => `${k}=${tags[k]}`).join(",");
}

function tileDomId(r) {
  const tags = tagText(r.tags);
  return tags ? domId(r.device, r.metric, tags) : domId(r.device, r.metric);
}

function tileOf(r) {
  return document.getElementById("tile--" + tileDomId(r));
}

function drawSpark(svg) {
  const line = svg.querySelector("polyline");
  const points = svg._points || [];
  if (!line || points.length === 0) return;
  let lo = Infinity, hi = -Infinity;
  for (const p of points) { lo = Math.min(lo, p[1]); hi = Math.max(hi, p[1]); }
  // The sparkline's scale, so a flat-looking line is read as what it is.
  if (svg.classList.contains("spark") && !svg.classList.contains("big")) {
    let scale = svg.nextElementSibling;
    if (!scale || !scale.classList.contains("spark-scale")) {
      scale = el("p", { class: "spark-scale" });
      svg.after(scale);
    }
    scale.textContent = lo === hi ? `${fmtValue(lo)}` : `${fmtValue(lo)} – ${fmtValue(hi)}`;
    scale.title = "lowest – highest of the points drawn";
  }
  const span = hi - lo || 1, n = points.length;
  line.setAttribute("points", points.map((p, i) =>
    `${(n === 1 ? 100 : (i / (n - 1)) * 100).toFixed(2)},${(28 - ((p[1] - lo) / span) * 26).toFixed(2)}`).join(" "));
}

// Points in ts order; a replayed point (same ts and value) is not added twice.
export function addPoint(points, ts, value, max) {
  let i = points.length;
  while (i > 0 && points[i - 1][0] > ts) i--;
  if (i > 0 && points[i - 1][0] === ts && points[i - 1][1] === value) return points;
  points.splice(i, 0, [ts, value]);
  if (points.length > max) points.splice(0, points.length - max);
  return points;
}

function initSparks(root) {
  for (const svg of root.querySelectorAll("svg.spark")) {
    try { svg._points = JSON.parse(svg.dataset.points || "[]"); } catch (e) { svg._points = []; }
    drawSpark(svg);
  }
}

// A series' usual interval: the median gap between its last points (0 when unknown).
export function usualInterval(points) {
  const recent = points.slice(-21), gaps = [];
  for (let i = 1; i < recent.length; i++) if (recent[i][0] > recent[i - 1][0]) gaps.push(recent[i][0] - recent[i - 1][0]);
  if (gaps.length < 2) return 0;
  gaps.sort((a, b) => a - b);
  return gaps[Math.floor(gaps.length / 2)];
}

// Silent for more than LIVEDASH_STALE_FACTOR times its usual interval: the tile says so.
function markStale(tile, now) {
  const p = tile.querySelector(".value"), svg = tile.querySelector("svg.spark");
  const interval = usualInterval((svg && svg._points) || []);
  const factor = Number(document.body.dataset.staleFactor) || 3;
  const silent = p && interval ? now - Number(p.dataset.ts || 0) : 0;
  const stale = interval > 0 && silent > factor * interval;
  tile.classList.toggle("stale", stale);
  let badge = tile.querySelector(".stale-badge");
  if (stale && !badge) {
    badge = el("span", { class: "stale-badge" }, "silent");
    tile.querySelector("h3").append(" ", badge);
  }
  if (badge) {
    badge.hidden = !stale;
    badge.title = stale ? `last reading ${age(now - silent)}; usually one every ${Math.round(interval / 100) / 10} s` : "";
  }
}

function refreshAges() {
  for (const t of document.querySelectorAll(".value time[datetime]")) {
    t.textContent = age(Number(t.getAttribute("datetime")));
  }
  const now = Date.now();
  for (const tile of document.querySelectorAll("#tiles .tile")) markStale(tile, now);
}

// A tile for a series this page has not drawn yet (same markup as _tile.html).
function buildTile(r) {
  const sid = tileDomId(r);
  const tile = el("article", { class: "tile", id: "tile--" + sid, "data-series": r.series || `${r.device}/${r.metric}` });
  const h3 = tile.appendChild(el("h3"));
  const query = new URLSearchParams(Object.keys(r.tags || {}).sort().map((k) => ["tag", `${k}:${r.tags[k]}`])).toString();
  const href = `/series/${encodeURIComponent(r.device)}/${encodeURIComponent(r.metric)}` + (query ? "?" + query : "");
  const a = h3.appendChild(el("a", { href }));
  a.appendChild(el("span", { class: "device" }, r.device));
  a.append(" ");
  a.appendChild(el("span", { class: "metric" }, r.metric));
  if (tagText(r.tags)) {
    const tags = tile.appendChild(el("p", { class: "tags" }));
    for (const k of Object.keys(r.tags).sort()) tags.append(el("span", { class: "tag" }, `${k}=${r.tags[k]}`), " ");
  }
  tile.appendChild(el("p", { class: "alert-pill", "data-alert": "none", "data-rules": "" }, "No alert rule"));
  const value = tile.appendChild(el("p", { class: "value", id: "value--" + sid }));
  value.appendChild(el("strong"));
  value.appendChild(el("span", { class: "unit" }));
  value.appendChild(el("time"));
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("id", "spark--" + sid);
  svg.setAttribute("viewBox", "0 0 100 30");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.appendChild(document.createElementNS("http://www.w3.org/2000/svg", "polyline"));
  svg._points = [];
  tile.appendChild(svg);
  const tiles = document.getElementById("tiles");
  const empty = tiles.querySelector(".empty");
  if (empty) empty.remove();
  // Keep the server's order (device, then metric), under the device's heading (_tiles.html).
  const all = [...tiles.querySelectorAll(".tile")];
  let after = all.find((t) => t.dataset.series > tile.dataset.series) || null;
  const own = (t) => t.dataset.series.slice(0, t.dataset.series.indexOf("/"));
  if (after && own(after) !== r.device) {
    // The next tile is another device's: go before that device's heading.
    after = tiles.querySelector(`.device-heading[data-device="${CSS.escape(own(after))}"]`) || after;
  }
  if (!tiles.querySelector(`.device-heading[data-device="${CSS.escape(r.device)}"]`)) {
    tiles.insertBefore(el("h2", { class: "device-heading", "data-device": r.device }, r.device), after);
  }
  tiles.insertBefore(tile, after);
  applyFilter();
  return tile;
}

function setValue(tile, r) {
  let p = tile.querySelector(".value");
  if (!p) {
    tile.querySelector(".empty")?.remove();
    p = el("p", { class: "value", id: "value--" + tileDomId(r) });
    p.append(el("strong"), " ", el("span", { class: "unit" }), el("time"));
    tile.querySelector(".alert-pill").after(p);
  }
  if (Number(p.dataset.ts || 0) > r.ts) return;  // an older reading never replaces a newer one
  p.dataset.ts = r.ts;
  p.dataset.value = r.value;
  p.querySelector("strong").textContent = fmtValue(r.value);
  let unit = p.querySelector(".unit");
  if (!unit && r.unit) { unit = el("span", { class: "unit" }); p.querySelector("strong").after(" ", unit); }
  if (unit) unit.textContent = r.unit || "";
  const t = p.querySelector("time");
  t.setAttribute("datetime", r.ts);
  t.title = fmtTime(r.ts);
  t.textContent = age(r.ts);
}

function flush() {
  flushTimer = null;
  for (const [sid, item] of pending) {
    let tile = tileOf(item.ref);
    if (!tile && document.getElementById("tiles") && item.latest) tile = buildTile(item.latest);
    if (!tile) continue;
    if (item.latest) setValue(tile, item.latest);
    const svg = tile.querySelector("svg.spark");
    if (svg) {
      svg._points = svg._points || [];
      for (const [ts, v] of item.points) addPoint(svg._points, ts, v, MAX_POINTS);
      drawSpark(svg);
    }
    emit("series-points", { sid: sid, points: item.points, latest: item.latest });
  }
  pending.clear();
}

function onMetric(ev) {
  const r = ev.data;
  const sid = r.series || `${r.device}/${r.metric}`;
  let item = pending.get(sid);
  if (!item) { item = { ref: r, latest: null, points: [] }; pending.set(sid, item); }
  item.points.push([r.ts, r.value]);
  if (r.latest !== false && (!item.latest || item.latest.ts <= r.ts)) item.latest = r;
  if (!flushTimer) flushTimer = setTimeout(flush, FRAME_MS);
}

// --- alert state -------------------------------------------------------------------
function ids(s) { return new Set((s || "").split(",").filter(Boolean)); }

function paintPill(pill) {
  const rules = ids(pill.dataset.rules), hot = [...ids(pill.dataset.firing)].filter((id) => rules.has(id));
  pill.dataset.firing = hot.join(",");
  if (hot.length) {
    pill.dataset.alert = "firing";
    pill.textContent = "Alert: " + (ruleLabels.get(hot[0]) || "threshold crossed");
  } else {
    pill.dataset.alert = rules.size ? "ok" : "none";
    pill.textContent = rules.size ? "OK" : "No alert rule";
  }
}

function label(rule) {
  return rule.name || `${rule.op} ${fmtValue(rule.threshold)}`;
}

function pillFor(rule) {
  const tile = tileOf(rule);
  return tile && tile.querySelector(".alert-pill");
}

function onAlert(ev) {
  const d = ev.data, rule = d.rule || {};
  if (d.rule) ruleLabels.set(d.rule_id, label(rule));
  const pill = pillFor(rule);
  if (!pill) return;
  const rules = ids(pill.dataset.rules), hot = ids(pill.dataset.firing);
  rules.add(d.rule_id);
  if (d.state === "firing") hot.add(d.rule_id); else hot.delete(d.rule_id);
  pill.dataset.rules = [...rules].join(",");
  pill.dataset.firing = [...hot].join(",");
  paintPill(pill);
}

function onRule(ev) {
  const rule = ev.data.rule;
  if (!rule) return;
  ruleLabels.set(rule.id, label(rule));
  const pill = pillFor(rule);
  if (!pill) return;
  const rules = ids(pill.dataset.rules), hot = ids(pill.dataset.firing);
  if (rule.deleted || rule.enabled === false) { rules.delete(rule.id); hot.delete(rule.id); } else rules.add(rule.id);
  pill.dataset.rules = [...rules].join(",");
  pill.dataset.firing = [...hot].join(",");
  paintPill(pill);
}

// After a reset: re-read the tiles from the server (htmx is a classic script, loaded first).
export async function reload() {
  const tiles = document.getElementById("tiles");
  if (!tiles || !window.htmx) { location.reload(); return; }
  await window.htmx.ajax("GET", "/fragments/tiles", { target: tiles, swap: "innerHTML" });
  initSparks(tiles);
  refreshAges();
  const input = document.getElementById("tile-filter");
  if (input) input.value = filterText;
  applyFilter();
}

// The filter box: tiles whose device, metric or tags contain the text (any case); empty devices' headings hide too.
let filterText = "";
function applyFilter() {
  const tiles = document.getElementById("tiles");
  if (!tiles) return;
  const q = filterText.trim().toLowerCase();
  const shown = new Set();
  for (const tile of tiles.querySelectorAll(".tile")) {
    const text = (tile.dataset.series + " " + (tile.querySelector(".tags")?.textContent || "")).toLowerCase();
    tile.hidden = !!q && !text.includes(q);
    if (!tile.hidden) shown.add(tile.dataset.series.slice(0, tile.dataset.series.indexOf("/")));
  }
  for (const h of tiles.querySelectorAll(".device-heading")) h.hidden = !shown.has(h.dataset.device);
}

export function init() {
  initSparks(document);
  refreshAges();
  document.addEventListener("input", (e) => {
    if (e.target.id !== "tile-filter") return;
    filterText = e.target.value;
    applyFilter();
  });
  setInterval(refreshAges, 1000);
  on("metric", onMetric);
  on("alert", onAlert);
  on("alert_rule", onRule);
}
