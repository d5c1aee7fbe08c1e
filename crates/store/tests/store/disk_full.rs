//! A full disk: the failing batch gets a "disk full" error and leaves nothing behind (in
//! memory, in the log, after a restart), the store reports itself unable to write, and
//! later batches are taken once there is room, without a restart.
//!
//! The disk fills for real: a child process (this test binary again) runs the store with
//! its file size limit (RLIMIT_FSIZE) lowered, SIGXFSZ ignored, so that writes past the
//! limit fail with EFBIG as they would with ENOSPC.

use super::{incoming, options};
use liveprofile_simulator::DEFAULT_START_MS;
use liveprofile_store::{IncomingEvent, LookupError, ProfileStore, StoreError};
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use std::path::{Path, PathBuf};
use std::process::Command;

const CHILD_DIR: &str = "LIVEPROFILE_STORE_DISK_FULL_CHILD";

/// `n` first events of users `<tag>-0` ... at `ts_ms`.
fn batch(tag: &str, n: usize, ts_ms: i64) -> Vec<IncomingEvent> {
    (0..n).map(|k| incoming(&format!("{tag}-e{k}"), &format!("{tag}-{k}"), ts_ms, "enter")).collect()
}

fn unknown(store: &ProfileStore, tag: &str, n: usize) -> bool {
    (0..n).all(|k| matches!(store.user_features(&format!("{tag}-{k}"), None), Err(LookupError::UnknownUser(_))))
}

fn child_options(dir: &Path) -> liveprofile_store::StoreOptions {
    let mut o = options(dir);
    o.segment_bytes = 256 << 10;
    o
}

#[test]
#[ignore = "the child of a_full_disk_fails_the_batch_alone_and_later_batches_are_taken"]
fn disk_full_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR).map(PathBuf::from) else { return };
    let store = ProfileStore::open(child_options(&dir)).unwrap();
    let t = DEFAULT_START_MS;
    assert_eq!(store.ingest(&batch("a", 10, t)).unwrap().accepted, 10);
    let hard = getrlimit(Resource::Fsize).maximum;
    let limit = store.stats().log_bytes + (16 << 10);
    setrlimit(Resource::Fsize, Rlimit { current: Some(limit), maximum: hard }).unwrap();

    // A batch whose write crosses the limit: refused whole.
    let err = store.ingest(&batch("b", 400, t + 1000)).unwrap_err();
    assert!(matches!(err, StoreError::DiskFull { .. }), "{err}");
    assert!(err.to_string().starts_with("disk full: ") && err.to_string().contains("log records 11 to 410"), "{err}");
    assert!(unknown(&store, "b", 400), "none of the failed batch is visible");
    assert_eq!(store.stats().last_seq, 10);
    assert!(store.write_health().unwrap_err().starts_with("disk full: "));
    assert!(!store.probe_log());
    // A batch with nothing to log succeeds and tells nothing of the disk.
    assert_eq!(store.ingest(&batch("a", 10, t)).unwrap().duplicates, 10);
    assert!(store.write_health().unwrap_err().starts_with("disk full: "));

    // A small batch still fits: the failed one was rolled back, not left half-written.
    assert_eq!(store.ingest(&batch("c", 10, t + 2000)).unwrap().last_seq, 20);
    assert_eq!(store.write_health(), Ok(()));

    // A batch over a segment's capacity needs a segment of its own: creating it fails
    // the same way.
    let err = store.ingest(&batch("h", 6000, t + 3000)).unwrap_err();
    assert!(err.to_string().contains("creating the segment"), "{err}");
    assert!(unknown(&store, "h", 6000));
    assert!(store.write_health().is_err() && !store.probe_log());

    // Room again: the probe sees it, and batches are taken without a restart.
    setrlimit(Resource::Fsize, Rlimit { current: hard, maximum: hard }).unwrap();
    assert!(store.probe_log());
    assert_eq!(store.write_health(), Ok(()));
    assert_eq!(store.ingest(&batch("d", 10, t + 4000)).unwrap().last_seq, 30);
    assert_eq!(store.stats().write_failures, 2);
    println!("disk full child: done");
}

#[test]
fn a_full_disk_fails_the_batch_alone_and_later_batches_are_taken() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(r#"trap '' XFSZ; exec "$0" "$@""#)
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "disk_full::disk_full_child", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir.path())
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && stdout.contains("disk full child: done"), "{stdout}\n{stderr}");

    // After a restart: the batches taken are there, none of the failed ones.
    let store = ProfileStore::open(child_options(dir.path())).unwrap();
    assert_eq!((store.stats().last_seq, store.stats().recovered_records), (30, 30));
    assert!(unknown(&store, "b", 400) && unknown(&store, "h", 6000));
    for tag in ["a", "c", "d"] {
        assert!(store.user_features(&format!("{tag}-9"), None).is_ok());
    }
    let t = DEFAULT_START_MS;
    assert_eq!(store.ingest(&batch("b", 400, t + 5000)).unwrap().accepted, 400);
    assert_eq!(store.ingest(&batch("h", 6000, t + 5000)).unwrap().accepted, 6000);
}
