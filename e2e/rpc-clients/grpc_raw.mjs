// What a typed client can never send, sent with @grpc/grpc-js's generic client (its serializer
// is the identity, so the bytes go out as they are): a message that is not protobuf, and a
// method the service does not have. Prints {"malformed": {"code", "details"}, "unknownMethod": ...}
// with grpc-js's numeric codes.
//
//   OORT_RPC_ADDR   host:port of the gateway's API listener
//   OORT_API_TOKEN  the gateway's api_token

import grpc from "@grpc/grpc-js";
import { env, fail, finish, watchdog } from "./lib.mjs";

watchdog("grpc_raw.mjs");

// Tag 0x0f is field 1 with wire type 7, which does not exist: no protobuf decoder accepts it.
const NOT_PROTOBUF = Buffer.from([0x0f, 0xff, 0xff, 0xff]);

function call(gateway, path, bytes) {
  const metadata = new grpc.Metadata();
  metadata.set("authorization", `Bearer ${env("OORT_API_TOKEN")}`);
  const identity = (buffer) => buffer;
  return new Promise((resolve) => {
    gateway.makeUnaryRequest(path, identity, identity, bytes, metadata,
      { deadline: Date.now() + 10000 },
      (err, answer) =>
        resolve(err ? { code: err.code, details: err.details } : { answer: answer.toString("hex") }));
  });
}

async function main() {
  const gateway = new grpc.Client(env("OORT_RPC_ADDR"), grpc.credentials.createInsecure());
  const malformed = await call(gateway, "/oort.v1.GatewayService/Send", NOT_PROTOBUF);
  const unknownMethod = await call(gateway, "/oort.v1.GatewayService/Nope", Buffer.alloc(0));
  gateway.close();
  finish({ malformed, unknownMethod });
}

main().catch(fail);
