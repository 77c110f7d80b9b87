// Type declarations for oort.js, the browser client for Oort (served at /oort.js and /oort.d.ts).

/** A way to reach the session, in the order `connect` tries them by default. */
export type Transport = "websocket" | "sse" | "long-poll";

/**
 * - `connecting`: opening a connection (first time or again).
 * - `connected`: a new session is open (the connect callback accepted it).
 * - `resumed`: the same session continues after a reconnection or a change of transport; no
 *   message was lost or repeated.
 * - `reset`: the session was lost (expired, evicted, its node crashed); the client connects
 *   again through the connect callback, and the app should resync with its backend.
 * - `disconnected`: the connection dropped; the client retries with backoff.
 * - `closed`: final. `close()` was called, the backend ended the session, another connection
 *   took the session over, or the connect callback refused it (`info.status`, `info.body`).
 */
export type State = "connecting" | "connected" | "resumed" | "reset" | "disconnected" | "closed";

export interface StateInfo {
  /** The transport in use or being tried. */
  transport: Transport;
  /** The node serving the session, when known. */
  node: string | null;
  /** The session key, when known. */
  session: string | null;
  /** Why (for `reset`, `disconnected` and `closed`). */
  reason?: string;
  /** The WebSocket close code, when one caused this state. */
  code?: number;
  /** The HTTP status, when one caused this state (e.g. a refusal by the connect callback). */
  status?: number;
  /** The body of a refusal by the connect callback. */
  body?: string;
}

export interface MessageMeta {
  /** A backend request's correlation id (`POST /v1/request`): answer it with `client.reply`. */
  request?: string;
  /** The message's sequence number in the session (1, 2, 3, ... with no gaps). */
  seq: number;
}

export interface ConnectOptions {
  /** The connect callback's query string (merged with any query on the URL). */
  query?: Record<string, string | number | boolean | Array<string | number | boolean>> | string;
  /** Transports in order of preference; default `["websocket", "sse", "long-poll"]`. */
  transports?: Transport[];
  /** Reconnection backoff, exponential with full jitter; default `{ initialMs: 500, maxMs: 30000 }`. */
  backoff?: { initialMs?: number; maxMs?: number };
  /** The Durable Streams base path; default `stream` next to the connect path (`/stream`). */
  streamPath?: string;
  /**
   * More gateways of the same cluster (each like `url`), for when no load balancer is in
   * front: when the current one cannot be reached or its connection is lost (1012: draining),
   * the client moves on to the next and resumes the same session there.
   */
  urls?: string[];
  /** While on a fallback transport, how often to try the WebSocket again; default 30000 (+-20 %). */
  websocketRetryMs?: number;
}

export declare class OortClient {
  /** The transport in use, or being tried. */
  readonly transport: Transport;
  /** The last state emitted. */
  readonly state: State;
  /** The session key, once known. */
  readonly session: string | null;
  /** The node serving the session, when the gateway said (HTTP transports; WebSocket when the welcome names it). */
  readonly node: string | null;

  /** A message from the backend: text as a string, binary as an ArrayBuffer; each seq once, in order. */
  on(event: "message", listener: (data: string | ArrayBuffer, meta: MessageMeta) => void): () => void;
  /** A change of state. */
  on(event: "state", listener: (state: State, info: StateInfo) => void): () => void;
  off(event: "message" | "state", listener: (...args: any[]) => void): void;
  /** Answers a backend request (over the WebSocket transport only; throws on another). */
  reply(request: string, data: string | ArrayBuffer | ArrayBufferView): void;

  /**
   * Sends a message to the backend's receive callback: a string as text, bytes as binary.
   * Messages go out one at a time, in order, waiting while disconnected. Resolves once handed
   * to the WebSocket, or accepted by the backend over HTTP; rejects when the client closes
   * first or the gateway refuses it.
   */
  send(data: string | ArrayBuffer | ArrayBufferView | Blob): Promise<void>;

  /** Ends the session (the backend's close callback runs) and stops for good. */
  close(): void;
}

/**
 * Connects to an Oort gateway.
 * @param url the gateway's base (`location.origin`; a path ending in `/` is a prefix) or the
 *   ws/http URL of its connect path (`wss://chat.example/connect`). Default: `location.origin`.
 */
export declare function connect(url?: string | URL, options?: ConnectOptions): OortClient;
