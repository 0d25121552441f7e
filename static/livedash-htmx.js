/*! livedash-htmx.js: livedash's live client, for livedash's own pages and for any htmx 2 page.
 *
 * One classic script (not a module): a page on another origin loads it with a plain
 * <script src="https://livedash.example.com/static/livedash-htmx.js"> after htmx, which
 * needs no CORS on /static (a cross-origin module script would). It defines
 *
 *   window.LiveDash = {VERSION, Connection, idAfter, connections}
 *
 * and, when htmx is on the page, the htmx extension "livedash":
 *
 *   <section hx-ext="livedash"
 *            livedash-connect="https://livedash.example.com/api/stream?format=html&topics=device/pump-*"
 *            livedash-swap="metric annotation" livedash-token="ldt_...">
 *     <p livedash-status></p> ...
 *
 * livedash's own pages run the same Connection (static/js/connection.js re-exports it):
 * there is no second client. docs/embed.md documents the attributes, the fragments
 * and how the version moves.
 *
 * Versioning: VERSION below follows semver. The URL /static/livedash-htmx.js always
 * serves the server's own copy; a page that wants a cache-busting URL adds ?v=VERSION
 * (ignored by the server). An incompatible change would ship under a new file name.
 */
(function () {
  "use strict";
  if (window.LiveDash) return;  // loaded twice: the first copy stays in charge

  const VERSION = "1.0.0";

  // Event ids are Redis stream ids "<ms>-<seq>": ordered as number pairs, never
  // as strings ("10-0" comes after "9-0").
  function idKey(id) {
    const m = /^(\d+)-(\d+)$/.exec(String(id || ""));
    return m ? [Number(m[1]), Number(m[2])] : null;
  }

  // Is `a` after `b`? An unparsable `a` never is; anything is after a missing `b`.
  function idAfter(a, b) {
    const ka = idKey(a), kb = idKey(b);
    if (!ka) return false;
    if (!kb) return true;
    return ka[0] > kb[0] || (ka[0] === kb[0] && ka[1] > kb[1]);
  }

  const STREAM_TYPES = ["metric", "annotation", "alert", "alert_rule", "alert_ack", "alert_silence", "presence"];
  const LABELS = {
    connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…",
    polling: "Polling", stale: "Live · data stale", offline: "Offline", denied: "Not allowed",
  };
  const DEBUG_MAX = 5000;
  // A stream opens with `ready` at once. None within this long: something (a
  // proxy that buffers whole responses) holds it back, so poll instead.
  const READY_TIMEOUT_MS = 3000;
  // While polling, try SSE again this often (jittered), each try given
  // READY_TIMEOUT_MS to say `ready`: back on SSE within ~10 s of it working.
  const PROBE_EVERY_MS = 3000;

  // The credential was refused (401/403): retrying cannot help.
  class Denied extends Error {}

  // livedash connection: one event feed per browser, whatever gets through.
  //
  // Leader election: the tab holding the Web Lock `lockName` is the leader; it
  // alone talks to the server (SSE, or polling /api/events) and relays every
  // event over a BroadcastChannel, so ten tabs cost one stream. When it closes,
  // the lock passes to another tab, which carries on from the last event id it
  // has seen. Without Web Locks or BroadcastChannel every tab is its own leader.
  //
  // Ordering: event ids are log positions. Every source (the stream, a poll,
  // the relay after a catch-up) is gap-free from a point at or before the
  // last accepted id, so accepting only ids after the last one accepted can
  // neither lose nor repeat an event across any switch.
  //
  // Options (all optional):
  //   url        the stream, with its query (format, topics): "/api/stream" by default;
  //              polling uses /api/events on the same server with the same query
  //   token()    a Bearer token (or nothing): with one, each stream (re)connect asks
  //              POST /api/stream/ticket for a single-use ticket, and polls send it
  //              as a header. Without: the browser's cookies (same origin, or
  //              withCredentials across origins)
  //   fetch      fetch() to use for same-origin requests (livedash's page adds its CSRF token)
  //   emit(type, ev)   every accepted event, and "reset" ({cursor}) after a gap
  //   statusElements() the elements whose data-state and text follow the state
  //   onReauth()       the stream says the browser session ends soon
  //   onSignedOut()    the credential is gone (revoked, signed out, refused)
  //   lockName, channelName  what tabs that share this feed agree on
  //   cursor, keepaliveMs, pollWaitS
  class Connection {
    constructor(opts) {
      opts = opts || {};
      this.opts = opts;
      const url = new URL(opts.url || "/api/stream", window.location.href);
      this.streamUrl = url;
      this.format = url.searchParams.get("format") || "json";
      this.topics = url.searchParams.get("topics") || null;
      this.crossOrigin = url.origin !== window.location.origin;
      this.lastId = opts.cursor || "0-0";
      this.keepaliveMs = opts.keepaliveMs || 15000;
      this.pollWaitS = opts.pollWaitS || 20;
      this.lockName = opts.lockName || "livedash:" + url.href;
      this.channelName = opts.channelName || "livedash:" + url.href;
      this.leader = false;
      this.stopped = false;
      this.mode = "idle";          // "sse" | "poll" (leader only)
      this.state = "connecting";
      this.es = null;              // the live EventSource, or the probe while polling
      this.failures = 0;           // consecutive failed stream attempts
      this.probes = 0;             // SSE attempts made while polling
      this.pollAbort = null;
      this.timers = new Set();
      this.catchingUp = false;
      this.relayBuffer = [];
      this.channel = null;
      this.releaseLock = null;
      // What this tab received and how, for the browser tests and devtools
      // (livedash's page shows it as window.livedash.debug, other pages find it
      // in LiveDash.connections).
      this.debug = { events: [], states: [], leader: false, transport: null };
    }

    // --- start: follow (with catch-up), and lead when the lock comes -----------------
    start() {
      const shared = "locks" in navigator && "BroadcastChannel" in window;
      this.showState();
      if (!shared) { this.lead(); return; }
      this.channel = new BroadcastChannel(this.channelName);
      this.channel.onmessage = (m) => this.onRelay(m.data || {});
      this.channel.postMessage({ kind: "hello" });
      this.catchUp();
      navigator.locks.request(this.lockName, () => {
        if (this.stopped) return null;
        this.lead();
        return new Promise((resolve) => { this.releaseLock = resolve; });  // held until stop() or the page goes
      });
    }

    // Everything ends: the stream, polling, timers, the lock (another tab may lead).
    stop() {
      this.stopped = true;
      this.mode = "idle";
      this.closeStream();
      if (this.pollAbort) { this.pollAbort.abort(); this.pollAbort = null; }
      for (const t of this.timers) clearTimeout(t);
      this.timers.clear();
      if (this.channel) { this.channel.close(); this.channel = null; }
      if (this.releaseLock) { this.releaseLock(); this.releaseLock = null; }
    }

    // A follower first reads what happened between its snapshot and now;
    // relayed events that arrive meanwhile wait, then go through the filter.
    async catchUp() {
      this.catchingUp = true;
      try {
        for (let page = 0; page < 20 && !this.leader && !this.stopped; page++) {
          const body = await this.fetchEvents(0);
          if (!body || body.reset || body.events.length === 0) {
            if (body && body.reset) this.reset(body.cursor);
            break;
          }
          for (const ev of body.events) this.accept(ev, "catch-up");
        }
      } catch (err) {
        // The leader's relays (or our own stream once we lead) still arrive.
      } finally {
        this.catchingUp = false;
        const buffered = this.relayBuffer.splice(0);
        for (const msg of buffered) this.onRelay(msg);
      }
    }

    onRelay(msg) {
      if (this.stopped) return;
      if (msg.kind === "hello") {
        if (this.leader) this.channel.postMessage({ kind: "state", state: this.state });
        return;
      }
      if (this.leader && msg.kind === "state") return;
      if (this.catchingUp && (msg.kind === "event" || msg.kind === "reset")) { this.relayBuffer.push(msg); return; }
      if (msg.kind === "event") this.accept(msg.ev, "relay");
      else if (msg.kind === "reset") this.reset(msg.cursor, false);
      else if (msg.kind === "state") this.setState(msg.state, false);
    }

    lead() {
      this.leader = true;
      this.debug.leader = true;
      if (!("EventSource" in window)) { this.startPolling(false); return; }
      this.openStream(false);
    }

    // --- events ----------------------------------------------------------------------
    emit(type, payload) {
      if (this.opts.emit) this.opts.emit(type, payload);
    }

    accept(ev, via) {
      if (this.stopped || !ev || !idAfter(ev.id, this.lastId)) return;  // seen already (or older)
      this.lastId = ev.id;
      const log = this.debug.events;
      log.push({ id: ev.id, type: ev.type, topic: ev.topic, via: via, data: ev.data, html: ev.html });
      if (log.length > DEBUG_MAX) log.splice(0, log.length - DEBUG_MAX);
      if (this.leader && this.channel) this.channel.postMessage({ kind: "event", ev: ev });
      this.emit(ev.type, ev);
      this.emit("event", ev);
    }

    reset(cursor, relay = true) {
      if (cursor) this.lastId = cursor;
      if (relay && this.leader && this.channel) this.channel.postMessage({ kind: "reset", cursor: cursor });
      this.emit("reset", { cursor: cursor });
    }

    showState() {
      const found = this.opts.statusElements ? this.opts.statusElements() : [];
      for (const badge of found) {
        if (!badge) continue;
        badge.dataset.state = this.state;
        badge.textContent = LABELS[this.state] || this.state;
        badge.title = this.leader ? `this tab holds the connection (${this.mode})` : "shared with another tab";
      }
    }

    setState(state, relay = true) {
      if (state === this.state) return;
      this.state = state;
      this.debug.states.push(state);
      this.showState();
      if (relay && this.leader && this.channel) this.channel.postMessage({ kind: "state", state: state });
    }

    // The credential is gone or refused: stop, say so, and let the page decide.
    signedOut(state) {
      this.closeStream();
      this.mode = "idle";
      if (this.pollAbort) { this.pollAbort.abort(); this.pollAbort = null; }
      for (const t of this.timers) clearTimeout(t);
      this.timers.clear();
      this.setState(state);
      if (this.opts.onSignedOut) this.opts.onSignedOut();
    }

    // --- timers ----------------------------------------------------------------------
    later(fn, ms) {
      const t = setTimeout(() => { this.timers.delete(t); if (!this.stopped) fn(); }, ms);
      this.timers.add(t);
      return t;
    }
    cancel(t) { if (t) { clearTimeout(t); this.timers.delete(t); } }

    // Exponential backoff with jitter (50-150 %), capped so a long outage
    // still retries every minute or so; the jitter spreads a restart's tabs.
    backoff(attempt) {
      const cap = Math.max(5000, 4 * this.keepaliveMs);
      return Math.min(cap, 1000 * Math.pow(2, attempt)) * (0.5 + Math.random());
    }

    // --- requests ------------------------------------------------------------------------
    token() {
      return (this.opts.token && this.opts.token()) || "";
    }

    // Same origin: the page's own fetch (cookies, CSRF). Another origin: a token
    // as a header, or the browser's cookies for that origin.
    request(url, init) {
      init = Object.assign({ cache: "no-store" }, init || {});
      const headers = new Headers(init.headers);
      const token = this.token();
      if (token) headers.set("Authorization", "Bearer " + token);
      init.headers = headers;
      if (!this.crossOrigin && this.opts.fetch) return this.opts.fetch(url, init);
      init.credentials = token ? "omit" : (this.crossOrigin ? "include" : "same-origin");
      return fetch(url, init);
    }

    // The stream's URL for one attempt: resuming after the last id, with a fresh
    // single-use ticket when a token is the credential (EventSource cannot send
    // headers, and a long-lived token never goes into a URL).
    async openUrl() {
      const url = new URL(this.streamUrl.href);
      url.searchParams.set("last_event_id", this.lastId);
      if (!this.token()) return url.href;
      const body = this.topics ? { topics: this.topics } : {};
      const r = await this.request(new URL("/api/stream/ticket", url).href, {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
      });
      if (r.status === 401 || r.status === 403) throw new Denied(`the ticket was refused (${r.status})`);
      if (!r.ok) throw new Error(`the ticket request answered ${r.status}`);
      url.searchParams.set("ticket", (await r.json()).ticket);
      return url.href;
    }

    eventsUrl(wait) {
      const url = new URL(this.streamUrl.href);
      url.pathname = url.pathname.replace(/\/stream$/, "/events");
      url.searchParams.delete("ticket");
      url.searchParams.set("since", this.lastId);
      url.searchParams.set("wait", String(wait));
      return url.href;
    }

    async fetchEvents(wait, signal) {
      const r = await this.request(this.eventsUrl(wait), { signal: signal, headers: { Accept: "application/json" } });
      if (r.status === 401 || r.status === 403) throw new Denied(`poll answered ${r.status}`);
      if (!r.ok) throw new Error(`poll answered ${r.status}`);
      return r.json();
    }

    // --- SSE ---------------------------------------------------------------------------
    // `probe`: an attempt made while polling; it takes over once it hears anything.
    async openStream(probe) {
      if (this.stopped) return;
      let url;
      try {
        url = await this.openUrl();
      } catch (err) {
        if (err instanceof Denied) { this.signedOut("denied"); return; }
        this.streamFailed(null, probe, false, "error");
        return;
      }
      if (this.stopped || (probe && this.mode !== "poll")) return;
      let es;
      try {
        es = new EventSource(url, { withCredentials: this.crossOrigin && !this.token() });
      } catch (err) { this.streamFailed(null, probe, false, "error"); return; }
      this.es = es;
      this.debug.transport = probe ? "probe" : "sse";
      let heard = false;
      let watchdog = null;
      // No bytes at all, not even a ping, for two keep-alive intervals: a
      // buffering proxy (or a dead link). Either way the stream is no use.
      const arm = () => {
        this.cancel(watchdog);
        watchdog = this.later(() => { if (this.es === es) this.streamFailed(es, probe, heard, "silent"); },
          2 * this.keepaliveMs + 1000);
      };
      // No `ready` (nor anything else) soon after opening: the stream is held back.
      const readyTimer = this.later(() => {
        if (this.es === es && !heard) {
          this.cancel(watchdog);
          this.streamFailed(es, probe, false, "silent");
        }
      }, READY_TIMEOUT_MS);
      const hear = () => {
        if (this.es !== es) return false;
        arm();
        if (!heard) {
          heard = true;
          this.cancel(readyTimer);
          this.failures = 0;
          if (probe || this.mode !== "sse") this.upgrade();
          this.setState("live");
        }
        return true;
      };
      // The htmx flavour's data is the fragment: the event's id and type come from the SSE fields.
      const parse = (type, e) => this.format === "html"
        ? { id: e.lastEventId, type: type, topic: "", html: e.data }
        : JSON.parse(e.data);
      arm();
      for (const type of STREAM_TYPES) {
        es.addEventListener(type, (e) => { if (hear()) this.accept(parse(type, e), "sse"); });
      }
      es.addEventListener("ready", hear);
      es.addEventListener("ping", hear);
      es.addEventListener("reset", (e) => { if (hear()) this.reset(JSON.parse(e.data).cursor); });
      // The server conflated this stream (it fell behind): the newest value of each
      // series came through, points in between did not. Re-read the snapshot.
      es.addEventListener("skip", () => { if (hear()) this.reset(this.lastId); });
      es.addEventListener("status", (e) => {
        if (hear()) this.setState(JSON.parse(e.data).state === "stale" ? "stale" : "live");
      });
      // The session ends soon: the page renews it over plain HTTP.
      es.addEventListener("reauth", () => { if (this.opts.onReauth) this.opts.onReauth(); });
      es.addEventListener("bye", (e) => {
        if (this.es !== es) return;
        const reason = (() => { try { return JSON.parse(e.data).reason; } catch (_) { return ""; } })();
        this.cancel(watchdog);
        this.cancel(readyTimer);
        if (reason === "revoked" || reason === "signed-out" || reason === "expired") {
          // Our credential is gone: reconnecting would only get 401.
          this.signedOut("offline");
          return;
        }
        // The server is going away on purpose: come straight back, jittered.
        this.closeStream();
        this.setState("reconnecting");
        this.later(() => this.openStream(this.mode === "poll"), 250 + Math.random() * 1000);
      });
      es.onerror = () => {
        this.cancel(watchdog);
        this.cancel(readyTimer);
        if (this.es === es) this.streamFailed(es, probe, heard, "error");
      };
    }

    closeStream() {
      if (this.es) { this.es.close(); this.es = null; }
    }

    upgrade() {
      this.mode = "sse";
      this.probes = 0;
      this.debug.transport = "sse";
      if (this.pollAbort) { this.pollAbort.abort(); this.pollAbort = null; }
    }

    // We reconnect ourselves (EventSource's own retry would drop our id and
    // our backoff, and reuse a spent ticket): close, then retry, or fall back to polling.
    streamFailed(es, probe, heard, why) {
      this.closeStream();
      if (probe && this.mode === "poll") {
        // Held back (a buffering proxy): try again soon, it costs one short request.
        // Refused or failing (at capacity, down): back off.
        const wait = why === "silent" ? PROBE_EVERY_MS * (1 + Math.random()) : this.backoff(++this.probes);
        this.later(() => this.openStream(true), wait);
        return;
      }
      if (heard && why === "error") {
        // A stream that worked dropped (restart, network): reconnect first.
        this.failures = 1;
        this.setState("reconnecting");
        this.later(() => this.openStream(false), this.backoff(0));
        return;
      }
      this.failures += 1;
      // Silent (buffered), refused (503 at capacity), or failing again and again.
      if (why === "silent" || this.failures >= 2) { this.startPolling(true); return; }
      this.setState("reconnecting");
      this.later(() => this.openStream(false), this.backoff(this.failures));
    }

    // --- polling -------------------------------------------------------------------------
    startPolling(retrySse) {
      if (this.mode === "poll" || this.stopped) return;
      this.mode = "poll";
      this.debug.transport = "poll";
      this.setState("polling");
      this.pollLoop();
      this.probes = 0;
      if (retrySse) this.later(() => this.openStream(true), PROBE_EVERY_MS * (1 + Math.random()));
    }

    async pollLoop() {
      let errors = 0;
      while (this.mode === "poll") {
        const ctrl = new AbortController();
        this.pollAbort = ctrl;
        try {
          const body = await this.fetchEvents(this.pollWaitS, ctrl.signal);
          if (this.mode !== "poll") break;
          errors = 0;
          if (this.state !== "polling" && this.state !== "stale") this.setState("polling");
          if (body.reset) { this.reset(body.cursor); continue; }
          for (const ev of body.events) this.accept(ev, "poll");
          if (idAfter(body.cursor, this.lastId)) this.lastId = body.cursor;
        } catch (err) {
          if (ctrl.signal.aborted || this.mode !== "poll") break;
          if (err instanceof Denied) { this.signedOut("denied"); break; }
          errors += 1;
          this.setState(errors >= 3 ? "offline" : "reconnecting");
          await new Promise((res) => this.later(res, this.backoff(Math.min(errors, 5))));
        }
      }
    }
  }

  const connections = [];

  // --- the htmx extension ----------------------------------------------------------------
  //
  // The element with livedash-connect holds one Connection (shared by the tabs
  // showing the same URL). Each fragment it receives is placed element by element:
  //   - an element with hx-swap-oob: htmx's own out-of-band swap (by id);
  //   - an element whose id is on the page: it replaces that element;
  //   - any other element: into the element (the connect element or one inside it)
  //     whose livedash-swap lists the event's type, as its hx-swap says
  //     (default afterbegin: newest first).
  // Fragments of types no livedash-swap lists are ignored. After a gap longer
  // than the server keeps, the connect element gets the DOM event livedash:reset
  // (hx-trigger="livedash:reset" re-reads a snapshot).
  function attr(elt, name) {
    return elt.getAttribute(name) ?? elt.getAttribute("data-" + name);
  }

  function swapTargets(root, type) {
    const all = [root, ...root.querySelectorAll("[livedash-swap], [data-livedash-swap]")];
    return all.filter((el) => (attr(el, "livedash-swap") || "").split(/[\s,]+/).some((t) => t === type || t === "*"));
  }

  function place(root, ev) {
    const targets = swapTargets(root, ev.type);
    if (!ev.html || targets.length === 0) return;
    const template = document.createElement("template");
    template.innerHTML = ev.html;
    for (const node of Array.from(template.content.children)) {
      if (node.hasAttribute("hx-swap-oob")) {
        window.htmx.swap(document.body, node.outerHTML, { swapStyle: "none" });
        continue;
      }
      const existing = node.id ? document.getElementById(node.id) : null;
      if (existing) {
        window.htmx.swap(existing, node.outerHTML, { swapStyle: "outerHTML" });
      } else {
        const target = targets[targets.length - 1];
        window.htmx.swap(target, node.outerHTML, { swapStyle: attr(target, "hx-swap") || "afterbegin" });
      }
    }
  }

  function connectElement(root) {
    if (root._livedash) return;
    const url = attr(root, "livedash-connect");
    if (!url) return;
    const conn = new Connection({
      url: url,
      cursor: attr(root, "livedash-cursor") || "0-0",
      token: () => attr(root, "livedash-token") || "",
      statusElements: () => document.querySelectorAll("[livedash-status], [data-livedash-status]"),
      emit: (type, ev) => {
        if (type === "event") {
          place(root, ev);
          root.dispatchEvent(new CustomEvent("livedash:event", { detail: ev, bubbles: true }));
        } else if (type === "reset") {
          root.dispatchEvent(new CustomEvent("livedash:reset", { detail: ev, bubbles: true }));
        }
      },
    });
    root._livedash = conn;
    connections.push(conn);
    conn.start();
  }

  function disconnectElement(root) {
    const conn = root._livedash;
    if (!conn) return;
    conn.stop();
    delete root._livedash;
    connections.splice(connections.indexOf(conn), 1);
  }

  window.LiveDash = Object.freeze({ VERSION: VERSION, Connection: Connection, idAfter: idAfter, connections: connections });

  if (window.htmx && typeof window.htmx.defineExtension === "function") {
    window.htmx.defineExtension("livedash", {
      getSelectors: () => ["[livedash-connect]", "[data-livedash-connect]"],
      onEvent: (name, evt) => {
        const elt = evt.detail && evt.detail.elt;
        if (!(elt instanceof Element)) return true;
        if (name === "htmx:afterProcessNode" && attr(elt, "livedash-connect")) connectElement(elt);
        else if (name === "htmx:beforeCleanupElement") disconnectElement(elt);
        return true;
      },
    });
  }
})();
