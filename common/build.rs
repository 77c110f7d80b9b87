//! Generates the RPC API's types and service stubs from proto/oort/v1/gateway.proto. protox
//! compiles the .proto in process, so a fresh clone builds offline with no `protoc`.

use std::path::PathBuf;

const PROTO: &str = "oort/v1/gateway.proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptors = protox::Compiler::new(["proto"])?
        .include_imports(true)
        .include_source_info(true)
        .open_file(PROTO)?
        .encode_file_descriptor_set();
    let descriptor_file = out_dir.join("oort.v1.fds.bin");
    std::fs::write(&descriptor_file, descriptors)?;
    connectrpc_build::Config::new()
        .descriptor_set(&descriptor_file)
        .files(&[PROTO])
        .gate_client_feature(true)
        .include_file("_connectrpc.rs")
        .compile()?;
    Ok(())
}
