//! Generates the messages and clients from `proto/` with protox (no system protoc). The
//! server crate generates its own services from the same files.

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
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .codec_path("crate::codec::Codec")
        .compile_fds(fds)?;
    Ok(())
}
