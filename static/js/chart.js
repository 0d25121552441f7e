// livedash series chart: uPlot (vendored) with the series' notes as markers.
// Click a point to pin a new note at its time. Points arrive through the
// tiles module's throttled flush, so the chart redraws at most ~30 times/s.
// uPlot is a classic script the series page loads before the modules.
//
// The time range lives in the URL (?from=-6h&to=now, anything the API takes),
// so it can be shared: the picker and drag-to-zoom push a new URL, Back (or
// the browser's back) returns to the previous one. A range is fetched from
// /api/metrics/series at about one point per pixel: raw points as a line,
// rollup rows as a min–max band with the mean as the line. While the range
// ends at now, new readings extend the chart and points older than its start
// roll off the left. Without a range, the newest points (as rendered).
import { api } from "./api.js";
import { on } from "./bus.js";
import { fmtValue } from "./format.js";
import { addPoint, tagText } from "./tiles.js";

const MAX_POINTS = 2000;

function css(name, fallback) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;
}

// Notes of the range (fetched with it) and on this page, as chart markers: [{ts, text}].
let rangeNotes = [];
function markers() {
  const shown = [...document.querySelectorAll("#notes > .note")].map((li) => ({
    ts: Number(li.dataset.ts), text: (li.querySelector(".note-text") || {}).textContent || "",
  }));
  const seen = new Set(shown.map((m) => `${m.ts} ${m.text}`));
  return shown.concat(rangeNotes.filter((m) => !seen.has(`${m.ts} ${m.text}`)));
}

function markerPlugin() {
  return { hooks: { draw: [(u) => {
    const ctx = u.ctx, top = u.bbox.top, height = u.bbox.height;
    const [lo, hi] = [u.scales.x.min, u.scales.x.max];
    ctx.save();
    ctx.strokeStyle = css("--warn", "#9a6700");
    ctx.fillStyle = css("--warn", "#9a6700");
    ctx.lineWidth = 1.5 * devicePixelRatio;
    ctx.setLineDash([4 * devicePixelRatio, 3 * devicePixelRatio]);
    ctx.font = `${11 * devicePixelRatio}px system-ui, sans-serif`;
    for (const m of markers()) {
      const x = m.ts / 1000;
      if (x < lo || x > hi) continue;
      const px = Math.round(u.valToPos(x, "x", true));
      ctx.beginPath();
      ctx.moveTo(px, top);
      ctx.lineTo(px, top + height);
      ctx.stroke();
      ctx.fillText("▼ " + (m.text.length > 24 ? m.text.slice(0, 23) + "…" : m.text), px + 3, top + 12 * devicePixelRatio);
    }
    ctx.restore();
  }] } };
}

const RANGES = { "15m": 15 * 60e3, "1h": 3600e3, "6h": 6 * 3600e3, "24h": 86400e3, "7d": 7 * 86400e3, "30d": 30 * 86400e3 };
const STEP_NAMES = { 60000: "1-minute", 3600000: "1-hour" };

function urlRange() {
  const q = new URLSearchParams(location.search);
  return q.get("from") ? { from: q.get("from"), to: q.get("to") || "now" } : null;
}

function setUrlRange(range) {
  const q = new URLSearchParams(location.search);
  if (range) { q.set("from", range.from); if (range.to && range.to !== "now") q.set("to", range.to); else q.delete("to"); }
  else { q.delete("from"); q.delete("to"); }
  const qs = q.toString();
  history.pushState({ range }, "", location.pathname + (qs ? "?" + qs : ""));
}

