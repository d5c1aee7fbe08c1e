//! Model packages: one file of a package folder replaced by the input (the manifest, the
//! feature schema or the golden examples of the bundled `user_segments` package, whose
//! graph is small), then the runtime's package loader: manifest and schema parsed and
//! checked against each other and the ONNX graph, plans compiled, golden parity checked.
//! Any answer (a model, or a refusal naming the file) is fine; a panic, hang or huge
//! allocation is not.
//!
//! Input: a file byte (0 `manifest.json`, 1 `feature_schema.json`, 2 `golden.json`), then
//! its text.
#![no_main]

use liveprofile_fuzz::{Input, repo_root, scratch, seeds};
use std::path::PathBuf;
use std::sync::OnceLock;

const FILES: [&str; 3] = ["manifest.json", "feature_schema.json", "golden.json"];

fn bundled() -> PathBuf {
    repo_root().join("models/user_segments/1")
}

/// A copy of the package that inputs overwrite one file of.
fn package() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = scratch().join("package");
        std::fs::create_dir_all(&dir).expect("package folder");
        for f in FILES.iter().chain(&["model.onnx"]) {
            std::fs::copy(bundled().join(f), dir.join(f)).expect("package file");
        }
        dir
    })
}

fn init() {
    liveprofile_fuzz::start("model_package", || seeds::model_package(&bundled()));
    package();
}

libfuzzer_sys::fuzz_target!(init: init(), |data: &[u8]| {
    let mut input = Input::new(data);
    let which = (input.byte() % 3) as usize;
    let dir = package();
    for (i, f) in FILES.iter().enumerate() {
        if i == which {
            std::fs::write(dir.join(f), input.rest()).expect("scratch write");
        } else {
            std::fs::copy(bundled().join(f), dir.join(f)).expect("package file");
        }
    }
    // The parsers on their own, then the whole loader.
    if let Ok(manifest) = liveprofile_runtime::manifest::read_manifest(dir) {
        let _ = liveprofile_runtime::manifest::read_schema(dir, &manifest);
    }
    if let Ok(model) = liveprofile_runtime::load_package(dir) {
        let width = model.width();
        let _ = model.validate(&vec![0.5; width], 1);
    }
});
