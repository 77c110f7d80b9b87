// oort.js: the browser client for Oort, served by the gateway at /oort.js. No dependencies.
//
//   import { connect } from "/oort.js";
//   const client = connect(location.origin, { query: { name: "Ada" } });
//   client.on("message", (data, meta) => console.log(meta.seq, data));
//   client.on("state", (state, info) => console.log(state, info.transport, client.node));
//   await client.send("hello");
//   client.close();
//
// connect(url, options) -> OortClient
//   url      the gateway's base ("https://chat.example", location.origin; a path ending in "/"
//            is a prefix) or the ws/http URL of its connect path ("wss://chat.example/connect").
//            Defaults to location.origin.
//   options  query:      object or string, the connect callback's query string (also any query
//                        on `url`)
//            transports: order of preference, default ["websocket", "sse", "long-poll"]
//            backoff:    { initialMs = 500, maxMs = 30000 }, exponential with full jitter
//            streamPath: the Durable Streams base path (default: "stream" next to the connect
//                        path, i.e. "/stream")
//            urls:       more gateways of the same cluster (each as `url`), for when there is no
//                        load balancer in front: when the current one cannot be reached, or its
//                        connection is lost (e.g. 1012, the node is draining), the client moves
//                        on to the next, resuming the same session there (any node serves any
//                        session)
//            websocketRetryMs: while on a fallback transport, how often to try the WebSocket
//                        again in the background (default 30000, with +-20 % jitter)
//
// One session, three transports (docs/protocol.md and the Durable Streams endpoints):
//   - "websocket": WebSocket subprotocol oort.v1 on the connect path; resumes with
//     ?oort_resume=TOKEN&oort_seq=LAST.
//   - "sse": POST /stream (the connect callback) when there is no session yet, then
//     GET /stream/<key>?offset=..&live=sse read with fetch (so the token goes in Authorization).
//   - "long-poll": the same with live=long-poll.
// The client tries the first transport; a transport that fails twice in a row before it ever
// delivered (a WebSocket that does not reach its welcome, an HTTP read that does not get an
// answer) is given up for the next one, on the same session (the token and the last seq carry
// over: the offset is hex16(token id)_hex16(last seq)). While on a fallback, the WebSocket is
// tried again in the background about every 30 s (websocketRetryMs) and taken back when it
// opens.
//
// Messages: each seq is delivered once, in order (a seq at or below the last delivered one is
// dropped). Text arrives as a string, binary as an ArrayBuffer.
// States: "connecting", "connected" (a new session), "resumed" (the same session after a
// reconnection or a change of transport), "reset" (the session was lost: the client connects
// again through the connect callback, and the app should resync), "disconnected" (it will
// retry), "closed" (final: close() was called, the backend ended the session, another
// connection took it over, or the connect callback refused it; see info.reason).
// send(data) resolves once the message is handed to the WebSocket or accepted by the backend
// over HTTP (204); messages go out one at a time, in order, and wait while disconnected.

const ALL_TRANSPORTS = ["websocket", "sse", "long-poll"];
const PROBE_MS = 30_000;
const WELCOME_TIMEOUT_MS = 10_000;
const HTTP_TIMEOUT_MS = 15_000;
const POLL_TIMEOUT_MS = 45_000;
const SSE_FIRST_EVENT_MS = 20_000;
const SSE_IDLE_MS = 90_000;
const ACK_EVERY = 32;
const ACK_AFTER_MS = 250;
const SEND_RETRIES = 5;
const TAKEOVER_GRACE_MS = 15_000;
const PROBE_PAUSE_MS = 200;

/** Connects to an Oort gateway; see the header comment. */
export function connect(url, options = {}) {
  return new OortClient(url, options);
}

class HttpError extends Error {
  constructor(status, body, what, retryAfter) {
    super(`${what}: HTTP ${status}${body ? ` ${body.slice(0, 200)}` : ""}`);
    this.status = status;
    this.body = body;
    this.retryAfter = retryAfter;
  }
}

async function httpError(res, what) {
  const body = await res.text().catch(() => "");
  const after = Number(res.headers.get("Retry-After"));
  return new HttpError(res.status, body, what, Number.isFinite(after) && after > 0 ? after * 1000 : 0);
}

