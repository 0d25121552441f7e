// livedash notes and alert rules: live lists, editors that do not lose your
// typing, and the 409 conflict views ("keep mine" / "take theirs").
//
// Editors are server-rendered htmx forms that post the version they were
// based on. Someone else's save arrives as an event: an untouched editor is
// refreshed from the server; one you are typing in is left alone, so your
// save meets the conflict view instead of silently overwriting theirs. A note
// deleted by someone else while you edit it stays on your screen, your text
// with it, and says so.
//
// Every refused or failed write says why, in place: the server's own words
// (the htmx error fragment, or a JSON error) after what its status means.
import { api } from "./api.js";
import { emit, on } from "./bus.js";
import { el } from "./dom.js";
import { fmtValue } from "./format.js";
import { me } from "./user.js";

function editorBusy(editor) {
  return !!editor && (editor.dataset.dirty === "1" || editor.contains(document.activeElement) ||
    editor.classList.contains("annotation-conflict"));
}

function inScope(list, doc) {
  const scope = list.dataset.scope || "all";
  if (scope === "all") return true;
  const [device, metric] = scope.split("/");
  return doc.device === device && (!doc.metric || doc.metric === metric);
}

// htmx is a classic script loaded before the modules; without it the list just waits for a reload.
function fragment(url, target, swap) {
  if (!window.htmx) return Promise.resolve();
  return window.htmx.ajax("GET", url, { target: target, swap: swap });
}

// --- notes (annotations) -------------------------------------------------------------
function setNoteText(li, doc) {
  li.dataset.version = doc.version;
  li.querySelector(".note-text").textContent = doc.text;
  li.querySelector(".note-author").textContent = doc.author || "anonymous";
  li.querySelector(".note-version").textContent = doc.version;
}

async function addNote(list, doc) {
  list.querySelector(":scope > .empty")?.remove();
  const li = el("li", { class: "note pending", id: "note--" + doc.id, "data-id": doc.id, "data-ts": doc.ts });
  // Newest ts first, as the server lists them.
  const after = [...list.querySelectorAll(":scope > .note")].find((n) => Number(n.dataset.ts) < doc.ts);
  list.insertBefore(li, after || null);
  await fragment(`/fragments/note/${encodeURIComponent(doc.id)}`, li, "outerHTML");
  emit("notes-changed", null);
}

function onAnnotation(ev) {
  const { action, annotation: doc } = ev.data;
  const list = document.getElementById("notes");
  if (!doc || !list) return;
  const li = document.getElementById("note--" + doc.id);
  if (action === "deleted" || doc.deleted) {
    const editor = document.getElementById("annotation-editor--" + doc.id);
    if (li && editor && editorBusy(editor)) keepDeleted(li, editor, ev.data.by);
    else if (li) li.remove();
    emit("notes-changed", null);
    return;
  }
  if (!li) {
    if (inScope(list, doc)) addNote(list, doc);
    return;
  }
  if (li.classList.contains("pending") || Number(li.dataset.version) >= doc.version) return;
  setNoteText(li, doc);
  const editor = document.getElementById("annotation-editor--" + doc.id);
  if (editor && !editorBusy(editor)) {
    fragment(`/api/annotations/${encodeURIComponent(doc.id)}`, editor, "outerHTML");
  } else if (editor) {
    const note = li.querySelector(".note-stale") || li.querySelector(".note-meta").appendChild(
      el("span", { class: "note-stale" }));
    note.textContent = ` · changed by ${ev.data.by || doc.author || "someone"} (v${doc.version}) while you edit`;
  }
  emit("notes-changed", null);
}

// Someone deleted the note you are editing: keep it, and your text, with a notice.
function keepDeleted(li, editor, by) {
  li.classList.add("note-deleted");
  li.dataset.deleted = "1";
  const form = editor.querySelector("form") || editor;
  const p = editor.querySelector(".note-gone") || form.insertBefore(
    el("p", { class: "note-gone", role: "alert" }), form.firstChild);
  p.textContent = `${by || "Someone"} deleted this note while you were editing it. Your text is kept here: ` +
    "copy it, or add it as a new note.";
}

// --- alert rules -----------------------------------------------------------------------
function ruleLi(id) { return document.getElementById("rule--" + id); }

function ruleBusy(li) {
  const form = li && li.querySelector("form");
  return !!form && (form.dataset.dirty === "1" || form.contains(document.activeElement));
}

