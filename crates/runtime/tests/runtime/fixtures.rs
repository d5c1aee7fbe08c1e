//! Package fixtures: copies of a bundled package under other versions, and ways to break
//! them.

use std::path::{Path, PathBuf};

/// The repository's `models/` folder.
pub fn bundled_models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models")
}

/// The package used as a template.
pub fn template() -> PathBuf {
    bundled_models().join("uci_session_conversion/1")
}

/// Copies the template to `root/<name>/<version>` with the manifest rewritten for it,
/// building in a hidden folder and renaming into place (as a publisher does).
pub fn publish(root: &Path, name: &str, version: u32, edit: impl FnOnce(&Path)) -> PathBuf {
    let staging = root.join(format!(".staging-{name}-{version}"));
    std::fs::create_dir_all(&staging).unwrap();
    for entry in std::fs::read_dir(template()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), staging.join(entry.file_name())).unwrap();
    }
    edit_manifest(&staging, |m| {
        m["name"] = name.into();
        m["version"] = version.into();
    });
    edit(&staging);
    let dest = root.join(name).join(version.to_string());
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    std::fs::rename(&staging, &dest).unwrap();
    dest
}

/// Rewrites `manifest.json` in `dir`.
pub fn edit_manifest(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    edit_json(&dir.join("manifest.json"), f);
}

/// Rewrites a JSON file.
pub fn edit_json(path: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

/// Sets the manifest's sha256 to that of the current `model.onnx`.
pub fn fix_checksum(dir: &Path) {
    use sha2::Digest;
    let bytes = std::fs::read(dir.join("model.onnx")).unwrap();
    let sum: String = sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    edit_manifest(dir, |m| m["onnx_sha256"] = sum.into());
}
