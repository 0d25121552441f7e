// The alerts page: what is firing and the recent transitions, re-fetched whenever
// an alert, an acknowledgement or a silence goes by on the stream (so a second
// person sees an ack or a silence at once). Only on pages with #alerts-live.
import { on } from "./bus.js";

export function init() {
  const box = document.getElementById("alerts-live");
  if (!box) return;
  let pending = null;
  const refresh = () => {
    if (pending) return; // one fetch for a burst of events
    pending = setTimeout(async () => {
      try {
        const answer = await fetch("/alerts/panel", { headers: { Accept: "text/html" }, credentials: "same-origin" });
        if (answer.ok) {
          box.innerHTML = await answer.text();
          if (window.htmx) window.htmx.process(box);
        }
      } finally {
        pending = null;
      }
    }, 100);
  };
  for (const type of ["alert", "alert_ack", "alert_silence", "alert_rule", "reset"]) on(type, refresh);
  // Channel changes and test sends make no stream event: re-read once htmx has the answer.
  box.addEventListener("htmx:afterRequest", (e) => { if (e.target.closest("[data-refresh]")) refresh(); });
}
