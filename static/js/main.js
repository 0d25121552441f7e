// livedash boot: read the page's settings (data attributes on <body>) and start
// the modules. Loaded last; every module before it only defines itself.
(function () {
  "use strict";
  const ld = window.livedash;

  function boot() {
    const d = document.body.dataset;
    const keepaliveMs = Number(d.keepaliveMs) || 15000;
    ld.tiles.init();
    ld.notes.init();
    if (ld.chart) ld.chart.init();
    ld.presence.init({ room: d.room || "dashboard", heartbeatMs: Number(d.heartbeatMs) || 10000 });
    // After a gap longer than the server's history the snapshot is re-read:
    // the whole page, unless someone is mid-edit (then just the tiles).
    // A page that has just loaded is already fresh: never reload in a loop.
    const loaded = Date.now();
    ld.on("reset", () => {
      if (ld.notes.busy() || Date.now() - loaded < 5000) ld.tiles.reload(); else location.reload();
    });
    ld.connection = new ld.Connection({
      cursor: d.cursor, keepaliveMs: keepaliveMs, pollWaitS: Number(d.pollWaitS) || 20,
    });
    ld.connection.start();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boot);
  else boot();
})();
