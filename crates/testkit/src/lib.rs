//! Helpers the workspace's tests share (a dev-dependency only): where the bundled models
//! are, copies of their packages published as a publisher does, waiting for a condition
//! with a deadline instead of hand-written polling loops, free loopback ports, and reading
//! a sample out of a Prometheus text page.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The repository's `models/` folder.
pub fn bundled_models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models")
}

/// Copies the package folder `from` to `root/<name>/<version>` with its manifest's name
/// and version rewritten, `edit` applied to the copy, building it in a hidden staging
/// folder and renaming it into place (as a publisher does). Returns the version folder.
pub fn publish_copy(from: &Path, root: &Path, name: &str, version: u32, edit: impl FnOnce(&Path)) -> PathBuf {
    let staging = root.join(format!(".staging-{name}-{version}"));
    std::fs::create_dir_all(&staging).expect("staging folder");
    for entry in std::fs::read_dir(from).expect("package folder") {
        let entry = entry.expect("package entry");
        std::fs::copy(entry.path(), staging.join(entry.file_name())).expect("package file copied");
    }
    edit_json(&staging.join("manifest.json"), |m| {
        m["name"] = name.into();
        m["version"] = version.into();
    });
    edit(&staging);
    let dest = root.join(name).join(version.to_string());
    std::fs::create_dir_all(dest.parent().expect("model folder")).expect("model folder");
    std::fs::rename(&staging, &dest).expect("published by rename");
    dest
}

/// Rewrites a JSON file through `f`.
pub fn edit_json(path: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let text = std::fs::read_to_string(path).expect("JSON file");
    let mut v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    f(&mut v);
    std::fs::write(path, serde_json::to_string_pretty(&v).expect("serializes")).expect("JSON file written");
}

/// Waits until `f` is true, checking every 5 ms; fails the test naming `what` after
/// `timeout`. Returns the time it took.
pub fn eventually(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
    start.elapsed()
}

/// [`eventually`] for an async condition, sleeping on the tokio timer between checks.
pub async fn eventually_async<F: std::future::Future<Output = bool>>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> F,
) -> Duration {
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

/// A loopback port free at the time of the call.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    listener.local_addr().expect("bound address").port()
}

/// The value of one sample line (`name{labels} value` or `name value`) of a Prometheus
/// text page whose line contains every one of `parts`.
pub fn sample(text: &str, name: &str, parts: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b'{') | Some(b' ')))
        .find(|l| parts.iter().all(|p| l.contains(p)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// A Mosquitto broker (Debian's package; `.ci/test` installs it) on a free loopback port,
/// without persistence, stopped on drop.
#[derive(Debug)]
pub struct Mosquitto {
    child: std::process::Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    /// Starts the broker and waits until it listens (at most 10 s).
    pub fn start() -> Mosquitto {
        let port = free_port();
        let dir = tempfile::tempdir().expect("a temporary folder");
        let conf = dir.path().join("mosquitto.conf");
        let settings = format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n");
        std::fs::write(&conf, settings).expect("broker configuration written");
        let binary = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("the MQTT tests need Mosquitto: apt-get install mosquitto (.ci/test installs it)");
        let child = std::process::Command::new(binary)
            .arg("-c")
            .arg(&conf)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("mosquitto starts");
        eventually(&format!("mosquitto listening on {port}"), Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Mosquitto { child, port, _dir: dir }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_read_by_name_and_labels() {
        let page = "# HELP x\nliveprofile_a{port=\"grpc\"} 3\nliveprofile_a{port=\"metrics\"} 4\nliveprofile_ab 9\n";
        assert_eq!(sample(page, "liveprofile_a", &["port=\"metrics\""]), Some(4.0));
        assert_eq!(sample(page, "liveprofile_ab", &[]), Some(9.0));
        assert_eq!(sample(page, "liveprofile_a", &["port=\"none\""]), None);
    }

    #[test]
    fn a_published_copy_is_renamed_into_place_with_its_identity() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let from = bundled_models().join("user_segments/1");
        let dest = publish_copy(&from, root, "seg", 4, |d| assert!(d.join("model.onnx").is_file()));
        let m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dest.join("manifest.json")).unwrap()).unwrap();
        assert_eq!((m["name"].as_str(), m["version"].as_u64()), (Some("seg"), Some(4)));
        let names: Vec<_> = std::fs::read_dir(root).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["seg"], "no staging folder is left");
    }
}
