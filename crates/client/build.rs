//! Generates the messages and clients from `proto/` with protox (no system protoc). The
//! server crate generates its own services from the same files.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files = [
        "liveprofile/v1/scoring.proto",
        "liveprofile/v1/admin.proto",
        "liveprofile/v1/profiles.proto",
        "liveprofile/v1/experiments.proto",
        "inference/grpc_service.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={}", root.join(f).display());
    }
    let fds = protox::compile(files, [&root])?;
    tonic_prost_build::configure().build_client(true).build_server(false).compile_fds(fds)?;
    Ok(())
}
