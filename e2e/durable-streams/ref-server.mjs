// The reference Durable Streams server (@durable-streams/server), for checking the conformance
// harness itself (e2e/src/conformance.rs): the suite's own server should pass nearly all of it.
//
//   [DS_LONG_POLL_MS=1000] node ref-server.mjs
//
// Listens on 127.0.0.1 on a free port, prints its base URL on stdout, and serves until killed.

import { DurableStreamTestServer } from "@durable-streams/server";

const longPollTimeout = Number(process.env.DS_LONG_POLL_MS ?? 1000);
const server = new DurableStreamTestServer({ host: "127.0.0.1", port: 0, longPollTimeout });
console.log(await server.start());