function hex16(value) {
  return BigInt(value).toString(16).padStart(16, "0");
}

function base64ToBuffer(text) {
  const bin = atob(text);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return bytes.buffer;
}

/** The WebSocket URL and the Durable Streams base of a gateway's base URL. */
function endpointOf(url, streamPath) {
  const here = globalThis.location?.href;
  const base = new URL(url ?? globalThis.location?.origin ?? "", here);
  const secure = base.protocol === "https:" || base.protocol === "wss:";
  const httpOrigin = `${secure ? "https:" : "http:"}//${base.host}`;
  const wsOrigin = `${secure ? "wss:" : "ws:"}//${base.host}`;
  const path = base.pathname || "/";
  const dir = path.endsWith("/") ? path : path.slice(0, path.lastIndexOf("/") + 1);
  const connectPath = path.endsWith("/") ? `${path}connect` : path;
  return { base, wsUrl: wsOrigin + connectPath, streamBase: httpOrigin + (streamPath ?? `${dir}stream`) };
}

function toQuery(query) {
  if (query == null) return new URLSearchParams();
  if (typeof query === "string") return new URLSearchParams(query.replace(/^\?/, ""));
  if (query instanceof URLSearchParams) return new URLSearchParams(query);
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v === undefined || v === null) continue;
    if (Array.isArray(v)) v.forEach((item) => params.append(k, String(item)));
    else params.append(k, String(v));
  }
  return params;
}

export class OortClient {
  constructor(url, options = {}) {
    const first = endpointOf(url, options.streamPath);
    const params = new URLSearchParams(first.base.search);
    for (const [k, v] of toQuery(options.query)) params.append(k, v);
    this._query = params.toString();
    this._endpoints = [first, ...(options.urls ?? []).map((other) => endpointOf(other, options.streamPath))];
    this._ei = 0;
    this._wsUrl = first.wsUrl;
    this._streamBase = first.streamBase;
    this._probeMs = options.websocketRetryMs > 0 ? options.websocketRetryMs : PROBE_MS;
    const wanted = options.transports ?? ALL_TRANSPORTS;
    this._transports = wanted.filter((t) => ALL_TRANSPORTS.includes(t));
    if (this._transports.length === 0) throw new Error(`oort: no known transport in ${JSON.stringify(wanted)}`);
    this._backoff = { initialMs: 500, maxMs: 30_000, ...(options.backoff ?? {}) };

    /** The transport in use (or being tried): "websocket", "sse" or "long-poll". */
    this.transport = this._transports[0];
    /** The last state emitted. */
    this.state = "connecting";
    /** The session key, once known. */
    this.session = null;
    /** The node serving this session, when the gateway said. */
    this.node = null;

    this._listeners = { message: new Set(), state: new Set() };
    this._ti = 0;
    this._failures = 0; // consecutive failures of the current transport
    this._attempt = 0; // backoff exponent
    this._gen = 0; // bumped whenever the running transport changes; stale loops stop
    this._token = null;
    this._streamUrl = null;
    this._lastSeq = 0;
    this._offset = null;
    this._cursor = null;
    this._fresh = true; // the next established connection is a new session
    this._established = false;
    this._ws = null; // the current, welcomed WebSocket
    this._wsTry = null; // the WebSocket being opened as the main transport
    this._probe = null; // a background WebSocket attempt while on a fallback
    this._probeTimer = null;
    this._probeDone = null;
    this._probeSettled = null;
    this._retryTimer = null;
    this._switchedAt = 0;
    this._probePaused = false;
    this._takeovers = 0;
    this._abort = null;
    this._ackTimer = null;
    this._unacked = 0;
    this._acked = 0;
    this._outbox = [];
    this._pumping = false;
    this._closed = false;
    setTimeout(() => this._run(), 0); // after the caller attached its listeners
  }

  /** Adds a listener: "message" (data, {seq}) or "state" (state, info). Returns an unsubscribe. */
  on(event, listener) {
    const set = this._listeners[event];
    if (!set) throw new Error(`oort: unknown event ${event}`);
    set.add(listener);
    return () => set.delete(listener);
  }

