// livedash connection: one event feed per browser, whatever gets through.
//
// Leader election: the tab holding the Web Lock "livedash:stream" is the
// leader; it alone talks to the server (SSE, or polling /api/events) and
// relays every event over a BroadcastChannel, so ten tabs cost one stream.
// When it closes, the lock passes to another tab, which carries on from the
// last event id it has seen. Without Web Locks or BroadcastChannel every
// tab is its own leader.
//
// Ordering: event ids are log positions. Every source (the stream, a poll,
// the relay after a catch-up) is gap-free from a point at or before the
// last accepted id, so accepting only ids after the last one accepted can
// neither lose nor repeat an event across any switch.
import { api, renewSession, toLogin } from "./api.js";
import { emit } from "./bus.js";
import { idAfter } from "./ids.js";

const STREAM_TYPES = ["metric", "annotation", "alert", "alert_rule", "alert_ack", "alert_silence", "presence"];
const LABELS = {
  connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…",
  polling: "Polling", stale: "Live · data stale", offline: "Offline",
};
const DEBUG_MAX = 5000;
// A stream opens with `ready` at once. None within this long: something (a
// proxy that buffers whole responses) holds it back, so poll instead.
const READY_TIMEOUT_MS = 3000;
// While polling, try SSE again this often (jittered), each try given
// READY_TIMEOUT_MS to say `ready`: back on SSE within ~10 s of it working.
const PROBE_EVERY_MS = 3000;

export class Connection {
  constructor(opts) {
    this.lastId = opts.cursor || "0-0";
    this.keepaliveMs = opts.keepaliveMs || 15000;
    this.pollWaitS = opts.pollWaitS || 20;
    this.leader = false;
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
    // What this tab received and how, for the browser tests and devtools
    // (main.js shows it as window.livedash.debug).
    this.debug = { events: [], states: [], leader: false, transport: null };
  }

  // --- start: follow (with catch-up), and lead when the lock comes -----------------
  start() {
    const shared = "locks" in navigator && "BroadcastChannel" in window;
    if (!shared) { this.lead(); return; }
    this.channel = new BroadcastChannel("livedash");
    this.channel.onmessage = (m) => this.onRelay(m.data || {});
    this.channel.postMessage({ kind: "hello" });
    this.catchUp();
    navigator.locks.request("livedash:stream", () => {
      this.lead();
      return new Promise(() => {});  // held until this page goes away
    });
  }

  // A follower first reads what happened between its snapshot and now;
  // relayed events that arrive meanwhile wait, then go through the filter.
  async catchUp() {
    this.catchingUp = true;
    try {
      for (let page = 0; page < 20 && !this.leader; page++) {
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
  accept(ev, via) {
    if (!ev || !idAfter(ev.id, this.lastId)) return;  // seen already (or older)
    this.lastId = ev.id;
    const log = this.debug.events;
    log.push({ id: ev.id, type: ev.type, topic: ev.topic, via: via, data: ev.data });
    if (log.length > DEBUG_MAX) log.splice(0, log.length - DEBUG_MAX);
    if (this.leader && this.channel) this.channel.postMessage({ kind: "event", ev: ev });
    emit(ev.type, ev);
    emit("event", ev);
  }

  reset(cursor, relay = true) {
    if (cursor) this.lastId = cursor;
    if (relay && this.leader && this.channel) this.channel.postMessage({ kind: "reset", cursor: cursor });
    emit("reset", { cursor: cursor });
  }

  setState(state, relay = true) {
    if (state === this.state) return;
    this.state = state;
    this.debug.states.push(state);
    const badge = document.getElementById("status");
    if (badge) {
      badge.dataset.state = state;
      badge.textContent = LABELS[state] || state;
      badge.title = this.leader ? `this tab holds the connection (${this.mode})` : "shared with another tab";
    }
    if (relay && this.leader && this.channel) this.channel.postMessage({ kind: "state", state: state });
  }

  // --- timers ----------------------------------------------------------------------
  later(fn, ms) {
    const t = setTimeout(() => { this.timers.delete(t); fn(); }, ms);
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

  // --- SSE ---------------------------------------------------------------------------
  // `probe`: an attempt made while polling; it takes over once it hears anything.
  openStream(probe) {
    const url = "/api/stream?last_event_id=" + encodeURIComponent(this.lastId);
    let es;
    try { es = new EventSource(url); } catch (err) { this.streamFailed(null, probe, false); return; }
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
    arm();
    for (const type of STREAM_TYPES) {
      es.addEventListener(type, (e) => { if (hear()) this.accept(JSON.parse(e.data), "sse"); });
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
    // The session ends soon: renew it over plain HTTP (api.js).
    es.addEventListener("reauth", () => { renewSession(); });
    es.addEventListener("bye", (e) => {
      if (this.es !== es) return;
      const reason = (() => { try { return JSON.parse(e.data).reason; } catch (_) { return ""; } })();
      if (reason === "revoked" || reason === "signed-out" || reason === "expired") {
        // Our credential is gone: reconnecting would only get 401. Sign in again.
        this.closeStream();
        this.cancel(watchdog);
        this.setState("offline");
        toLogin();
        return;
      }
      // The server is going away on purpose: come straight back, jittered.
      this.closeStream();
      this.cancel(watchdog);
      this.cancel(readyTimer);
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
  // our backoff): close, then retry, or fall back to polling.
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
    if (this.mode === "poll") return;
    this.mode = "poll";
    this.debug.transport = "poll";
    this.setState("polling");
    this.pollLoop();
    this.probes = 0;
    if (retrySse) this.later(() => this.openStream(true), PROBE_EVERY_MS * (1 + Math.random()));
  }

  async fetchEvents(wait, signal) {
    const url = `/api/events?since=${encodeURIComponent(this.lastId)}&wait=${wait}`;
    const r = await api(url, { signal: signal, cache: "no-store", headers: { Accept: "application/json" } });
    if (!r.ok) throw new Error(`poll answered ${r.status}`);
    return r.json();
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
        errors += 1;
        this.setState(errors >= 3 ? "offline" : "reconnecting");
        await new Promise((res) => this.later(res, this.backoff(Math.min(errors, 5))));
      }
    }
  }
}