function onRule(ev) {
  const rule = ev.data.rule;
  const list = document.getElementById("rules");
  const tile = document.querySelector(".series-main");
  if (!rule || !list || !tile || tile.dataset.series !== `${rule.device}/${rule.metric}`) return;
  const li = ruleLi(rule.id);
  if (rule.deleted) { if (li) li.remove(); return; }
  if (!li) {
    list.querySelector(":scope > .empty")?.remove();
    const slot = list.appendChild(el("li", { class: "rule pending", id: "rule--" + rule.id }));
    fragment(`/fragments/rule/${encodeURIComponent(rule.id)}`, slot, "outerHTML");
    return;
  }
  if (li.classList.contains("pending") || Number(li.dataset.version) >= rule.version) return;
  if (!ruleBusy(li)) {
    fragment(`/fragments/rule/${encodeURIComponent(rule.id)}`, li, "outerHTML");
  } else {
    li.querySelector(".rule-text").textContent = rule.kind === "no_data"
      ? `${rule.name || ""} no reading for ${rule.no_data_seconds} s`
      : `${rule.name || ""} ${rule.op} ${fmtValue(rule.threshold)}`;
  }
}

function onAlert(ev) {
  const li = ruleLi(ev.data.rule_id);
  if (!li) return;
  const firing = ev.data.state === "firing";
  li.dataset.alert = firing ? "firing" : "ok";
  li.querySelector(".rule-state").textContent = firing ? "Firing" : "OK";
}

// A 409 on a rule: show theirs next to yours; "keep mine" re-posts yours on
// their version, "take theirs" reloads the editor.
function ruleConflict(form, current) {
  const box = form.querySelector(".rule-conflict");
  if (!box || !current) return;
  box.replaceChildren(
    el("p", null, `Someone else saved this rule (now version ${current.version}) while you were editing.`),
    el("p", { class: "theirs" },
      `Theirs: ${current.op} ${fmtValue(current.threshold)}, hysteresis ${fmtValue(current.hysteresis || 0)}`));
  const keep = box.appendChild(el("button", { type: "button", class: "keep-mine" }, "Keep mine"));
  const take = box.appendChild(el("button", { type: "button", class: "take-theirs" }, "Take theirs"));
  keep.addEventListener("click", () => {
    form.querySelector("input[name=version]").value = current.version;
    box.hidden = true;
    window.htmx.trigger(form, "submit");
  });
  take.addEventListener("click", () => {
    const li = form.closest(".rule");
    fragment(`/fragments/rule/${encodeURIComponent(li.dataset.id)}`, li, "outerHTML");
  });
  box.hidden = false;
}

async function deleteRule(button) {
  const li = button.closest(".rule");
  const form = button.closest("form");
  const body = new URLSearchParams({ version: form.querySelector("input[name=version]").value });
  let r;
  try {
    r = await api(`/api/alerts/rules/${encodeURIComponent(li.dataset.id)}/delete`, { method: "POST", body: body });
  } catch (err) {
    showError(form, { status: 0, responseText: "", getResponseHeader: () => null });
    return;
  }
  if (r.status === 409) ruleConflict(form, (await r.json()).current);
  else if (!r.ok) {
    const text = await r.text();
    showError(form, { status: r.status, responseText: text, getResponseHeader: (h) => r.headers.get(h) });
  }
}

// Why the server refused a write: {detail, current}. A JSON error carries
// `detail` (and the stored document as `current` on a 409); htmx requests get
// the error fragment (templates/fragments/error.html) instead, read here as
// text only, never inserted as markup.
function refusal(xhr) {
  try {
    const body = JSON.parse(xhr.responseText);
    const detail = Array.isArray(body.detail) ? body.detail.map((d) => `${d.field}: ${d.error}`).join("; ") : body.detail;
    return { detail: detail || "", current: body.current || null };
  } catch (e) { /* not JSON: the fragment */ }
  const p = new DOMParser().parseFromString(xhr.responseText || "", "text/html").querySelector("[data-error]");
  return { detail: p ? p.textContent.trim() : "", current: null };
}

// What a failed write's status means, said before the server's own detail.
const WHY = {
  0: "Network error: the server could not be reached. Nothing was saved; try again.",
  400: "The request was malformed",
  401: "Your session has ended: log in again",
  403: "Not allowed",
  404: "It no longer exists",
  409: "Someone else saved first",
  410: "Someone else deleted it",
  413: "Too large",
  415: "Unsupported format",
  422: "Some fields are not valid",
  429: "Too many writes",
  503: "The server is busy",
};

function explain(xhr) {
  const status = xhr.status || 0;
  if (status === 0) return WHY[0];
  const { detail } = refusal(xhr);
  let text = WHY[status] || (status >= 500 ? "The server failed" : "Refused");
  if (status === 410) text += ": your text is kept here, copy it or add it as a new note";
  if (status === 429) {
    const retry = xhr.getResponseHeader && xhr.getResponseHeader("Retry-After");
    if (retry) text += ` (retry in ${retry} s)`;
  }
  return `Not saved (${status}): ${text}${detail ? ` — ${detail}` : "."}`;
}

