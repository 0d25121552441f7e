// livedash auth: CSRF token on every same-origin write, and session renewal.
// The token comes from <meta name="csrf-token"> (empty for Bearer callers and
// with auth off, in which case this does nothing). Loaded right after htmx and
// before every other script, so their fetch() calls already carry it.
(function () {
  "use strict";
  const ld = (window.livedash = window.livedash || {});
  const meta = document.querySelector('meta[name="csrf-token"]');
  const token = meta ? meta.content : "";
  const SAFE = /^(GET|HEAD|OPTIONS)$/i;
  const HEADER = "X-CSRF-Token";

  ld.csrfToken = function () { return token; };
  if (!token) { ld.renewSession = async function () { return false; }; return; }

  // htmx requests (hx-post, hx-delete, htmx.ajax).
  document.addEventListener("htmx:configRequest", (e) => {
    if (!SAFE.test(e.detail.verb)) e.detail.headers[HEADER] = token;
  });

  // fetch() writes to our own origin.
  const nativeFetch = window.fetch.bind(window);
  window.fetch = function (input, init) {
    const req = input instanceof Request ? input : null;
    const method = String((init && init.method) || (req ? req.method : "GET"));
    const url = new URL(req ? req.url : String(input), window.location.href);
    if (!SAFE.test(method) && url.origin === window.location.origin) {
      const headers = new Headers((init && init.headers) || (req ? req.headers : undefined));
      headers.set(HEADER, token);
      init = Object.assign({}, init || {}, { headers: headers });
    }
    return nativeFetch(input, init);
  };

  // On a `reauth` stream event: extend the session over plain HTTP, so the page
  // never silently turns anonymous. A failure sends the user to the login page.
  let renewing = null;
  ld.renewSession = function () {
    if (!renewing) {
      renewing = window.fetch("/api/session/renew", { method: "POST", cache: "no-store" })
        .then((r) => {
          if (r.status === 401) window.location.assign("/login?next=" + encodeURIComponent(window.location.pathname));
          return r.ok;
        })
        .catch(() => false)
        .finally(() => { renewing = null; });
    }
    return renewing;
  };
})();
