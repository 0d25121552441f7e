// The name typed into the header ("You"), kept per browser. It only labels
// presence chips and signs notes; who may do what comes from the session.
const KEY = "livedash:user";

export function me() {
  try { return (localStorage.getItem(KEY) || "").trim(); } catch (e) { return ""; }
}

export function rememberMe(name) {
  try { localStorage.setItem(KEY, name.trim()); } catch (e) { /* private mode: this tab only */ }
}
