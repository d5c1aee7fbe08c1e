//! Publishing a file by rename, the one way the project writes an output file.
//!
//! [`Publication::create`] opens a temporary file in the target's own folder (a hidden
//! name, `.<name>.<pid>.partial`, so a rename never crosses file systems and readers
//! listing the folder skip it). The caller writes through [`Publication::file`];
//! [`Publication::publish`] syncs the file, renames it over the target and syncs the
//! folder, so after a crash the target is either the old file or the whole new one. A
//! publication dropped without `publish` (an error on the way, a panic) removes its
//! temporary file.
//!
//! The target must be absent or a regular file: a device, FIFO, socket or folder at the
//! target path is refused before anything is written (renaming over `/dev/null` would
//! replace the device).

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

/// A file being written, published on [`Publication::publish`].
#[derive(Debug)]
pub struct Publication {
    target: PathBuf,
    temporary: PathBuf,
    file: Option<File>,
}

/// Why a publication failed, with the path it was about.
#[derive(Debug)]
pub struct PublishError {
    /// The target or temporary file, or the folder.
    pub path: PathBuf,
    /// The cause.
    pub source: io::Error,
}

impl std::fmt::Display for PublishError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.source)
    }
}

impl std::error::Error for PublishError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

fn error(path: &Path, source: io::Error) -> PublishError {
    PublishError { path: path.to_owned(), source }
}

/// The folder a path is in (`.` for a bare file name).
fn folder_of(path: &Path) -> &Path {
    path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

impl Publication {
    /// Starts writing `target`: refuses a target that exists and is not a regular file,
    /// then creates the temporary file beside it.
    pub fn create(target: impl Into<PathBuf>) -> Result<Publication, PublishError> {
        let target = target.into();
        let name = target
            .file_name()
            .ok_or_else(|| error(&target, io::Error::new(io::ErrorKind::InvalidInput, "not a file name")))?
            .to_string_lossy()
            .into_owned();
        match fs::symlink_metadata(&target) {
            Ok(m) if !m.file_type().is_file() => {
                return Err(error(
                    &target,
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "exists and is not a regular file; refusing to replace it",
                    ),
                ));
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(error(&target, e)),
        }
        let temporary = folder_of(&target).join(format!(".{name}.{}.partial", std::process::id()));
        let file = File::create(&temporary).map_err(|e| error(&temporary, e))?;
        Ok(Publication { target, temporary, file: Some(file) })
    }

    /// Writes `bytes` as the whole of `target`.
    pub fn write_all(target: impl Into<PathBuf>, bytes: &[u8]) -> Result<(), PublishError> {
        use std::io::Write;
        let mut p = Publication::create(target)?;
        let temporary = p.temporary.clone();
        p.file().write_all(bytes).map_err(|e| error(&temporary, e))?;
        p.publish()
    }

    /// The file to write.
    pub fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("the file is held until published")
    }

    /// Takes the file out (for writers that own it, such as a Parquet writer); give it
    /// back with [`Publication::publish_file`].
    pub fn take_file(&mut self) -> File {
        self.file.take().expect("the file is held until published")
    }

    /// The temporary path (for error messages).
    pub fn temporary_path(&self) -> &Path {
        &self.temporary
    }

    /// The target path.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Publishes a file taken with [`Publication::take_file`] (and written to the end).
    pub fn publish_file(mut self, file: File) -> Result<(), PublishError> {
        self.file = Some(file);
        self.publish()
    }

    /// Syncs the file, renames it over the target and syncs the folder.
    pub fn publish(mut self) -> Result<(), PublishError> {
        let file = self.file.take().expect("the file is held until published");
        file.sync_all().map_err(|e| error(&self.temporary, e))?;
        drop(file);
        fs::rename(&self.temporary, &self.target).map_err(|e| error(&self.target, e))?;
        // Renamed: nothing is left to clean up, even if the folder sync fails.
        self.temporary = PathBuf::new();
        let folder = folder_of(&self.target);
        File::open(folder).and_then(|d| d.sync_all()).map_err(|e| error(folder, e))
    }
}

impl Drop for Publication {
    fn drop(&mut self) {
        if !self.temporary.as_os_str().is_empty() {
            self.file.take();
            let _ = fs::remove_file(&self.temporary);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    #[test]
    fn a_published_file_replaces_the_target_whole() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.json");
        fs::write(&target, b"old").unwrap();
        let mut p = Publication::create(&target).unwrap();
        p.file().write_all(b"new contents").unwrap();
        // Until published, readers see the old file.
        assert_eq!(fs::read(&target).unwrap(), b"old");
        p.publish().unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"new contents");
        assert_eq!(entries(dir.path()), vec!["out.json"]);
    }

    #[test]
    fn an_unfinished_publication_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.parquet");
        fs::write(&target, b"old").unwrap();
        {
            let mut p = Publication::create(&target).unwrap();
            p.file().write_all(b"half").unwrap();
        }
        assert_eq!(fs::read(&target).unwrap(), b"old");
        assert_eq!(entries(dir.path()), vec!["out.parquet"]);
    }

    #[test]
    fn special_files_and_folders_are_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("a-folder");
        fs::create_dir(&folder).unwrap();
        let e = Publication::create(&folder).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        assert!(folder.is_dir());
        let fifo = dir.path().join("pipe");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().is_ok_and(|s| s.success());
        if made {
            let e = Publication::create(&fifo).unwrap_err();
            assert!(e.to_string().contains("not a regular file"), "{e}");
        }
        assert_eq!(entries(dir.path()).len(), if made { 2 } else { 1 });
    }
}
