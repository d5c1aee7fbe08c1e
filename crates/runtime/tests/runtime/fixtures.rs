//! Package fixtures: copies of a bundled package under other versions, and ways to break
//! them.

use std::path::{Path, PathBuf};

pub use liveprofile_testkit::{bundled_models, edit_json};

/// The package used as a template.
pub fn template() -> PathBuf {
    bundled_models().join("uci_session_conversion/1")
}

/// Copies the template to `root/<name>/<version>` with the manifest rewritten for it,
/// building in a hidden folder and renaming into place (as a publisher does).
pub fn publish(root: &Path, name: &str, version: u32, edit: impl FnOnce(&Path)) -> PathBuf {
    liveprofile_testkit::publish_copy(&template(), root, name, version, edit)
}

/// Rewrites `manifest.json` in `dir`.
pub fn edit_manifest(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    edit_json(&dir.join("manifest.json"), f);
}

/// Sets the manifest's sha256 to that of the current `model.onnx`.
pub fn fix_checksum(dir: &Path) {
    use sha2::Digest;
    let bytes = std::fs::read(dir.join("model.onnx")).unwrap();
    let sum: String = sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    edit_manifest(dir, |m| m["onnx_sha256"] = sum.into());
}
