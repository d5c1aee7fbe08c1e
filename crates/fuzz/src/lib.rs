//! Shared parts of the fuzz targets (`fuzz_targets/`): scratch folders on tmpfs, the
//! allocation guard, seed corpora and a small reader of fuzz input.
//!
//! Every target's `init` calls [`start`]: with `LIVEPROFILE_FUZZ_SEEDS=<dir>` in the
//! environment it writes the target's seed corpus (made with the project's own writers, so
//! that seeds follow format changes) and exits; `crates/fuzz/run` does that before fuzzing.

pub mod seeds;

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Largest single allocation a target may make (bytes); more is reported as a crash.
/// Default 256 MiB (inputs are at most a few hundred KiB: an allocation that large comes
/// from a length read off the input); `LIVEPROFILE_FUZZ_MAX_ALLOC_MB` changes it.
static MAX_ALLOC: AtomicUsize = AtomicUsize::new(256 << 20);

/// Turns a huge allocation into a panic (libfuzzer-sys's hook then aborts, and libFuzzer
/// keeps the input): without a sanitizer runtime libFuzzer's `-malloc_limit_mb` cannot see
/// Rust allocations.
pub struct AllocGuard;

#[cold]
fn too_large(size: usize) -> ! {
    // The limit is lifted first so that the panic's own reporting can allocate.
    let limit = MAX_ALLOC.swap(usize::MAX, Ordering::Relaxed);
    panic!("huge allocation: {size} bytes requested in one allocation (limit {limit})");
}

// SAFETY: every call is forwarded unchanged to the system allocator; the guard only
// refuses (by panicking before allocating) requests over the limit.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for AllocGuard {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > MAX_ALLOC.load(Ordering::Relaxed) {
            too_large(layout.size());
        }
        // SAFETY: the caller's layout contract is passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > MAX_ALLOC.load(Ordering::Relaxed) {
            too_large(layout.size());
        }
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > MAX_ALLOC.load(Ordering::Relaxed) {
            too_large(new_size);
        }
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: AllocGuard = AllocGuard;

/// The repository root (for `models/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// This process's scratch folder: on tmpfs (`/dev/shm`) when there is one.
pub fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() };
        let dir = base.join(format!("liveprofile-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch folder");
        dir
    })
}

/// A new, empty folder under [`scratch`] (the previous one of the same `name` is removed
/// first: one input's files never meet the next input's).
pub fn fresh_dir(name: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    if n > 0 {
        let _ = std::fs::remove_dir_all(scratch().join(format!("{name}-{}", n - 1)));
    }
    let dir = scratch().join(format!("{name}-{n}"));
    std::fs::create_dir_all(&dir).expect("scratch folder");
    dir
}

/// Called from every target's `init`: applies the allocation limit, and writes the seed
/// corpus and exits when `LIVEPROFILE_FUZZ_SEEDS` names a folder.
pub fn start(target: &str, seeds: impl FnOnce() -> Vec<(String, Vec<u8>)>) {
    // libfuzzer-sys's panic hook aborts on every panic, also one the code under test
    // catches on purpose (the event reader turns a Parquet decoder panic on damaged bytes
    // into an error). Back to the default hook: a panic that is caught is an answer, one
    // that is not unwinds into libFuzzer's C frame, which aborts and is a crash.
    drop(std::panic::take_hook());
    if let Some(mb) = std::env::var("LIVEPROFILE_FUZZ_MAX_ALLOC_MB").ok().and_then(|v| v.parse::<usize>().ok()) {
        MAX_ALLOC.store(mb << 20, Ordering::Relaxed);
    }
    if let Some(dir) = std::env::var_os("LIVEPROFILE_FUZZ_SEEDS") {
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir).expect("seed folder");
        let seeds = seeds();
        for (name, bytes) in &seeds {
            std::fs::write(dir.join(name), bytes).expect("seed file");
        }
        eprintln!("{target}: {} seeds written to {}", seeds.len(), dir.display());
        let _ = std::fs::remove_dir_all(scratch());
        std::process::exit(0);
    }
}

/// Reads fuzz input front to back; past the end every read gives zeros or nothing.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    rest: &'a [u8],
}

impl<'a> Input<'a> {
    /// Wraps the input.
    pub fn new(data: &'a [u8]) -> Self {
        Input { rest: data }
    }

    /// One byte (0 past the end).
    pub fn byte(&mut self) -> u8 {
        match self.rest.split_first() {
            Some((b, rest)) => {
                self.rest = rest;
                *b
            }
            None => 0,
        }
    }

    /// A little-endian u16.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    /// Up to `n` bytes.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.rest.split_at(n.min(self.rest.len()));
        self.rest = rest;
        head
    }

    /// A chunk with a u16 length in front.
    pub fn chunk(&mut self) -> &'a [u8] {
        let n = self.u16() as usize;
        self.take(n)
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }

    /// Whether nothing is left.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }
}

/// Builds a chunk as [`Input::chunk`] reads it (for seeds).
pub fn chunk(out: &mut Vec<u8>, bytes: &[u8]) {
    let n = u16::try_from(bytes.len()).expect("seed chunks are under 64 KiB");
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(bytes);
}
