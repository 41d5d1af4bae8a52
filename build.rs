//! Compiles `proto/` with protox (pure Rust), so a fresh machine needs no
//! system `protoc`. The encoded descriptor set is written for reflection.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/browserd/v1/sessions.proto",
        "proto/browserd/v1/admin.proto",
        "proto/browserd/v1/contexts.proto",
    ];
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(protos, ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("browserd_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .compile_well_known_types(false)
        .compile_fds(fds)?;
    Ok(())
}
