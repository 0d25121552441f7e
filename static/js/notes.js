// livedash notes and alert rules: live lists, editors that do not lose your
// typing, and the 409 conflict views ("keep mine" / "take theirs").
//
// Editors are server-rendered htmx forms that post the version they were
// based on. Someone else's save arrives as an event: an untouched editor is
// refreshed from the server; one you are typing in is left alone, so your
// save meets the conflict view instead of silently overwriting theirs.
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
    if (li) li.remove();
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
    li.querySelector(".rule-text").textContent = `${rule.name || ""} ${rule.op} ${fmtValue(rule.threshold)}`;
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
  const r = await api(`/api/alerts/rules/${encodeURIComponent(li.dataset.id)}/delete`, { method: "POST", body: body });
  if (r.status === 409) ruleConflict(form, (await r.json()).current);
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

function showError(form, xhr) {
  const { detail } = refusal(xhr);
  const p = form.querySelector(".form-error") || form.appendChild(el("p", { class: "form-error", role: "alert" }));
  p.textContent = detail ? `Not saved: ${detail}` : `Not saved (${xhr.status}).`;
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
    if (!form.matches || !me()) return;
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
  document.body.addEventListener("htmx:afterRequest", (e) => {
    const form = e.detail.elt, xhr = e.detail.xhr;
    if (!form.matches || !xhr) return;
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
