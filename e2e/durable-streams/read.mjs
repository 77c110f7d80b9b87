// Reads one Oort session with the official Durable Streams client (@durable-streams/client),
// unchanged: the session's bearer token goes in its `headers` option.
//
//   node read.mjs STREAM_URL TOKEN MODE
//
// MODE is catch-up, long-poll or sse. Prints one line per message (`item <json>`) as it arrives,
// then `end closed=<bool>` when the stream ends (the backend closed the session), and exits 0;
// any error is printed and exits 1. Bounded by OVERALL_TIMEOUT_MS.

import { stream } from "@durable-streams/client";

const OVERALL_TIMEOUT_MS = 60_000;
const [url, token, mode] = process.argv.slice(2);
if (!url || !token || !["catch-up", "long-poll", "sse"].includes(mode)) {
  console.error("usage: node read.mjs STREAM_URL TOKEN catch-up|long-poll|sse");
  process.exit(2);
}
setTimeout(() => {
  console.error(`FAIL: no end of stream within ${OVERALL_TIMEOUT_MS} ms`);
  process.exit(4);
}, OVERALL_TIMEOUT_MS).unref();

try {
  const response = await stream({
    url,
    offset: "-1",
    live: mode === "catch-up" ? false : mode,
    headers: { Authorization: `Bearer ${token}` },
  });
  if (mode === "catch-up") {
    for (const item of await response.json()) {
      console.log(`item ${JSON.stringify(item)}`);
    }
  } else {
    for await (const item of response.jsonStream()) {
      console.log(`item ${JSON.stringify(item)}`);
    }
  }
  console.log(`end closed=${response.streamClosed} offset=${response.offset}`);
  process.exit(0);
} catch (err) {
  console.error(`FAIL: ${err?.stack ?? err}`);
  process.exit(1);
}