  /** Removes a listener. */
  off(event, listener) {
    this._listeners[event]?.delete(listener);
  }

  /** Sends a message to the backend's receive callback (string: text; bytes: binary). */
  send(data) {
    if (this._closed) return Promise.reject(new Error("oort: the client is closed"));
    let body = data;
    if (typeof data !== "string") {
      if (data instanceof ArrayBuffer || ArrayBuffer.isView(data) || (typeof Blob !== "undefined" && data instanceof Blob)) {
        body = data;
      } else {
        body = String(data);
      }
    }
    return new Promise((resolve, reject) => {
      this._outbox.push({ data: body, resolve, reject, tries: 0 });
      this._pump();
    });
  }

  /** Ends the session (close callback on the backend) and stops. */
  close() {
    if (this._closed) return;
    const ws = this._ws;
    const token = this._token;
    const streamUrl = this._streamUrl;
    this._ws = null;
    this._stop();
    if (ws && ws.readyState === WebSocket.OPEN) {
      ws.close(1000, "client closed");
    } else if (token && streamUrl) {
      fetch(streamUrl, { method: "DELETE", headers: { Authorization: `Bearer ${token}` }, keepalive: true }).catch(() => {});
    }
    this._setState("closed", { reason: "closed by the client" });
  }

  // ---- state and delivery ----

  _emit(event, ...args) {
    for (const listener of [...this._listeners[event]]) {
      try {
        listener(...args);
      } catch (err) {
        setTimeout(() => {
          throw err;
        }, 0);
      }
    }
  }

  _setState(state, info = {}) {
    if (state === this.state && state !== "reset" && !info.force) return;
    this.state = state;
    this._emit("state", state, { transport: this.transport, node: this.node, session: this.session, ...info });
  }

  _deliver(seq, data, request) {
    if (!Number.isSafeInteger(seq) || seq <= this._lastSeq) return false;
    if (seq !== this._lastSeq + 1) {
      console.warn(`oort: gap in the session: seq ${seq} after ${this._lastSeq}`);
    }
    this._lastSeq = seq;
    this._emit("message", data, request === undefined ? { seq } : { seq, request });
    return true;
  }

  /**
   * Answers a backend request (a message whose meta has `request`): a string as text, bytes as
   * base64. Only over the WebSocket (`oort.v1`); on another transport the request times out.
   */
  reply(request, data) {
    const ws = this._ws;
    if (this.transport !== "websocket" || !ws || ws.readyState !== WebSocket.OPEN) {
      throw new Error("oort: replies need the WebSocket transport");
    }
    const frame = { type: "reply", request };
    if (typeof data === "string") {
      frame.data = data;
    } else {
      const bytes = data instanceof ArrayBuffer
        ? new Uint8Array(data)
        : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      let binary = "";
      for (const byte of bytes) binary += String.fromCharCode(byte);
      frame.data_base64 = btoa(binary);
    }
    ws.send(JSON.stringify(frame));
  }

  _deliverEnvelopes(list) {
    const items = Array.isArray(list) ? list : [list];
    for (const env of items) {
      if (!env || typeof env.seq !== "number") continue;
      const data = env.kind === "binary" ? base64ToBuffer(env.data ?? "") : env.data;
      this._deliver(env.seq, data);
    }
  }

  _computedOffset() {
    const id = this._token?.split(".")[2];
    if (id && /^\d+$/.test(id)) return `${hex16(id)}_${hex16(this._lastSeq)}`;
    return this._lastSeq === 0 ? "-1" : null;
  }

  // ---- scheduling ----

  _stop() {
    this._closed = true;
    this._gen++;
    this._abortHttp();
    clearTimeout(this._retryTimer);
    clearTimeout(this._probeTimer);
    clearTimeout(this._ackTimer);
    for (const ws of [this._wsTry, this._probe, this._ws]) {
      if (ws) {
        ws.onclose = ws.onmessage = ws.onerror = null;
        try {
          ws.close(1000);
        } catch {
          /* closing anyway */
        }
      }
    }
    this._wsTry = this._probe = this._ws = null;
    const pending = this._outbox.splice(0);
    for (const item of pending) item.reject(new Error("oort: the client is closed"));
  }

