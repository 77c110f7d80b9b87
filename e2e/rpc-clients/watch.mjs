// WatchEvents (a server stream) through one connect-es transport: prints {"watching":true}
// once the stream's response headers arrived, so the Rust side knows when to connect the
// watched session and send from it; then prints the events of that session, up to its first
// client message, as one JSON line: {"events":[...]} (protobuf JSON of each Event).
// A server without WatchEvents gives {"unimplemented":"<message>"} instead, and exit 0, so the
// test can say so rather than fail on it.
//
//   OORT_WATCH_SESSION  the session key the Rust side will connect after "watching"
//   OORT_LABEL          names this run in error messages

import { Code, ConnectError } from "@connectrpc/connect";
import { bearer, client, env, fail, finish, json, loadService, watchdog } from "./lib.mjs";

const label = env("OORT_LABEL");
watchdog(`watch.mjs (${label})`);
const watched = env("OORT_WATCH_SESSION");

let announced = false;
// Headers come before any event; the first event stands in for them should a server hold its
// headers back until it has something to send.
function announce() {
  if (!announced) {
    announced = true;
    console.log(JSON.stringify({ watching: true }));
  }
}

async function main() {
  const { registry, service } = loadService();
  const gateway = client(service);
  const eventSchema = registry.getMessage("oort.v1.Event");
  const stream = gateway.watchEvents({}, { headers: bearer(), onHeader: announce });
  const events = [];
  try {
    for await (const response of stream) {
      announce();
      const event = response.event;
      if (event === undefined || event.session !== watched) {
        continue;
      }
      events.push(json(registry, eventSchema, event));
      if (event.kind.case === "message") {
        break;
      }
    }
  } catch (err) {
    const error = ConnectError.from(err);
    if (error.code === Code.Unimplemented) {
      finish({ unimplemented: error.rawMessage });
    }
    throw err;
  }
  // Leaving the loop cancels the call; a stream that ended before the message is a failure
  // the Rust side reports with the events seen.
  finish({ events });
}

main().catch(fail);
