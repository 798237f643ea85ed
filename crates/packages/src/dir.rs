//! The packages folder: one metadata file per accepted job, `<package_name>_<jobID>`,
//! holding `{"Package":{...},"JobID":N}` exactly as the original service wrote it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::MAX_PACKAGE_JSON_BYTES;
use crate::error::PackagesError;
use crate::names::check_package_name;
use crate::trigger::Package;

/// Largest file [`PackageDir::read`] accepts: a maximal package plus the wrapper
/// `{"Package":,"JobID":-9223372036854775808}` (41 bytes), rounded up. Anything bigger was
/// not written by this crate, and reading it whole would let the folder's contents decide
/// how much memory the server uses.
const MAX_FILE_BYTES: usize = MAX_PACKAGE_JSON_BYTES + 64;

/// Makes temporary names unique within the process; the process id and the clock make them
/// unique across processes sharing the folder.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// An existing, writable folder of package metadata files.
#[derive(Debug, Clone)]
pub struct PackageDir {
    path: PathBuf,
    sync: bool,
}

impl PackageDir {
    /// Opens the folder, creating it (and its parents) if missing.
    ///
    /// The path is canonicalized once here, so a symlinked root is resolved at start-up and
    /// later writes do not depend on what the link points to by then. Writability is proven
    /// by creating and removing a probe file, so a misconfigured folder fails at start-up
    /// rather than on the first accepted job.
    pub fn open(path: impl AsRef<Path>) -> Result<PackageDir, PackagesError> {
        let given = path.as_ref();
        match fs::metadata(given) {
            Ok(meta) if !meta.is_dir() => {
                return Err(PackagesError::NotADirectory {
                    path: given.to_owned(),
                });
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(given).map_err(|source| PackagesError::CreateDir {
                    path: given.to_owned(),
                    source,
                })?;
            }
            Err(source) => {
                return Err(PackagesError::OpenDir {
                    path: given.to_owned(),
                    source,
                });
            }
        }
        let path = fs::canonicalize(given).map_err(|source| PackagesError::OpenDir {
            path: given.to_owned(),
            source,
        })?;
        let meta = fs::metadata(&path).map_err(|source| PackagesError::OpenDir {
            path: path.clone(),
            source,
        })?;
        if !meta.is_dir() {
            return Err(PackagesError::NotADirectory { path });
        }
        probe_writable(&path)?;
        Ok(PackageDir { path, sync: true })
    }

    /// Whether [`PackageDir::save`] flushes the file before the rename and the folder after
    /// it (default `true`: an accepted job's file then survives a power loss). Tests and
    /// throw-away deployments may turn it off for speed.
    pub fn with_sync(self, sync: bool) -> PackageDir {
        PackageDir { sync, ..self }
    }

    /// The canonical folder path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `<package_name>_<jobID>`, the name the original service used. Does not check the
    /// name; [`PackageDir::path_of`] does.
    pub fn file_name(package_name: &str, job_id: i64) -> String {
        format!("{package_name}_{job_id}")
    }

    /// Full path of a job's metadata file, refusing names that could leave the folder.
    pub fn path_of(&self, package_name: &str, job_id: i64) -> Result<PathBuf, PackagesError> {
        // Defense in depth: a `Package` is validated on construction, but names also arrive
        // from the store and from robots, and no path is ever built from an unchecked name.
        if package_name.is_empty() || check_package_name(package_name).is_err() {
            return Err(PackagesError::unsafe_name(package_name));
        }
        Ok(self.path.join(Self::file_name(package_name, job_id)))
    }

