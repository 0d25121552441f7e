// livedash core: a tiny event bus, DOM helpers and event-id ordering.
// Every module hangs off window.livedash; nothing here touches the network.
(function () {
  "use strict";
  const handlers = {};

  const ld = (window.livedash = window.livedash || {});

  // Event ids are Redis stream ids "<ms>-<seq>": compare as number pairs.
  ld.idKey = function (id) {
    const m = /^(\d+)-(\d+)$/.exec(String(id || ""));
    return m ? [Number(m[1]), Number(m[2])] : null;
  };
  ld.idAfter = function (a, b) {
    const ka = ld.idKey(a), kb = ld.idKey(b);
    if (!ka) return false;
    if (!kb) return true;
    return ka[0] > kb[0] || (ka[0] === kb[0] && ka[1] > kb[1]);
  };

  ld.on = function (type, fn) { (handlers[type] = handlers[type] || []).push(fn); };
  ld.emit = function (type, payload) {
    for (const fn of handlers[type] || []) {
      try { fn(payload); } catch (err) { console.error("livedash handler for", type, err); }
    }
  };

  // Build an element; text always goes in as textContent (never innerHTML).
  ld.el = function (tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v; else node.setAttribute(k, v === true ? "" : String(v));
    }
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  };

  // The same DOM ids the server's dom_id filter makes ("." -> "_2e").
  ld.domId = function (...parts) {
    return parts.map((p) => String(p).replace(/[^A-Za-z0-9-]/g,
      (c) => "_" + c.charCodeAt(0).toString(16).padStart(2, "0"))).join("--");
  };

  ld.fmtValue = function (v) {
    if (typeof v !== "number" || !isFinite(v)) return String(v);
    if (Number.isInteger(v) && Math.abs(v) < 1e15) return String(v);
    if (Math.abs(v) >= 1e6 || Math.abs(v) < 1e-3) return v.toPrecision(4).replace(/\.?0+(e|$)/, "$1");
    return v.toFixed(2).replace(/0+$/, "").replace(/\.$/, "");
  };

  ld.fmtTime = function (ms) {
    return new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
  };

  ld.age = function (ms) {
    const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
    if (s < 60) return `${s} s ago`;
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
    return `${Math.floor(s / 86400)} d ago`;
  };

  ld.me = function () {
    try { return (localStorage.getItem("livedash:user") || "").trim(); } catch (e) { return ""; }
  };
})();
