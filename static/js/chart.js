// livedash series chart: uPlot (vendored) with the series' notes as markers.
// Click a point to pin a new note at its time. Points arrive through the
// tiles module's throttled flush, so the chart redraws at most ~30 times/s.
// uPlot is a classic script the series page loads before the modules.
import { on } from "./bus.js";
import { fmtValue } from "./format.js";
import { addPoint } from "./tiles.js";

const MAX_POINTS = 2000;

function css(name, fallback) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;
}

// Notes on this page, as chart markers: [{ts, text}].
function markers() {
  return [...document.querySelectorAll("#notes > .note")].map((li) => ({
    ts: Number(li.dataset.ts), text: (li.querySelector(".note-text") || {}).textContent || "",
  }));
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

export function init() {
  const box = document.getElementById("chart");
  if (!box || !window.uPlot) return;
  let points;
  try { points = JSON.parse(box.dataset.points || "[]"); } catch (e) { points = []; }
  const unit = box.dataset.unit || "";
  const data = () => [points.map((p) => p[0] / 1000), points.map((p) => p[1])];
  const fg = css("--fg", "#1c2330"), grid = css("--line", "#d9dee6");
  const axis = { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
  const opts = {
    width: box.clientWidth || 600,
    height: 320,
    plugins: [markerPlugin()],
    cursor: { drag: { x: true, y: false } },
    legend: { live: true },
    scales: { x: { time: true } },
    axes: [axis, { ...axis, label: unit, size: 60 }],
    series: [{}, {
      label: box.dataset.series, stroke: css("--accent", "#0969da"), width: 2,
      fill: "color-mix(in srgb, " + css("--accent", "#0969da") + " 12%, transparent)",
      points: { show: (u) => points.length < 80 }, value: (u, v) => v == null ? "—" : `${fmtValue(v)} ${unit}`,
    }],
  };
  box.querySelector("svg.spark")?.setAttribute("hidden", "");
  const plot = new window.uPlot(opts, data(), box);
  box.dataset.ready = "1";

  // Click a point: prefill the note form with its time.
  plot.over.addEventListener("click", () => {
    const idx = plot.cursor.idx;
    if (idx == null || !points[idx]) return;
    const form = document.querySelector("form.note-create");
    if (!form) return;
    form.querySelector("input[name=ts]").value = new Date(points[idx][0]).toISOString();
    form.querySelector("textarea[name=text]").focus();
  });

  on("series-points", (e) => {
    if (e.sid !== box.dataset.series) return;
    for (const [ts, v] of e.points) addPoint(points, ts, v, MAX_POINTS);
    plot.setData(data());
  });
  on("notes-changed", () => plot.redraw(false));
  on("annotation", () => setTimeout(() => plot.redraw(false), 50));
  new ResizeObserver(() => plot.setSize({ width: box.clientWidth, height: 320 })).observe(box);
}