// Shown in place: in the form (or the note editor) whose write failed, replacing any earlier message.
function showError(holder, xhr) {
  const p = holder.querySelector(":scope > .form-error") ||
    holder.appendChild(el("p", { class: "form-error", role: "alert" }));
  p.dataset.status = String(xhr.status || 0);
  p.textContent = explain(xhr);
}

// The form an htmx element belongs to, for its messages: a note editor's delete button is outside its form.
function errorHolder(elt) {
  const editor = elt.closest && elt.closest(".annotation-editor");
  if (editor) return editor.querySelector("form") || editor;
  return elt.closest ? elt.closest("form") : null;
}

// A 409 from a rule editor. The htmx error fragment does not carry the stored
// rule, so read it; a newer one than the 409 saw is only better to compare with.
async function onRuleConflict(form, xhr) {
  let current = refusal(xhr).current;
  if (!current) {
    const id = encodeURIComponent(form.closest(".rule").dataset.id);
    const r = await api(`/api/alerts/rules/${id}`, { cache: "no-store", headers: { Accept: "application/json" } });
    if (r.ok) current = await r.json();
  }
  if (current) ruleConflict(form, current); else showError(form, xhr);
}

// --- wiring ------------------------------------------------------------------------------
function wire() {
  document.addEventListener("input", (e) => {
    const holder = e.target.closest(".annotation-editor, form.rule-edit");
    if (holder) holder.dataset.dirty = "1";
  });
  document.addEventListener("click", (e) => {
    const del = e.target.closest("button.rule-delete");
    if (del) deleteRule(del);
  });
  // New notes are signed with the name in the header; the editor has its own field.
  document.body.addEventListener("htmx:configRequest", (e) => {
    const form = e.detail.elt;
    // Only while auth is off (the header offers a name field then): otherwise the server knows who you are.
    if (!form.matches || !me() || !document.getElementById("me")) return;
    if (form.matches("form.note-create")) e.detail.parameters.author = me();
    // An edit with the author left blank is signed by whoever made it (else the form would clear it).
    // htmx 2 hands the parameters over as a FormData proxy that reads and writes like an object.
    const params = e.detail.parameters;
    if (form.closest(".annotation-editor") && form.querySelector("[name=author]") && !params.author) {
      params.author = me();
    }
  });
  // A 409 from an annotation editor is the conflict view: swap it in.
  document.body.addEventListener("htmx:beforeSwap", (e) => {
    if (e.detail.xhr.status === 409 && e.detail.elt.closest(".annotation-editor")) {
      e.detail.shouldSwap = true;
      e.detail.isError = false;
    }
  });
  // No answer at all (the network, or the server is down): say so where the write was made.
  document.body.addEventListener("htmx:sendError", (e) => {
    const holder = errorHolder(e.detail.elt);
    if (holder) showError(holder, { status: 0, responseText: "" });
  });
  document.body.addEventListener("htmx:afterRequest", (e) => {
    const form = e.detail.elt, xhr = e.detail.xhr;
    if (!form.matches || !xhr) return;
    if (form.closest(".annotation-editor")) {
      // 409 swaps in the conflict view; a success swaps in the saved editor; anything else is said here,
      // and the form (with your text) stays as it is.
      if (!e.detail.successful && xhr.status !== 409 && xhr.status !== 0) showError(errorHolder(form), xhr);
      return;
    }
    if (form.matches("form.logout")) {
      if (!e.detail.successful && xhr.status !== 0) showError(form, xhr);
      return;
    }
    if (form.matches("form.note-create, form.rule-create")) {
      if (e.detail.successful) { form.reset(); form.querySelector(".form-error")?.remove(); }
      else showError(form, xhr);
    } else if (form.matches("form.rule-edit")) {
      if (xhr.status === 409) {
        onRuleConflict(form, xhr).catch(() => showError(form, xhr));
      } else if (e.detail.successful) {
        delete form.dataset.dirty;
        form.querySelector(".form-error")?.remove();
      } else showError(form, xhr);
    }
  });
}

// Is anything on this page being edited? Then a reset must not reload it.
export function hasUnsavedEdits() {
  return !!document.querySelector(".annotation-editor[data-dirty], form.rule-edit[data-dirty], .annotation-conflict");
}

export function init() {
  wire();
  on("annotation", onAnnotation);
  on("alert_rule", onRule);
  on("alert", onAlert);
}
