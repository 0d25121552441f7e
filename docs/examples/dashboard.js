// The example's own script: where the livedash token comes from. Nothing here
// is needed by the extension itself; it reads livedash-token whenever it asks
// for a stream ticket or polls.
//
// The token arrives once in the URL fragment (#token=..., never sent to any
// server), is kept for this tab in sessionStorage and taken out of the address
// bar. Without one, the form asks for it.
(function () {
  "use strict";
  const KEY = "livedash-example:token";
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromHash) {
    sessionStorage.setItem(KEY, fromHash);
    history.replaceState(null, "", location.pathname + location.search);
  }
  const token = sessionStorage.getItem(KEY);
  const main = document.querySelector("[livedash-connect]");
  if (token) {
    main.setAttribute("livedash-token", token);
    return;
  }
  const form = document.getElementById("token-form");
  form.hidden = false;
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem(KEY, new FormData(form).get("token"));
    location.reload();
  });
})();
