// The official Durable Streams conformance suite (@durable-streams/server-conformance-tests),
// run against live servers by the Rust harness (e2e/src/conformance.rs):
//
//   DS_BASE_URLS=http://127.0.0.1:PORT[,http://...] [DS_TOKEN=...] [DS_LONG_POLL_MS=1000] \
//     npx vitest run conformance.test.mjs
//
// DS_BASE_URLS  base URLs, one per node; streams are at <base>/v1/stream/<name>. With several,
//               requests are spread over the nodes round-robin (below).
// DS_TOKEN      when set, every request carries `Authorization: Bearer <token>` (the suite has no
//               auth option of its own).
// DS_LONG_POLL_MS  the server's long-poll timeout: the suite waits at most this plus 1 s for a
//               long-poll, so it must match the server's setting (default 1000).
//
// Both wrappers replace globalThis.fetch, which the suite and @durable-streams/client look up at
// call time, so they see every request either of them makes.

import { runConformanceTests } from "@durable-streams/server-conformance-tests";

const baseUrls = (process.env.DS_BASE_URLS ?? "")
  .split(",")
  .map((url) => url.trim().replace(/\/+$/, ""))
  .filter((url) => url !== "");
if (baseUrls.length === 0) {
  throw new Error("DS_BASE_URLS is not set (comma-separated base URLs, one per node)");
}
const token = process.env.DS_TOKEN;
const longPollTimeoutMs = Number(process.env.DS_LONG_POLL_MS ?? 1000);
if (!Number.isFinite(longPollTimeoutMs) || longPollTimeoutMs <= 0) {
  throw new Error(`DS_LONG_POLL_MS is not a positive number: ${process.env.DS_LONG_POLL_MS}`);
}

const inner = globalThis.fetch;
let next = 0;

// The suite addresses everything through the first base URL. With several nodes, each request
// goes to the next node in turn, so one stream's create, appends and reads cross nodes: what a
// cluster must get right is that any node serves any stream.
function spread(url) {
  if (baseUrls.length < 2 || !url.startsWith(baseUrls[0])) return url;
  const base = baseUrls[next % baseUrls.length];
  next += 1;
  return base + url.slice(baseUrls[0].length);
}

globalThis.fetch = (input, init = {}) => {
  const original =
    typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
  const url = spread(original);
  if (input instanceof Request && url !== original) input = new Request(url, input);
  else if (!(input instanceof Request)) input = url;
  if (token) {
    const headers = new Headers(
      init.headers ?? (input instanceof Request ? input.headers : undefined),
    );
    if (!headers.has("authorization")) headers.set("authorization", `Bearer ${token}`);
    init = { ...init, headers };
  }
  return inner(input, init);
};

runConformanceTests({ baseUrl: baseUrls[0], longPollTimeoutMs });