    /// Writes `{"Package":<object as received>,"JobID":N}` (no trailing newline) to
    /// `<package_name>_<jobID>`, atomically: readers see the old file or the new one, never
    /// a part. Returns the file's path.
    ///
    /// The bytes go to a fresh hidden file in the same folder, created with `create_new`
    /// (`O_CREAT|O_EXCL`, which never follows a symlink, even a dangling one), then renamed
    /// over the target. `rename` replaces a symlink at the target rather than following it,
    /// so nothing is written outside the folder whatever the folder holds. On any error the
    /// temporary file is removed.
    ///
    /// A [`PackagesError::SyncDir`] error means the file is in place but may not survive a
    /// power loss.
    pub fn save(&self, package: &Package, job_id: i64) -> Result<PathBuf, PackagesError> {
        let target = self.write_one(package.name(), job_id, package.as_json())?;
        self.sync_folder()?;
        Ok(target)
    }

    /// Saves many files as [`PackageDir::save`] does, with one flush of the folder for all of
    /// them. `package_json` is the Package object as stored (compact JSON, as received). Each
    /// file gets its own result; the folder flush, when enabled, fails them all.
    pub fn save_all<'a>(
        &self,
        files: impl IntoIterator<Item = (&'a str, i64, &'a str)>,
    ) -> Vec<Result<PathBuf, PackagesError>> {
        let mut results: Vec<_> = files
            .into_iter()
            .map(|(name, job_id, json)| self.write_one(name, job_id, json))
            .collect();
        if results.iter().any(Result::is_ok)
            && let Err(error) = self.sync_folder()
        {
            let reason = error.to_string();
            for result in results.iter_mut().filter(|r| r.is_ok()) {
                *result = Err(PackagesError::SyncDir {
                    path: self.path.clone(),
                    source: io::Error::other(reason.clone()),
                });
            }
        }
        results
    }

    fn sync_folder(&self) -> Result<(), PackagesError> {
        if !self.sync {
            return Ok(());
        }
        sync_dir(&self.path).map_err(|source| PackagesError::SyncDir {
            path: self.path.clone(),
            source,
        })
    }

    /// Writes one file through a temporary file and a rename, flushing the file when enabled.
    fn write_one(
        &self,
        package_name: &str,
        job_id: i64,
        package_json: &str,
    ) -> Result<PathBuf, PackagesError> {
        let target = self.path_of(package_name, job_id)?;
        let content = format!(r#"{{"Package":{package_json},"JobID":{job_id}}}"#);
        let temp = self
            .path
            .join(temp_name(&Self::file_name(package_name, job_id)));

        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(|source| PackagesError::Write {
                path: target.clone(),
                source,
            })?;
        // From here on the temporary file is ours, so every failure removes it.
        if let Err(source) = write_all_and_sync(file, content.as_bytes(), self.sync) {
            remove_quietly(&temp);
            return Err(PackagesError::Write {
                path: target,
                source,
            });
        }
        if let Err(source) = fs::rename(&temp, &target) {
            remove_quietly(&temp);
            return Err(PackagesError::Rename {
                path: target,
                source,
            });
        }
        Ok(target)
    }

    /// Removes a job's metadata file. A file that is already gone is not an error, so
    /// clean-up can be retried.
    pub fn remove(&self, package_name: &str, job_id: i64) -> Result<(), PackagesError> {
        let target = self.path_of(package_name, job_id)?;
        match fs::remove_file(&target) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(PackagesError::Remove {
                path: target,
                source,
            }),
        }
    }

    /// Reads a job's metadata file back; `None` when it does not exist. Refuses anything
    /// that is not a regular file (a symlink is not followed) and files larger than a
    /// package file can be.
    pub fn read(
        &self,
        package_name: &str,
        job_id: i64,
    ) -> Result<Option<serde_json::Value>, PackagesError> {
        let target = self.path_of(package_name, job_id)?;
        let read_err = |source| PackagesError::Read {
            path: target.clone(),
            source,
        };
        let file = match open_regular_file(&target) {
            Ok(Some(file)) => file,
            Ok(None) => return Ok(None),
            Err(OpenRefusal::NotAFile) => return Err(PackagesError::NotAFile { path: target }),
            Err(OpenRefusal::Io(source)) => return Err(read_err(source)),
        };
        let mut bytes = Vec::new();
        // `take` bounds memory whatever the file holds, even if it grows while being read.
        file.take(MAX_FILE_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(read_err)?;
        if bytes.len() > MAX_FILE_BYTES {
            return Err(PackagesError::TooLarge {
                path: target,
                limit: MAX_FILE_BYTES,
            });
        }
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| PackagesError::Corrupt {
                path: target,
                source,
            })
    }
}

