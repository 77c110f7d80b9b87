// What the connect-es scripts share: the service read at run time from the FileDescriptorSet
// that `buf build common/proto` wrote (no generated code, so the test exercises the contract
// exactly as committed), a transport chosen by the environment, and error reporting in one
// shape the Rust side can assert on.
//
// Environment (set by e2e/tests/e2e/rpc_support.rs):
//   OORT_RPC_URL          http://127.0.0.1:PORT of the gateway's API listener
//   OORT_API_TOKEN        the gateway's api_token
//   OORT_DESCRIPTORS      path of the FileDescriptorSet (buf build -o ...)
//   OORT_TRANSPORT        connect-json | connect-binary | connect-get | grpc | grpcweb
//   OORT_HTTP_VERSION     1.1 | 2

import { readFileSync } from "node:fs";
import { create, createFileRegistry, fromBinary, toJson } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema, MethodDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";

export const SERVICE = "oort.v1.GatewayService";

export function env(name) {
  const value = process.env[name];
  if (value === undefined || value === "") {
    throw new Error(`${name} is not set`);
  }
  return value;
}

// A hung call must not hang the test: the Rust side kills us too, but a message from here
// says which script and which transport stalled.
export function watchdog(what) {
  const ms = Number(process.env.OORT_SCRIPT_TIMEOUT_MS ?? 30000);
  setTimeout(() => {
    console.error(`${what}: still running after ${ms} ms`);
    process.exit(3);
  }, ms).unref();
}

// `extraMethods` adds methods the contract does not have (to prove the server answers
// `unimplemented` for them) by editing the descriptor before the registry is built.
export function loadService(extraMethods = []) {
  const set = fromBinary(FileDescriptorSetSchema, readFileSync(env("OORT_DESCRIPTORS")));
  for (const file of set.file) {
    for (const service of file.service) {
      if (`${file.package}.${service.name}` === SERVICE) {
        for (const method of extraMethods) {
          service.method.push(create(MethodDescriptorProtoSchema, method));
        }
      }
    }
  }
  const registry = createFileRegistry(set);
  const service = registry.getService(SERVICE);
  if (!service) {
    throw new Error(`${SERVICE} is not in ${env("OORT_DESCRIPTORS")}`);
  }
  return { registry, service };
}

export function transport() {
  const kind = env("OORT_TRANSPORT");
  const httpVersion = env("OORT_HTTP_VERSION");
  const options = { baseUrl: env("OORT_RPC_URL"), httpVersion };
  switch (kind) {
    case "connect-json":
      return createConnectTransport({ ...options, useBinaryFormat: false });
    case "connect-binary":
      return createConnectTransport({ ...options, useBinaryFormat: true });
    // Read-only methods (idempotency_level NO_SIDE_EFFECTS) go as Connect GET requests.
    case "connect-get":
      return createConnectTransport({ ...options, useBinaryFormat: false, useHttpGet: true });
    case "grpc":
      if (httpVersion !== "2") {
        throw new Error("gRPC needs HTTP/2");
      }
      return createGrpcTransport(options);
    case "grpcweb":
      return createGrpcWebTransport({ ...options, useBinaryFormat: true });
    default:
      throw new Error(`unknown OORT_TRANSPORT ${kind}`);
  }
}

export function client(service) {
  return createClient(service, transport());
}

export function bearer(token = env("OORT_API_TOKEN")) {
  return { authorization: `Bearer ${token}` };
}

// Protobuf JSON (enum names, camelCase fields, 64-bit integers as strings), with zero values
// written out so the Rust side can tell "0" from "missing".
export function json(registry, schema, message) {
  return toJson(schema, message, { alwaysEmitImplicit: true, registry });
}

// `DeadlineExceeded` -> `deadline_exceeded`: the codes' names in the Connect protocol, which
// the Rust side asserts on whatever the transport.
export function codeName(code) {
  return Code[code].replace(/[A-Z]/g, (c, i) => (i ? "_" : "") + c.toLowerCase());
}

export function describeError(err) {
  const error = ConnectError.from(err);
  return { code: codeName(error.code), message: error.rawMessage };
}

// Runs `call`; its result as protobuf JSON, or the error as { error: { code, message } }, so
// one failing RPC does not hide the others.
export async function attempt(registry, schema, call) {
  try {
    return json(registry, schema, await call());
  } catch (err) {
    return { error: describeError(err) };
  }
}

// HTTP/2 sessions keep the event loop alive; the result is printed, so end here.
export function finish(result) {
  console.log(JSON.stringify(result));
  process.exit(0);
}

export function fail(err) {
  console.error(err?.stack ?? String(err));
  process.exit(1);
}
