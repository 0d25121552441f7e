// livedash connection: the live client lives in static/livedash-htmx.js, a
// classic script, so that a page on another origin can load the very same code
// with one <script src> (a cross-origin module would need CORS on /static).
// base.html loads it (deferred) before main.js; this module hands its
// Connection to the modules, so livedash's pages and the htmx extension share
// one client: leader election across tabs, SSE with fallback to polling and
// back, resume by id (see that file).
export const Connection = window.LiveDash.Connection;