export function init() {
  const box = document.getElementById("chart");
  if (!box || !window.uPlot) return;
  let points;
  try { points = JSON.parse(box.dataset.points || "[]"); } catch (e) { points = []; }
  const unit = box.dataset.unit || "";
  const device = box.dataset.device, metric = box.dataset.metric;
  let tags = {};
  try { tags = JSON.parse(box.dataset.tags || "{}"); } catch (e) { tags = {}; }
  const tagKey = tagText(tags);
  const picker = document.getElementById("range-picker");
  const status = document.getElementById("range-status");
  let rows = null;        // rollup rows [ts, min, max, mean, count, last] when aggregated, else null
  let step = 0;           // ms per row (0: raw points)
  let range = null;       // {from, to} as in the URL, or null: the newest points
  let span = null;        // [from ms, to ms] of the loaded range
  let plot = null;

  const fg = css("--fg", "#1c2330"), grid = css("--line", "#d9dee6"), accent = css("--accent", "#0969da");
  const axis = { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
  const fmt = (u, v) => v == null ? "—" : `${fmtValue(v)} ${unit}`;
  const data = () => rows
    ? [rows.map((r) => r[0] / 1000), rows.map((r) => r[3]), rows.map((r) => r[1]), rows.map((r) => r[2])]
    : [points.map((p) => p[0] / 1000), points.map((p) => p[1])];

  function build() {
    if (plot) plot.destroy();
    const line = {
      label: rows ? `${box.dataset.series} (mean)` : box.dataset.series, stroke: accent, width: 2,
      fill: rows ? undefined : "color-mix(in srgb, " + accent + " 12%, transparent)",
      points: { show: () => (rows || points).length < 80 }, value: fmt,
    };
    const series = [{}, line];
    const opts = {
      width: box.clientWidth || 600,
      height: 320,
      plugins: [markerPlugin()],
      cursor: { drag: { x: true, y: false } },
      legend: { live: true },
      scales: { x: { time: true } },
      axes: [axis, { ...axis, label: unit, size: 60 }],
      series,
      hooks: { setSelect: [zoomTo] },
    };
    if (rows) {
      const edge = "color-mix(in srgb, " + accent + " 35%, transparent)";
      series.push({ label: "min", stroke: edge, width: 1, value: fmt }, { label: "max", stroke: edge, width: 1, value: fmt });
      opts.bands = [{ series: [3, 2], fill: "color-mix(in srgb, " + accent + " 14%, transparent)" }];
    }
    plot = new window.uPlot(opts, data(), box);
    // Click a point: prefill the note form with its time.
    plot.over.addEventListener("click", () => {
      const idx = plot.cursor.idx, list = rows || points;
      if (idx == null || !list[idx]) return;
      const form = document.querySelector("form.note-create");
      if (!form) return;
      form.querySelector("input[name=ts]").value = new Date(list[idx][0]).toISOString();
      form.querySelector("textarea[name=text]").focus();
    });
    if (span) plot.setScale("x", { min: span[0] / 1000, max: span[1] / 1000 });
    box.dataset.step = String(step);
    box.dataset.count = String((rows || points).length);
    box.dataset.range = location.search;  // what is drawn (the tests wait on it)
    box.dataset.ready = "1";
  }

  // Drag across the chart: that stretch becomes the range (a finer tier, maybe raw).
  function zoomTo(u) {
    if (!u.select || u.select.width < 5) return;
    const from = Math.round(u.posToVal(u.select.left, "x") * 1000);
    const to = Math.round(u.posToVal(u.select.left + u.select.width, "x") * 1000);
    u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
    go({ from: String(from), to: String(to) });
  }

  function showStatus(text) { if (status) status.textContent = text; }

  function markPicker() {
    if (!picker) return;
    for (const b of picker.querySelectorAll("button[data-range]")) {
      b.setAttribute("aria-pressed", String(!!range && range.from === "-" + b.dataset.range && range.to === "now"));
    }
    const back = picker.querySelector("[data-range-back]");
    if (back) back.hidden = !(history.state && "range" in history.state);
    const form = picker.querySelector("form.range-custom");
    if (form && range) { form.elements.from.value = range.from; form.elements.to.value = range.to; }
  }

  async function load() {
    range = urlRange();
    markPicker();
    if (!range) {
      rows = null; step = 0; span = null;
      try { points = JSON.parse(box.dataset.points || "[]"); } catch (e) { points = []; }
      showStatus("newest points");
      rangeNotes = [];
      build();
      return;
    }
    const q = new URLSearchParams({ device, metric, from: range.from, to: range.to, points: String(Math.max(100, Math.round(box.clientWidth || 600))) });
    for (const k of Object.keys(tags)) q.append("tag", `${k}:${tags[k]}`);
    showStatus("loading…");
    const res = await api("/api/metrics/series?" + q);
    const body = await res.json();
    if (!res.ok) { showStatus(`${body.detail || body.error}`); return; }
    // The filter also matches series with more tags: this page's series is the one with exactly its tags.
    const s = body.series.find((x) => tagText(x.tags) === tagKey) || { points: [], step_ms: body.step_ms || 0 };
    step = s.step_ms || 0;
    rows = step ? s.points : null;
    points = step ? [] : s.points;
    span = [body.from, body.to];
    showStatus(step ? `${STEP_NAMES[step] || step / 1000 + " s"} buckets: min–max band, mean line` : "raw points");
    const notes = await api("/api/annotations?" + new URLSearchParams({ device, from: String(body.from), to: String(body.to), limit: "500" }));
    rangeNotes = notes.ok ? (await notes.json()).annotations
      .filter((a) => a.metric == null || a.metric === metric).map((a) => ({ ts: a.ts, text: a.text || "" })) : [];
    box.dataset.markers = String(rangeNotes.length);
    build();
  }

  function go(next) { setUrlRange(next); load(); }

  if (picker) {
    picker.addEventListener("click", (e) => {
      const b = e.target.closest("button");
      if (!b) return;
      if (b.dataset.range) go({ from: "-" + b.dataset.range, to: "now" });
      else if ("rangeBack" in b.dataset) history.back();
      else if ("rangeNewest" in b.dataset) go(null);
    });
    picker.querySelector("form.range-custom")?.addEventListener("submit", (e) => {
      e.preventDefault();
      const f = e.target.elements;
      if (f.from.value.trim()) go({ from: f.from.value.trim(), to: f.to.value.trim() || "now" });
    });
  }
  window.addEventListener("popstate", load);
  box.querySelector("svg.spark")?.setAttribute("hidden", "");
  load();

  // Live: new readings extend the chart while the range ends at now; older points roll off the left.
  on("series-points", (e) => {
    if (e.sid !== box.dataset.series || !plot) return;
    if (range && range.to !== "now") return;
    if (range && span) {
      const width = span[1] - span[0], end = Math.max(span[1], ...e.points.map((p) => p[0]));
      span = [end - width, end];
    }
    if (rows) {
      for (const [ts, v] of e.points) mergeRow(rows, ts, v, step);
      while (rows.length && span && rows[0][0] + step <= span[0]) rows.shift();
    } else {
      for (const [ts, v] of e.points) addPoint(points, ts, v, MAX_POINTS);
      while (points.length && span && points[0][0] < span[0]) points.shift();
    }
    plot.setData(data());
    if (span) plot.setScale("x", { min: span[0] / 1000, max: span[1] / 1000 });
    box.dataset.count = String((rows || points).length);
  });
  on("notes-changed", () => plot && plot.redraw(false));
  on("annotation", () => setTimeout(() => plot && plot.redraw(false), 50));
  new ResizeObserver(() => plot && plot.setSize({ width: box.clientWidth, height: 320 })).observe(box);
}

// A live reading into its rollup row: min, max, mean and count merge; last is the newest (by ts) as on the server.
function mergeRow(rows, ts, value, step) {
  const bucket = ts - (ts % step);
  let i = rows.length;
  while (i > 0 && rows[i - 1][0] > bucket) i--;
  const row = rows[i - 1];
  if (row && row[0] === bucket) {
    const count = row[4] + 1;
    row[3] = (row[3] * row[4] + value) / count;
    row[1] = Math.min(row[1], value); row[2] = Math.max(row[2], value); row[4] = count;
    if (!row._lastTs || ts >= row._lastTs) { row[5] = value; row._lastTs = ts; }
  } else {
    const fresh = [bucket, value, value, value, 1, value];
    fresh._lastTs = ts;
    rows.splice(i, 0, fresh);
  }
}
