// livedash dashboard: sparklines, tile ages and the connection badge.
// Values arrive as htmx out-of-band fragments over SSE (format=html).
(function () {
  "use strict";
  const MAX_POINTS = 240;

  function drawSpark(svg, points) {
    const line = svg.querySelector("polyline");
    if (!line || points.length === 0) return;
    let lo = Infinity, hi = -Infinity;
    for (const p of points) { lo = Math.min(lo, p[1]); hi = Math.max(hi, p[1]); }
    const span = hi - lo || 1, n = points.length;
    line.setAttribute("points", points.map((p, i) =>
      `${(n === 1 ? 100 : (i / (n - 1)) * 100).toFixed(2)},${(28 - ((p[1] - lo) / span) * 26).toFixed(2)}`).join(" "));
  }

  function sparkFor(valueEl) {
    return document.getElementById(valueEl.id.replace(/^value--/, "spark--"));
  }

  function initSparks(root) {
    for (const svg of root.querySelectorAll("svg.spark")) {
      try { svg._points = JSON.parse(svg.dataset.points || "[]"); } catch (e) { svg._points = []; }
      drawSpark(svg, svg._points);
    }
  }

  function age(ms) {
    const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
    if (s < 60) return `${s} s ago`;
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    return `${Math.floor(s / 3600)} h ago`;
  }

  function refreshAges() {
    for (const t of document.querySelectorAll(".tile time[datetime]")) {
      t.textContent = age(Number(t.getAttribute("datetime")));
    }
  }

  function setStatus(state, text) {
    const badge = document.getElementById("status");
    if (!badge) return;
    badge.dataset.state = state;
    badge.textContent = text;
  }

  document.addEventListener("DOMContentLoaded", () => {
    initSparks(document);
    refreshAges();
    setInterval(refreshAges, 1000);
  });
  document.body && document.body.addEventListener("htmx:afterSwap", (e) => initSparks(e.target));
  document.addEventListener("htmx:afterSwap", (e) => { if (e.target.id === "tiles") initSparks(e.target); });
  document.addEventListener("htmx:oobAfterSwap", (e) => {
    const el = e.detail.target;
    if (!el || !el.id || !el.id.startsWith("value--")) return;
    const svg = sparkFor(el);
    if (svg) {
      svg._points = (svg._points || []).concat([[Number(el.dataset.ts), Number(el.dataset.value)]]).slice(-MAX_POINTS);
      drawSpark(svg, svg._points);
    }
    refreshAges();
  });
  document.addEventListener("htmx:oobErrorNoTarget", () => {
    // A series this page has not drawn yet: fetch the tiles again (debounced).
    clearTimeout(window.__livedashNewSeries);
    window.__livedashNewSeries = setTimeout(() => htmx.trigger(document.body, "livedash:new-series"), 300);
  });
  document.addEventListener("htmx:sseOpen", () => setStatus("live", "Live"));
  document.addEventListener("htmx:sseError", () => setStatus("reconnecting", "Reconnecting…"));
})();