  _finish(state, info) {
    if (this._closed) return;
    this._stop();
    this._setState(state, info);
  }

  _abortHttp() {
    if (this._abort) {
      this._abort.abort();
      this._abort = null;
    }
  }

  _delay() {
    const cap = Math.min(this._backoff.maxMs, this._backoff.initialMs * 2 ** Math.min(this._attempt, 30));
    this._attempt++;
    return Math.random() * cap;
  }

  _schedule(ms) {
    clearTimeout(this._retryTimer);
    const gen = ++this._gen;
    this._retryTimer = setTimeout(() => {
      if (gen === this._gen) this._run();
    }, ms);
  }

  _run() {
    if (this._closed) return;
    const changed = this.transport !== this._transports[this._ti];
    this.transport = this._transports[this._ti];
    this._established = false;
    this._setState("connecting", { force: changed });
    if (this.transport === "websocket") this._openWs(false);
    else this._runHttp(++this._gen);
  }

  /** Moves on to the next gateway of `urls` (nothing to do with one), on the same session. */
  _nextEndpoint() {
    if (this._endpoints.length < 2) return;
    this._ei = (this._ei + 1) % this._endpoints.length;
    const { wsUrl, streamBase } = this._endpoints[this._ei];
    this._wsUrl = wsUrl;
    this._streamBase = streamBase;
    if (this.session != null) this._streamUrl = `${streamBase}/${encodeURIComponent(this.session)}`;
  }

  /** The current transport failed to (re)establish: retry, or after two failures fall back. */
  _transportFailed(why) {
    if (this._closed) return;
    this._nextEndpoint();
    this._failures++;
    if (this.state === "connected" || this.state === "resumed") this._setState("disconnected", { reason: why });
    if (this._failures >= 2 && this._ti < this._transports.length - 1) {
      this._ti++;
      this._failures = 0;
      this._attempt = 0;
      this._schedule(0);
    } else {
      this._schedule(this._delay());
    }
  }

  /** The current transport works: reset the counters, tell the app, start what waited. */
  _onEstablished() {
    this._failures = 0;
    this._attempt = 0;
    if (!this._established) {
      this._established = true;
      this._setState(this._fresh ? "connected" : "resumed", { force: true });
      this._fresh = false;
    }
    this._pump();
    this._planProbe();
  }

  /** Lost the session: forget it and connect again through the connect callback. */
  _reset(reason) {
    this._token = null;
    this._streamUrl = null;
    this.session = null;
    this._offset = null;
    this._cursor = null;
    this._lastSeq = 0;
    this._acked = 0;
    this._unacked = 0;
    this._fresh = true;
    // A new session starts from the preferred transport again.
    this._ti = 0;
    this._failures = 0;
    this._setState("reset", { reason });
    this._schedule(Math.min(this._delay(), 1000));
  }

  // ---- WebSocket (oort.v1) ----

  _openWs(probe) {
    const resuming = !!this._token;
    const url = resuming
      ? `${this._wsUrl}?oort_resume=${encodeURIComponent(this._token)}&oort_seq=${this._lastSeq}`
      : this._wsUrl + (this._query ? `?${this._query}` : "");
    let ws;
    try {
      ws = new WebSocket(url, ["oort.v1"]);
    } catch (err) {
      if (probe) this._probeFailed();
      else this._transportFailed(String(err));
      return;
    }
    ws.binaryType = "arraybuffer";
    if (probe) {
      this._probe = ws;
      this._probeDone = new Promise((resolve) => {
        this._probeSettled = resolve;
      });
    } else {
      this._wsTry = ws;
    }
    let welcomed = false;
    let resetReason = null;
    const timer = setTimeout(() => {
      if (!welcomed) ws.close(); // fires onclose: counted as a failure
    }, WELCOME_TIMEOUT_MS);

    ws.onmessage = (event) => {
      if (this._closed) return;
      if (!welcomed) {
        if (typeof event.data !== "string") return;
        let frame;
        try {
          frame = JSON.parse(event.data);
        } catch {
          return;
        }
        if (frame.type === "reset") {
          resetReason = frame.reason || "reset";
          return;
        }
        if (frame.type !== "welcome") return;
        welcomed = true;
        clearTimeout(timer);
        this._onWelcome(ws, frame, resuming, probe);
        return;
      }
      if (ws !== this._ws) return;
      this._onWsMessage(ws, event.data);
    };

    ws.onclose = (event) => {
      clearTimeout(timer);
      if (probe && this._probe === ws) this._endProbe();
      if (this._wsTry === ws) this._wsTry = null;
      if (this._closed) return;
      if (!welcomed) {
        if (resetReason !== null || event.code === 4000) {
          if (probe) {
            // The session is gone; the HTTP transport will learn it too.
            this._probeFailed();
            return;
          }
          this._reset(resetReason || event.reason || "reset");
          return;
        }
        if (probe) this._probeFailed();
        else this._transportFailed(`WebSocket closed before its welcome (${event.code})`);
        return;
      }
      if (ws !== this._ws) return;
      this._ws = null;
      clearTimeout(this._ackTimer);
      this._onWsClose(event, resetReason);
    };
  }

