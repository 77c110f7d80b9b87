// The reference gRPC client for Node (@grpc/grpc-js) with @grpc/proto-loader reading
// gateway.proto itself, as a backend team would: a Send to the live session, then the same call
// with a wrong token. Prints {"send": <answer>, "badToken": {"code", "details"} | {"answer"}}.
//
//   OORT_RPC_ADDR   host:port of the gateway's API listener (no scheme: grpc-js wants a target)
//   OORT_API_TOKEN  the gateway's api_token
//   OORT_PROTO_ROOT common/proto (the buf module root, so imports resolve as buf sees them)
//   OORT_SESSION    a live kuiperbelt session
//   OORT_TEXT       what to send it

import grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";
import { env, fail, finish, watchdog } from "./lib.mjs";

watchdog("grpc_js.mjs");

const definition = protoLoader.loadSync("oort/v1/gateway.proto", {
  includeDirs: [env("OORT_PROTO_ROOT")],
  // Enum names and 64-bit integers as strings, every field present: JSON the Rust side reads
  // like the other clients' (field names stay as in the .proto: snake_case).
  enums: String,
  longs: String,
  defaults: true,
  oneofs: true,
  keepCase: true,
});
const { GatewayService } = grpc.loadPackageDefinition(definition).oort.v1;

function send(gateway, token, request) {
  const metadata = new grpc.Metadata();
  metadata.set("authorization", `Bearer ${token}`);
  return new Promise((resolve) => {
    gateway.Send(request, metadata, { deadline: Date.now() + 10000 }, (err, answer) =>
      resolve(err ? { code: err.code, details: err.details } : { answer }),
    );
  });
}

async function main() {
  const gateway = new GatewayService(env("OORT_RPC_ADDR"), grpc.credentials.createInsecure());
  const request = { sessions: [env("OORT_SESSION")], payload: { text: env("OORT_TEXT") } };
  const token = env("OORT_API_TOKEN");
  const sent = await send(gateway, token, request);
  const badToken = await send(gateway, `wrong-${token}`, request);
  // Not gateway.close(): grpc-js also names each method in lowerCamelCase, so the service's
  // Close RPC shadows the client's own close().
  grpc.Client.prototype.close.call(gateway);
  finish({ send: sent, badToken });
}

main().catch(fail);
