// Every unary RPC of oort.v1.GatewayService, once, through one connect-es transport
// (OORT_TRANSPORT, OORT_HTTP_VERSION; see lib.mjs). Prints one JSON object: each RPC's answer
// as protobuf JSON, or its error. The Rust side (rpc_clients.rs) judges the answers and checks
// that the live WebSocket client received what was sent, so nothing is asserted here.
//
//   OORT_SESSION        a live kuiperbelt session (a WebSocket client the test reads)
//   OORT_USER           the user that session was connected as
//   OORT_CLOSE_SESSION  another live session, closed by the Close RPC
//   OORT_CHANNEL        a channel name used by no other run
//   OORT_LABEL          names this run in the texts sent ("send via LABEL", ...)

import {
  attempt, bearer, client, env, fail, finish, loadService, watchdog,
} from "./lib.mjs";

const label = env("OORT_LABEL");
watchdog(`unary.mjs (${label})`);
const session = env("OORT_SESSION");
const user = env("OORT_USER");
const closeSession = env("OORT_CLOSE_SESSION");
const channel = env("OORT_CHANNEL");

const text = (value) => ({ data: { case: "text", value } });
const binary = (value) => ({ data: { case: "binary", value: new TextEncoder().encode(value) } });

async function main() {
  const { registry, service } = loadService();
  const gateway = client(service);
  const options = { headers: bearer() };
  const out = (name) => service.method[name].output;
  const call = (name, request) =>
    attempt(registry, out(name), () => gateway[name](request, options));

  // In this order so that GetSession sees the subscription and Publish has a subscriber.
  const result = {};
  result.send = await call("send", { sessions: [session], payload: text(`send via ${label}`) });
  result.sendBatch = await call("sendBatch", {
    messages: [
      { sessions: [session], payload: text(`batch text via ${label}`) },
      { sessions: [session], payload: binary(`batch binary via ${label}`) },
    ],
  });
  result.broadcast = await call("broadcast", { payload: text(`broadcast via ${label}`) });
  result.subscribe = await call("subscribe", { sessions: [session], channels: [channel] });
  result.getSession = await call("getSession", { session });
  result.getChannel = await call("getChannel", { channel });
  result.publish = await call("publish", {
    channels: [channel],
    payload: text(`publish via ${label}`),
  });
  result.unsubscribe = await call("unsubscribe", { sessions: [session], channels: [channel] });
  result.getCluster = await call("getCluster", {});
  result.getUser = await call("getUser", { user });
  // A kuiperbelt client cannot answer: the status says so at once, whatever timeout_ms.
  result.requestReply = await call("requestReply", {
    session,
    payload: text(`request via ${label}`),
    timeoutMs: 2000,
  });
  result.close = await call("close", {
    sessions: [closeSession],
    payload: text(`bye via ${label}`),
    code: 4001,
    reason: "rpc close",
  });
  finish(result);
}

main().catch(fail);