  _onWelcome(ws, frame, resuming, probe) {
    if (probe) {
      // Take the session back from the HTTP transport.
      this._endProbe();
      this._gen++;
      this._abortHttp();
      clearTimeout(this._retryTimer);
      this._ti = this._transports.indexOf("websocket");
      this.transport = "websocket";
      this._established = false;
      this._switchedAt = Date.now();
      this._probePaused = false;
    }
    this._wsTry = null;
    this._ws = ws;
    this._token = frame.resume ?? this._token;
    if (frame.session !== undefined) this.session = frame.session;
    if (frame.node) this.node = frame.node;
    if (!resuming) {
      this._fresh = true;
      if (typeof frame.seq === "number") this._lastSeq = frame.seq;
    }
    this._streamUrl = this.session != null ? `${this._streamBase}/${encodeURIComponent(this.session)}` : null;
    this._offset = null;
    this._cursor = null;
    this._acked = this._lastSeq;
    this._unacked = 0;
    this._onEstablished();
  }

  _onWsMessage(ws, raw) {
    if (typeof raw === "string") {
      let frame;
      try {
        frame = JSON.parse(raw);
      } catch {
        return;
      }
      if (frame.type === "token") {
        if (frame.resume) this._token = frame.resume;
        return;
      }
      if (frame.type === "reset") {
        this._pendingReset = frame.reason || "reset";
        return;
      }
      if (frame.type !== undefined || typeof frame.seq !== "number") return;
      if (typeof frame.request === "string") {
        const data = frame.data_base64 !== undefined ? base64ToBuffer(frame.data_base64) : frame.data;
        this._deliver(frame.seq, data, frame.request);
      } else {
        this._deliver(frame.seq, frame.data);
      }
    } else {
      const buf = raw;
      if (buf.byteLength < 8) return;
      const seq = Number(new DataView(buf).getBigUint64(0));
      this._deliver(seq, buf.slice(8));
    }
    this._unacked++;
    if (this._unacked >= ACK_EVERY) this._ack(ws);
    else if (!this._ackTimer) this._ackTimer = setTimeout(() => this._ack(ws), ACK_AFTER_MS);
  }

  _ack(ws) {
    clearTimeout(this._ackTimer);
    this._ackTimer = null;
    this._unacked = 0;
    if (ws !== this._ws || ws.readyState !== WebSocket.OPEN || this._lastSeq <= this._acked) return;
    this._acked = this._lastSeq;
    ws.send(JSON.stringify({ type: "ack", seq: this._lastSeq }));
  }

  _onWsClose(event, resetReason) {
    const code = event.code;
    const reason = event.reason || "";
    if (code === 4000 || resetReason !== null || this._pendingReset) {
      const why = this._pendingReset || resetReason || reason || "reset";
      this._pendingReset = null;
      this._reset(why);
      return;
    }
    if (code === 4001 && Date.now() - this._switchedAt < TAKEOVER_GRACE_MS && this._takeovers++ < 3) {
      // Our own HTTP read, still open on the server when the WebSocket took the session back,
      // read once more and took it again: resume at once (it does not outlive another round).
      this._established = false;
      this._schedule(0);
      return;
    }
    if (code === 4001) {
      this._finish("closed", { reason: "taken over by another connection", code });
      return;
    }
    if (code === 1000 || code === 1002 || code === 1003 || code === 1007 || code === 1008 || code === 1009) {
      this._finish("closed", { reason: reason || `closed by the gateway (${code})`, code });
      return;
    }
    this._established = false;
    this._nextEndpoint();
    this._setState("disconnected", { reason: reason || `connection lost (${code})`, code });
    // 1012: the node is draining; resume at once elsewhere.
    this._schedule(code === 1012 ? 0 : this._delay());
  }

