//! One store per data folder: an exclusive advisory lock (`flock`) on the folder itself,
//! held for the store's life, so that deleting or replacing a file in it cannot let a
//! second store in. The `LOCK` file is locked too (stores of earlier releases lock only
//! that file) and holds the owner's process id, for people.

use crate::error::StoreError;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// The held locks; released when dropped.
#[derive(Debug)]
pub(crate) struct FolderLock {
    _dir: File,
    _file: File,
}

/// Locks `dir` for this store. A store being dropped in this process may hold the lock for
/// a moment more (its snapshot thread lets go within one tick): waits up to a second
/// before reporting the folder in use, naming the holder's process id when it can.
pub(crate) fn lock_folder(dir: &Path) -> Result<FolderLock, StoreError> {
    let dir_file = File::open(dir).map_err(|e| StoreError::io(dir, e))?;
    let lock_path = dir.join("LOCK");
    let wait_until = Instant::now() + Duration::from_secs(1);
    loop {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .map_err(|e| StoreError::io(&lock_path, e))?;
        let held = match dir_file.try_lock() {
            Ok(()) => match file.try_lock() {
                Ok(()) => Ok(()),
                Err(e) => {
                    // Let the folder go again before waiting.
                    let _ = dir_file.unlock();
                    Err((e, lock_path.as_path(), &file))
                }
            },
            Err(e) => Err((e, dir, &dir_file)),
        };
        match held {
            Ok(()) => {
                let mut file = file;
                let pid = format!("{}\n", std::process::id());
                let written = file.set_len(0).and_then(|()| file.write_all(pid.as_bytes()));
                written.map_err(|e| StoreError::io(&lock_path, e))?;
                return Ok(FolderLock { _dir: dir_file, _file: file });
            }
            Err((TryLockError::Error(e), path, _)) => return Err(StoreError::io(path, e)),
            Err((TryLockError::WouldBlock, _, locked)) => {
                if Instant::now() >= wait_until {
                    let pid = holder(locked).or_else(|| pid_in(&lock_path));
                    return Err(StoreError::InUse { dir: dir.display().to_string(), pid });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// The process id written in a `LOCK` file.
fn pid_in(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The process holding a `flock` on the file, from `/proc/locks`.
#[cfg(target_os = "linux")]
fn holder(file: &File) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let meta = file.metadata().ok()?;
    let dev = meta.dev();
    // The kernel prints `major:minor:inode`, major and minor in hex.
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // `1: FLOCK ADVISORY WRITE <pid> <maj:min:inode> 0 EOF`; waiters have `->`.
        if fields.get(1) != Some(&"FLOCK") {
            return None;
        }
        let mut id = fields.get(5)?.split(':');
        let (ma, mi, ino) = (id.next()?, id.next()?, id.next()?);
        let same = u64::from_str_radix(ma, 16).ok()? == major
            && u64::from_str_radix(mi, 16).ok()? == minor
            && ino.parse::<u64>().ok()? == meta.ino();
        if same { fields.get(4)?.parse().ok() } else { None }
    })
}

#[cfg(not(target_os = "linux"))]
fn holder(_file: &File) -> Option<u32> {
    None
}
