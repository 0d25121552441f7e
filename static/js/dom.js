// DOM helpers shared by the modules that draw.

// Build an element; text always goes in as textContent (never innerHTML), so
// user text cannot become markup.
export function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v; else node.setAttribute(k, v === true ? "" : String(v));
  }
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

// The same DOM ids the server's dom_id filter makes ("." -> "_2e"), so live
// updates find the elements the server rendered.
export function domId(...parts) {
  return parts.map((p) => String(p).replace(/[^A-Za-z0-9-]/g,
    (c) => "_" + c.charCodeAt(0).toString(16).padStart(2, "0"))).join("--");
}