  /** The background WebSocket did not open: read on over HTTP, quietly, where it paused. */
  _probeFailed() {
    if (this._probePaused) {
      this._probePaused = false;
      if (!this._closed && this.transport !== "websocket") this._runHttp(++this._gen);
    }
    this._planProbe(true);
  }

  _endProbe() {
    this._probe = null;
    this._probeSettled?.();
    this._probeSettled = null;
  }

  /**
   * Waits while a background WebSocket is being opened: taking the session over ends the HTTP
   * read (or answers it 409) before the welcome arrives, and a read started meanwhile would take
   * the session back.
   */
  async _settleProbe() {
    while (this._probe && this._probeDone) await this._probeDone;
  }

  /** While on a fallback, try the WebSocket again in the background every ~30 s. */
  _planProbe(again = false) {
    if (this._closed) return;
    if (!again && this._probeTimer) return;
    clearTimeout(this._probeTimer);
    this._probeTimer = null;
    const ws = this._transports.indexOf("websocket");
    if (ws < 0 || this.transport === "websocket") return;
    const ms = this._probeMs * (0.8 + Math.random() * 0.4);
    this._probeTimer = setTimeout(async () => {
      this._probeTimer = null;
      if (this._closed || this.transport === "websocket" || this._probe) return;
      if (!this._token) {
        this._planProbe();
        return;
      }
      if (this.transport === "sse" && this._established) {
        // End our SSE read first: one still open on the server when the WebSocket resumes
        // would read once more and take the session back (4001).
        this._gen++;
        this._abortHttp();
        this._probePaused = true;
        await new Promise((resolve) => setTimeout(resolve, PROBE_PAUSE_MS));
        if (this._closed || this.transport === "websocket") return;
      }
      this._openWs(true);
    }, ms);
  }

  // ---- HTTP (Durable Streams): sse and long-poll ----

  _authHeaders() {
    return { Authorization: `Bearer ${this._token}` };
  }

  _absorb(res) {
    const token = res.headers.get("Oort-Token");
    if (token) this._token = token;
    const node = res.headers.get("Oort-Node");
    if (node) this.node = node;
    const next = res.headers.get("Stream-Next-Offset");
    if (next) this._offset = next;
    const cursor = res.headers.get("Stream-Cursor");
    if (cursor) this._cursor = cursor;
    return res.headers.get("Stream-Closed") === "true";
  }

  async _fetch(url, init, timeoutMs) {
    const ctl = new AbortController();
    this._abort = ctl;
    const timer = setTimeout(() => ctl.abort(new Error("timeout")), timeoutMs);
    try {
      return await fetch(url, { cache: "no-store", ...init, signal: ctl.signal });
    } finally {
      clearTimeout(timer);
    }
  }

  async _cometConnect(gen) {
    const url = this._streamBase + (this._query ? `?${this._query}` : "");
    const res = await this._fetch(url, { method: "POST" }, HTTP_TIMEOUT_MS);
    if (gen !== this._gen) return;
    if (res.status !== 201 && res.status !== 200) {
      const err = await httpError(res, "connect");
      err.connect = true;
      throw err;
    }
    const body = await res.json();
    if (gen !== this._gen) return;
    this._token = body.token;
    this.session = body.session;
    this._streamUrl = new URL(body.stream ?? `${this._streamBase}/${encodeURIComponent(body.session)}`, this._streamBase).href;
    if (body.node) this.node = body.node;
    const headerToken = res.headers.get("Oort-Token");
    if (headerToken && !body.token) this._token = headerToken;
    this._lastSeq = 0;
    this._acked = 0;
    this._offset = null;
    this._cursor = null;
    this._fresh = true;
  }

