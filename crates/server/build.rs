//! Generates the gRPC code from `proto/` with protox (no system protoc), and writes the
//! encoded file descriptor set that server reflection serves. Services only: clients are
//! in `liveprofile-client`. Every service uses the crate's codec (`limits::codec`):
//! requests admitted by size before decoding, undecodable requests INVALID_ARGUMENT.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    // One list for the server's and the client's code: proto/services.txt.
    let list = root.join("services.txt");
    println!("cargo:rerun-if-changed={}", list.display());
    let text = std::fs::read_to_string(&list)?;
    let files: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    for f in &files {
        println!("cargo:rerun-if-changed={}", root.join(f).display());
    }
    let fds = protox::compile(&files, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("descriptor.bin"), prost::Message::encode_to_vec(&fds))?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .codec_path("crate::limits::codec::Codec")
        .compile_fds(fds)?;
    Ok(())
}
