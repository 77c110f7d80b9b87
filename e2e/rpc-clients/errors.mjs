// The error paths of the RPC API as one connect-es transport sees them: each case's code and
// message (Connect's code names, whatever the protocol), or {"answer": ...} when the call
// succeeded (expected only of `afterOversized` and `fence`). The Rust side (rpc_errors.rs) holds the expected codes and texts.
//
//   OORT_SESSION        a live kuiperbelt session: refused sends name it, so a send that
//                       should have been refused but was delivered shows up at its client
//   OORT_V1_SESSION     an `oort.v1` session whose client never replies to requests
//   OORT_OVERSIZE       a text length in bytes above the gateway's limits.max_send_body
//   OORT_LABEL          names this run in the texts sent

import { bearer, client, describeError, env, fail, finish, json, loadService, watchdog } from "./lib.mjs";

const label = env("OORT_LABEL");
watchdog(`errors.mjs (${label})`);
const session = env("OORT_SESSION");
const v1Session = env("OORT_V1_SESSION");
const oversize = Number(env("OORT_OVERSIZE"));
const grpcFamily = ["grpc", "grpcweb"].includes(env("OORT_TRANSPORT"));

const text = (value) => ({ data: { case: "text", value } });

async function main() {
  // Nope is not in the contract: the client sends it as if it were, the server must not know it.
  const { registry, service } = loadService([
    { name: "Nope", inputType: ".oort.v1.GetClusterRequest", outputType: ".oort.v1.GetClusterResponse" },
  ]);
  const gateway = client(service);
  const authorized = { headers: bearer() };

  async function expectError(name, request, options) {
    const started = performance.now();
    try {
      const answer = await gateway[name](request, options);
      return { answer: json(registry, service.method[name].output, answer) };
    } catch (err) {
      return { ...describeError(err), elapsedMs: Math.round(performance.now() - started) };
    }
  }
  const refusedSend = (why) => ({ sessions: [session], payload: text(`refused (${why}) via ${label}`) });

  const result = {};
  result.missingToken = await expectError("send", refusedSend("missing token"), {});
  result.wrongToken = await expectError("send", refusedSend("wrong token"), {
    headers: bearer(`not-${env("OORT_API_TOKEN")}`),
  });
  result.noSession = await expectError("send", { payload: text(`nobody via ${label}`) }, authorized);
  result.oversized = await expectError(
    "send",
    { sessions: [session], payload: text("x".repeat(oversize)) },
    authorized,
  );
  // The refusal must leave the connection usable: over HTTP/1.1 the client keeps the socket
  // for its next call unless the server says `Connection: close`.
  result.afterOversized = await expectError("getCluster", {}, authorized);
  result.unknownMethod = await expectError("nope", {}, authorized);

  // The client's own deadline: connect-es sends it (Connect-Timeout-Ms or grpc-timeout) and
  // also gives up itself at 300 ms, so this case shows what an application sees...
  result.clientDeadline = await expectError(
    "requestReply",
    { session: v1Session, payload: text(`request (client deadline) via ${label}`), timeoutMs: 10000 },
    { ...authorized, timeoutMs: 300 },
  );
  // ...and this one that the server keeps the deadline: the same header, but the client itself
  // would wait 5 s and then report `canceled`, so `deadline_exceeded` can only come from the
  // server.
  const deadlineHeader = grpcFamily ? { "grpc-timeout": "300m" } : { "connect-timeout-ms": "300" };
  result.serverDeadline = await expectError(
    "requestReply",
    { session: v1Session, payload: text(`request (server deadline) via ${label}`), timeoutMs: 10000 },
    { headers: { ...bearer(), ...deadlineHeader }, signal: AbortSignal.timeout(5000) },
  );

  // Sent last: once the client has this, any refused send above would have arrived before it.
  result.fence = json(
    registry,
    service.method.send.output,
    await gateway.send({ sessions: [session], payload: text(`fence via ${label}`) }, authorized),
  );
  finish(result);
}

main().catch(fail);
