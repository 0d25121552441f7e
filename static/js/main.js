// livedash entry module: the only script tag of ours on a page (after htmx and,
// on the series page, uPlot: classic deferred scripts run first).
//
// A page opts into the live client with <body data-live> and its settings as
// data attributes. Anything else (an error page, say) gets no stream, no
// polling and no presence: it has no room to be present in, and replaying the
// whole event log into a page that shows none of it would only cost the server.
import * as alerts from "./alerts.js";
import { api, renewSession, sendCsrfWithHtmx, toLogin } from "./api.js";
import { emit, on } from "./bus.js";
import * as chart from "./chart.js";
import { Connection } from "./connection.js";
import * as notes from "./notes.js";
import * as presence from "./presence.js";
import * as tiles from "./tiles.js";

function startLive(d) {
  tiles.init();
  notes.init();
  chart.init();
  alerts.init();
  presence.init({ room: d.room || "dashboard", heartbeatMs: Number(d.heartbeatMs) || 10000 });
  // After a gap longer than the server's history the snapshot is re-read:
  // the whole page, unless someone is mid-edit (then just the tiles).
  // A page that has just loaded is already fresh: never reload in a loop.
  const loaded = Date.now();
  on("reset", () => {
    if (notes.hasUnsavedEdits() || Date.now() - loaded < 5000) tiles.reload(); else location.reload();
  });
  // This origin's stream in JSON (the modules draw from the data), with the
  // session cookie and CSRF token (api.js); all of this page's tabs share it.
  const connection = new Connection({
    url: "/api/stream", lockName: "livedash:stream", channelName: "livedash",
    fetch: api, emit: emit, onReauth: renewSession, onSignedOut: toLogin,
    statusElements: () => [document.getElementById("status")],
    cursor: d.cursor, keepaliveMs: Number(d.keepaliveMs) || 15000, pollWaitS: Number(d.pollWaitS) || 20,
  });
  // The one thing on window: what the connection received, for the browser
  // tests and devtools. Nothing of ours reads it.
  window.livedash = Object.freeze({ debug: connection.debug });
  connection.start();
}

// Modules run once the document is parsed, so <body> and its data are here.
sendCsrfWithHtmx();
if ("live" in document.body.dataset) startLive(document.body.dataset);
