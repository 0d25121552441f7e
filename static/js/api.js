// livedash api: the one way this page talks to its server.
//
// api(path, options) is fetch() for our own origin that adds the session's
// CSRF token to writes; every module calls it instead of fetch(), so no
// request depends on a patched global. htmx makes its own requests: they get
// the same header from htmx's configRequest event (sendCsrfWithHtmx).
//
// The token comes from <meta name="csrf-token">. It is empty with auth off
// and for Bearer callers; then nothing is added.
const SAFE = /^(GET|HEAD|OPTIONS)$/i;
const HEADER = "X-CSRF-Token";
const token = document.querySelector('meta[name="csrf-token"]')?.content || "";

export async function api(path, options = {}) {
  const url = new URL(path, window.location.href);
  // The token belongs to this server's session: never hand it to another origin.
  if (url.origin !== window.location.origin) throw new Error(`api() only talks to this server, not ${url.origin}`);
  if (!token || SAFE.test(options.method || "GET")) return fetch(url, options);
  const headers = new Headers(options.headers);
  headers.set(HEADER, token);
  return fetch(url, { ...options, headers });
}

export function sendCsrfWithHtmx() {
  if (!token) return;
  document.addEventListener("htmx:configRequest", (e) => {
    if (!SAFE.test(e.detail.verb)) e.detail.headers[HEADER] = token;
  });
}

// Our credential is gone for good: only signing in again helps.
export function toLogin() {
  window.location.assign("/login?next=" + encodeURIComponent(window.location.pathname));
}

// On a `reauth` stream event: extend the session over plain HTTP, so the page
// never silently turns anonymous. Concurrent calls share one request; a 401
// sends the user to the login page.
let renewing = null;
export function renewSession() {
  if (!token) return Promise.resolve(false);
  if (!renewing) {
    renewing = api("/api/session/renew", { method: "POST", cache: "no-store" })
      .then((r) => {
        if (r.status === 401) toLogin();
        return r.ok;
      })
      .catch(() => false)
      .finally(() => { renewing = null; });
  }
  return renewing;
}
