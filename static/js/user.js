// The name typed into the header ("You"), kept per browser: only offered while
// authentication is off, when nobody else can say who you are. The server marks
// whatever it signs as self-declared. With auth on, your name and role come
// from your session (the header shows them) and this is not used.
const KEY = "livedash:user";

export function me() {
  try { return (localStorage.getItem(KEY) || "").trim(); } catch (e) { return ""; }
}

export function rememberMe(name) {
  try { localStorage.setItem(KEY, name.trim()); } catch (e) { /* private mode: this tab only */ }
}
