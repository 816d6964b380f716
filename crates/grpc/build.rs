//! Generates the gRPC messages, client and server from `proto/galaxycache.proto` with the
//! `protoc` shipped by `protoc-bin-vendored`, so no system protoc is needed.
//!
//! The proto lives outside this package, at the workspace root, where Go and other
//! implementations find it too. That is fine while the package is not published
//! (`publish = false`); publishing it would need a copy of the proto inside the package.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto_dir = manifest_dir.join("../../proto");
    let proto = proto_dir.join("galaxycache.proto");
    let well_known = protoc_bin_vendored::include_path()?;

    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    // Values and keys are `bytes::Bytes`, so the server encodes a cached value without
    // copying it. A decoded value would be a slice of the receive buffer: the client copies
    // it out (see `wire::value_from_wire`) so a cached value holds only its own bytes.
    config.bytes(["."]);

    println!("cargo:rerun-if-changed={}", proto.display());
    tonic_prost_build::configure().compile_with_config(
        config,
        &[proto],
        &[proto_dir, well_known],
    )?;
    Ok(())
}
