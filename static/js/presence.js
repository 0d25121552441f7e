// livedash presence: who is here (per person, with tab counts) and who is
// editing which note. A person is a subject (the server says who, from the
// caller's credential): two tokens that share a name are two chips. Every tab heartbeats for itself, at the interval the
// server names, and says goodbye with sendBeacon on pagehide.
import { api } from "./api.js";
import { on } from "./bus.js";
import { el } from "./dom.js";
import { idAfter } from "./ids.js";
import { me, rememberMe } from "./user.js";

const session = (window.crypto && crypto.randomUUID) ? crypto.randomUUID()
  : Array.from({ length: 4 }, () => Math.random().toString(36).slice(2, 10)).join("");
let room = "dashboard";
let intervalMs = 10000;
let timer = null;
let state = "viewing";
let myTab = null;
const members = new Map();   // tab -> {user, subject, state}
let snapshotCursor = null;
const early = [];            // presence events that came before the snapshot

function currentState() {
  const editor = document.activeElement && document.activeElement.closest &&
    document.activeElement.closest(".annotation-editor");
  const id = editor && editor.id.replace(/^annotation-editor--/, "");
  return id && /^[A-Za-z0-9_.-]{1,64}$/.test(id) ? `editing:${id}` : "viewing";
}

async function beat() {
  clearTimeout(timer);
  state = currentState();
  const body = { room: room, session: session, state: state };
  // Only read with auth off (a self-declared name); otherwise the server names us from our session.
  if (document.getElementById("me") && me()) body.user = me();
  let next = intervalMs;
  try {
    const r = await api("/api/presence", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    if (r.ok) {
      const answer = await r.json();
      intervalMs = answer.heartbeat_ms || intervalMs;
      next = intervalMs;
      myTab = answer.tab;
      if (snapshotCursor === null) await snapshot();
    } else {
      next = Math.min(intervalMs, 2000);
    }
  } catch (err) {
    next = Math.min(intervalMs, 2000);
  }
  // A little jitter, so tabs opened together do not beat together forever.
  timer = setTimeout(beat, next * (0.9 + Math.random() * 0.1));
}

async function snapshot() {
  const r = await api(`/api/presence?room=${encodeURIComponent(room)}`, { cache: "no-store" });
  if (!r.ok) return;
  const snap = await r.json();
  members.clear();
  for (const u of snap.users) {
    for (const s of u.sessions) members.set(s.tab, { user: u.user, subject: u.subject, state: s.state });
  }
  snapshotCursor = snap.cursor;
  for (const ev of early.splice(0)) if (idAfter(ev.id, snapshotCursor)) apply(ev.data);
  render();
}

function apply(d) {
  if (d.action === "leave") members.delete(d.tab);
  else members.set(d.tab, { user: d.user || null, subject: d.subject || d.tab, state: d.state || "viewing" });
}

function onPresence(ev) {
  if (ev.data.room !== room) return;
  if (snapshotCursor === null) { early.push(ev); return; }
  apply(ev.data);
  render();
}

function initials(name) {
  if (!name) return "?";
  const parts = name.trim().split(/\s+/);
  return (parts.length > 1 ? parts[0][0] + parts[parts.length - 1][0] : name.slice(0, 2)).toUpperCase();
}

function render() {
  const list = document.getElementById("presence");
  if (!list) return;
  const groups = new Map();
  for (const [tab, m] of members) {
    const key = m.subject || m.user || tab;
    const g = groups.get(key) || { user: m.user, subject: key, tabs: 0, mine: false };
    g.tabs += 1;
    if (tab === myTab) g.mine = true;
    groups.set(key, g);
  }
  const sorted = [...groups.values()].sort((a, b) => (a.user === null) - (b.user === null) ||
    String(a.user || "").localeCompare(String(b.user || "")));
  list.replaceChildren(...sorted.map((g) => {
    const name = g.user || "Anonymous";
    const tabs = g.tabs === 1 ? "1 tab" : `${g.tabs} tabs`;
    const li = el("li", { class: "chip" + (g.mine ? " mine" : ""), "data-user": name, "data-subject": g.subject,
      "data-tabs": g.tabs,
      title: `${name}${g.mine ? " (you)" : ""} — ${tabs}` });
    li.appendChild(el("span", { class: "initials", "aria-hidden": "true" }, initials(g.user)));
    li.appendChild(el("span", { class: "name" }, name));
    if (g.tabs > 1) li.appendChild(el("span", { class: "tabs" }, `×${g.tabs}`));
    return li;
  }));
  list.dataset.count = members.size;
  renderEditing();
}

// "Ana is editing" on each note someone else has open.
function renderEditing() {
  const editing = new Map();
  for (const [tab, m] of members) {
    if (tab === myTab || !m.state.startsWith("editing:")) continue;
    const id = m.state.slice("editing:".length);
    editing.set(id, (editing.get(id) || []).concat(m.user || "Someone"));
  }
  for (const mark of document.querySelectorAll(".note .note-editing")) {
    const id = mark.closest(".note").dataset.id;
    const who = [...new Set(editing.get(id) || [])];
    mark.hidden = who.length === 0;
    mark.textContent = who.length ? ` · ${who.join(", ")} ${who.length > 1 ? "are" : "is"} editing` : "";
  }
}

function maybeBeat() {
  // Focus moves inside an editor constantly; tell others only when the state changes.
  setTimeout(() => { if (currentState() !== state) beat(); }, 0);
}

export function init(opts) {
  room = opts.room || room;
  intervalMs = opts.heartbeatMs || intervalMs;
  const name = document.getElementById("me");
  if (name) {
    name.value = me();
    name.addEventListener("change", () => {
      rememberMe(name.value);
      beat();
    });
  }
  on("presence", onPresence);
  on("notes-changed", renderEditing);
  on("reset", () => { snapshotCursor = null; snapshot(); });
  document.addEventListener("focusin", maybeBeat);
  document.addEventListener("focusout", maybeBeat);
  document.body.addEventListener("htmx:afterSwap", () => { maybeBeat(); renderEditing(); });
  window.addEventListener("pagehide", () => {
    clearTimeout(timer);
    const body = JSON.stringify({ room: room, session: session });
    if (!(navigator.sendBeacon && navigator.sendBeacon("/api/presence/leave", body))) {
      api("/api/presence/leave", { method: "POST", body: body, keepalive: true });
    }
  });
  window.addEventListener("pageshow", (e) => { if (e.persisted) beat(); });  // back from the bfcache
  beat();
}