  _readUrl(live) {
    if (!this._streamUrl && this.session != null) this._streamUrl = `${this._streamBase}/${encodeURIComponent(this.session)}`;
    const offset = this._offset ?? this._computedOffset() ?? "-1";
    let url = `${this._streamUrl}?offset=${encodeURIComponent(offset)}`;
    if (live) url += `&live=${live}`;
    if (this._cursor) url += `&cursor=${encodeURIComponent(this._cursor)}`;
    return url;
  }

  _checkOffset() {
    const seq = this._offset?.split("_")[1];
    if (seq && /^[0-9a-f]{16}$/.test(seq) && parseInt(seq, 16) !== this._lastSeq) {
      console.warn(`oort: Stream-Next-Offset ${this._offset} does not match the last seq ${this._lastSeq}`);
    }
  }

  async _runHttp(gen) {
    const live = this.transport;
    try {
      if (!this._token) {
        await this._cometConnect(gen);
        if (gen !== this._gen) return;
        this._pump();
      }
      if (live === "sse") await this._readSse(gen);
      else await this._longPoll(gen);
    } catch (err) {
      await this._settleProbe();
      if (gen !== this._gen || this._closed) return;
      this._httpFailed(err);
    }
  }

  _httpFailed(err) {
    this._abort = null;
    const status = err instanceof HttpError ? err.status : 0;
    if (err.connect && status >= 400 && status < 500 && status !== 408 && status !== 429) {
      this._finish("closed", { reason: "refused by the backend", status, body: err.body });
      return;
    }
    if (status === 401 || status === 404 || status === 410 || status === 400) {
      const reasons = { 400: "bad offset", 401: "token refused", 404: "session over", 410: "offset no longer retained" };
      this._reset(reasons[status]);
      return;
    }
    if (status === 409) {
      this._finish("closed", { reason: "taken over by another transport", status });
      return;
    }
    if (status) {
      // 5xx, 429, ...: back off and retry, on the same transport.
      if (this.state === "connected" || this.state === "resumed") this._setState("disconnected", { reason: err.message, status });
      this._established = false;
      this._schedule(Math.max(err.retryAfter || 0, this._delay()));
      return;
    }
    this._established = false;
    this._transportFailed(String(err?.message || err));
  }

  async _longPoll(gen) {
    // A catch-up read first (it answers at once), then long polls.
    let live = null;
    while (gen === this._gen) {
      await this._settleProbe();
      if (gen !== this._gen) return;
      const started = Date.now();
      const polled = live;
      live = "long-poll";
      const res = await this._fetch(this._readUrl(polled), { headers: this._authHeaders() }, POLL_TIMEOUT_MS);
      if (gen !== this._gen) return;
      if (res.status !== 200 && res.status !== 204) throw await httpError(res, "read");
      const closed = this._absorb(res);
      if (res.status === 200) {
        const text = await res.text();
        if (gen !== this._gen) return;
        if (text.trim()) this._deliverEnvelopes(JSON.parse(text));
        this._checkOffset();
      }
      this._abort = null;
      this._onEstablished();
      if (closed) {
        this._finish("closed", { reason: "the session ended" });
        return;
      }
      if (res.status === 204 && polled && Date.now() - started < 500) await new Promise((r) => setTimeout(r, 500));
    }
  }

  async _readSse(gen) {
    while (gen === this._gen) {
      await this._settleProbe();
      if (gen !== this._gen) return;
      const res = await this._fetch(
        this._readUrl("sse"),
        { headers: { ...this._authHeaders(), Accept: "text/event-stream" } },
        HTTP_TIMEOUT_MS,
      );
      if (gen !== this._gen) return;
      if (res.status !== 200) throw await httpError(res, "read");
      if (this._absorb(res)) {
        this._finish("closed", { reason: "the session ended" });
        return;
      }
      const ctl = this._abort;
      const closed = await this._consumeSse(gen, res, ctl);
      if (gen !== this._gen) return;
      if (closed) {
        this._finish("closed", { reason: "the session ended" });
        return;
      }
      // The server ends each response after a while: read on from the last offset.
    }
  }