/// A hidden name (leading `.`), which no package file can have, so a temporary file never
/// collides with or is mistaken for a real one.
fn temp_name(stem: &str) -> String {
    let counter = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(".{stem}.tmp-{}-{counter}-{nanos}", std::process::id())
}

fn probe_writable(dir: &Path) -> Result<(), PackagesError> {
    let probe = dir.join(temp_name("probe"));
    let not_writable = |source| PackagesError::NotWritable {
        path: dir.to_owned(),
        source,
    };
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(not_writable)?;
    fs::remove_file(&probe).map_err(not_writable)
}

fn write_all_and_sync(mut file: File, bytes: &[u8], sync: bool) -> io::Result<()> {
    file.write_all(bytes)?;
    if sync {
        file.sync_all()?;
    }
    Ok(())
}

enum OpenRefusal {
    NotAFile,
    Io(io::Error),
}

/// Opens `path` for reading only if it is a regular file, never through a symlink: the
/// entry is checked with `lstat`, opened, and the opened file must be the checked one.
/// A mismatch usually means a concurrent save renamed a new file into place, so it is
/// retried a few times before being treated as tampering.
fn open_regular_file(path: &Path) -> Result<Option<File>, OpenRefusal> {
    const ATTEMPTS: usize = 3;
    for _ in 0..ATTEMPTS {
        let link_meta = match fs::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(OpenRefusal::Io(e)),
        };
        if !link_meta.file_type().is_file() {
            return Err(OpenRefusal::NotAFile);
        }
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(OpenRefusal::Io(e)),
        };
        let meta = file.metadata().map_err(OpenRefusal::Io)?;
        if meta.is_file() && same_file(&link_meta, &meta) {
            return Ok(Some(file));
        }
    }
    Err(OpenRefusal::NotAFile)
}

fn remove_quietly(path: &Path) {
    // Best effort: the original error is the one worth reporting.
    let _ = fs::remove_file(path);
}

/// Makes the rename itself durable: without it, a power loss can leave the folder entry
/// pointing at the old file (or none) even though the new data was flushed.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

// Windows cannot open a directory as a `File` through std; NTFS journals the rename.
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(unix)]
fn same_file(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

// std exposes no stable file identity elsewhere; the `lstat` type check still applies.
#[cfg(not(unix))]
fn same_file(_a: &fs::Metadata, _b: &fs::Metadata) -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_are_hidden_and_unique() {
        let a = temp_name("pkg_1");
        let b = temp_name("pkg_1");
        assert!(a.starts_with(".pkg_1.tmp-"));
        assert_ne!(a, b);
        // A maximal stem still fits the 255-byte file name limit of common file systems.
        let long = temp_name(&PackageDir::file_name(
            &"n".repeat(crate::MAX_NAME_CHARS),
            i64::MIN,
        ));
        assert!(long.len() <= 255, "{}", long.len());
    }

    #[test]
    fn file_name_format() {
        assert_eq!(
            PackageDir::file_name("package-x74s-eg", 21),
            "package-x74s-eg_21"
        );
    }

    #[test]
    fn max_file_bytes_covers_the_wrapper() {
        let wrapper = format!(r#"{{"Package":,"JobID":{}}}"#, i64::MIN);
        assert!(MAX_PACKAGE_JSON_BYTES + wrapper.len() <= MAX_FILE_BYTES);
    }
}
