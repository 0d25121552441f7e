// livedash bus: modules hear about events without knowing who sends them.
// The connection emits every stream event by its type; tiles, notes, chart and
// presence listen. A failing handler is logged, never allowed to stop the rest.
const handlers = new Map();

export function on(type, fn) {
  if (!handlers.has(type)) handlers.set(type, []);
  handlers.get(type).push(fn);
}

export function emit(type, payload) {
  for (const fn of handlers.get(type) || []) {
    try { fn(payload); } catch (err) { console.error("livedash handler for", type, err); }
  }
}