  /** Reads one SSE response; returns true when the stream said the session is closed. */
  async _consumeSse(gen, res, ctl) {
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    let eventName = "";
    let dataLines = [];
    let closed = false;
    let sawEvent = false;
    let idle = setTimeout(() => ctl.abort(new Error("no SSE event")), SSE_FIRST_EVENT_MS);
    const dispatch = () => {
      const name = eventName || "message";
      const data = dataLines.join("\n");
      eventName = "";
      dataLines = [];
      if (gen !== this._gen) return;
      if (name === "data") {
        if (data.trim()) this._deliverEnvelopes(JSON.parse(data));
      } else if (name === "control") {
        const control = JSON.parse(data);
        if (control.streamNextOffset) this._offset = control.streamNextOffset;
        if (control.streamCursor) this._cursor = control.streamCursor;
        if (control.streamClosed) closed = true;
        this._checkOffset();
        if (!sawEvent) {
          sawEvent = true;
          this._onEstablished();
        }
      }
    };
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (gen !== this._gen) return false;
        clearTimeout(idle);
        idle = setTimeout(() => ctl.abort(new Error("SSE idle")), sawEvent ? SSE_IDLE_MS : SSE_FIRST_EVENT_MS);
        if (done) buffer += decoder.decode();
        else buffer += decoder.decode(value, { stream: true });
        for (;;) {
          const cr = buffer.indexOf("\r");
          const lf = buffer.indexOf("\n");
          let end = cr < 0 ? lf : lf < 0 ? cr : Math.min(cr, lf);
          if (end < 0) break;
          let skip = 1;
          if (buffer[end] === "\r") {
            if (end === buffer.length - 1 && !done) break; // a \n may follow
            if (buffer[end + 1] === "\n") skip = 2;
          }
          const line = buffer.slice(0, end);
          buffer = buffer.slice(end + skip);
          if (line === "") dispatch();
          else if (line[0] === ":") continue;
          else {
            const colon = line.indexOf(":");
            const field = colon < 0 ? line : line.slice(0, colon);
            let val = colon < 0 ? "" : line.slice(colon + 1);
            if (val[0] === " ") val = val.slice(1);
            if (field === "event") eventName = val;
            else if (field === "data") dataLines.push(val);
          }
          if (closed) break;
        }
        if (done || closed) break;
      }
    } finally {
      clearTimeout(idle);
      reader.cancel().catch(() => {});
    }
    if (!sawEvent && !closed) throw new Error("the SSE response ended without an event");
    return closed;
  }

  // ---- sending ----

  async _pump() {
    if (this._pumping) return;
    this._pumping = true;
    try {
      while (this._outbox.length && !this._closed) {
        const item = this._outbox[0];
        if (this.transport === "websocket") {
          const ws = this._ws;
          if (!ws || ws.readyState !== WebSocket.OPEN) break; // the welcome pumps again
          if (typeof item.data === "string") ws.send(JSON.stringify({ type: "message", data: item.data }));
          else ws.send(item.data);
          this._outbox.shift();
          item.resolve();
          continue;
        }
        if (!this._token || !this._streamUrl) break; // the HTTP session pumps again once it has one
        const transport = this.transport;
        try {
          await this._post(item);
          this._outbox.shift();
          item.resolve();
        } catch (err) {
          if (this._closed) break;
          const status = err instanceof HttpError ? err.status : 0;
          if (status === 409 && this.transport !== transport) continue; // resend on the new transport
          if ((status === 429 || status === 502 || status === 503 || status === 504) && ++item.tries <= SEND_RETRIES) {
            await new Promise((r) => setTimeout(r, Math.max(err.retryAfter || 0, this._delay())));
            continue;
          }
          this._outbox.shift();
          item.reject(err);
        }
      }
    } finally {
      this._pumping = false;
    }
  }

  async _post(item) {
    const text = typeof item.data === "string";
    const res = await fetch(this._streamUrl, {
      method: "POST",
      cache: "no-store",
      headers: {
        ...this._authHeaders(),
        "Content-Type": text ? "text/plain;charset=utf-8" : "application/octet-stream",
      },
      body: item.data,
    });
    const token = res.headers.get("Oort-Token");
    if (token) this._token = token;
    if (res.status !== 204 && res.status !== 200) throw await httpError(res, "send");
  }
}
