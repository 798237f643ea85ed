//! Errors of the packages folder (reported to the operator). Validation problems, reported to
//! the client, are rpa-validation's [`FieldErrors`](rpa_validation::FieldErrors).

use std::io;
use std::path::PathBuf;

/// Longest name quoted back in [`PackagesError::UnsafeName`]: the name is untrusted, and an
/// error message should not carry kilobytes of it into a log.
const QUOTED_NAME_CHARS: usize = 64;

/// Errors of the packages folder.
#[derive(Debug, thiserror::Error)]
pub enum PackagesError {
    #[error("cannot create the packages folder {}: {source}", path.display())]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("cannot open the packages folder {}: {source}", path.display())]
    OpenDir { path: PathBuf, source: io::Error },
    #[error("the packages folder {} is not a directory", path.display())]
    NotADirectory { path: PathBuf },
    #[error("the packages folder {} is not writable: {source}", path.display())]
    NotWritable { path: PathBuf, source: io::Error },
    /// Only reachable by bypassing validation; names are checked again before any path is built.
    #[error("refusing unsafe package name {name:?}")]
    UnsafeName { name: String },
    #[error("cannot write package file {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot move package file into place at {}: {source}", path.display())]
    Rename { path: PathBuf, source: io::Error },
    /// The file is in place but the folder entry may not survive a power loss.
    #[error("cannot flush the packages folder {}: {source}", path.display())]
    SyncDir { path: PathBuf, source: io::Error },
    #[error("cannot remove package file {}: {source}", path.display())]
    Remove { path: PathBuf, source: io::Error },
    #[error("cannot read package file {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    /// A symlink, directory or device where a package file should be; never followed.
    #[error("{} is not a regular file", path.display())]
    NotAFile { path: PathBuf },
    #[error("package file {} is larger than {limit} bytes", path.display())]
    TooLarge { path: PathBuf, limit: usize },
    #[error("package file {} is not valid JSON: {source}", path.display())]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
}

impl PackagesError {
    pub(crate) fn unsafe_name(name: &str) -> PackagesError {
        let mut quoted: String = name.chars().take(QUOTED_NAME_CHARS).collect();
        if quoted.len() < name.len() {
            quoted.push('…');
        }
        PackagesError::UnsafeName { name: quoted }
    }

    fn io_error(&self) -> Option<&io::Error> {
        match self {
            PackagesError::CreateDir { source, .. }
            | PackagesError::OpenDir { source, .. }
            | PackagesError::NotWritable { source, .. }
            | PackagesError::Write { source, .. }
            | PackagesError::Rename { source, .. }
            | PackagesError::SyncDir { source, .. }
            | PackagesError::Remove { source, .. }
            | PackagesError::Read { source, .. } => Some(source),
            PackagesError::NotADirectory { .. }
            | PackagesError::UnsafeName { .. }
            | PackagesError::NotAFile { .. }
            | PackagesError::TooLarge { .. }
            | PackagesError::Corrupt { .. } => None,
        }
    }

    /// The disk or the user's quota is full (ENOSPC, EDQUOT): the operator must free space,
    /// retrying will not help.
    pub fn is_storage_full(&self) -> bool {
        self.io_error().is_some_and(|e| {
            matches!(
                e.kind(),
                io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
            )
        })
    }

    /// The process may not write there (EACCES, EPERM, or a read-only file system, which
    /// the operator fixes the same way: by pointing the folder somewhere writable).
    pub fn is_permission(&self) -> bool {
        self.io_error().is_some_and(|e| {
            matches!(
                e.kind(),
                io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_name_is_truncated_and_escaped() {
        let long = "\u{1b}[31m".repeat(100);
        let err = PackagesError::unsafe_name(&long);
        let shown = err.to_string();
        assert!(!shown.contains('\u{1b}'));
        assert!(shown.chars().count() < 700);
    }

    #[test]
    fn classifies_io_errors() {
        let full = PackagesError::Write {
            path: PathBuf::from("x"),
            source: io::Error::from(io::ErrorKind::StorageFull),
        };
        assert!(full.is_storage_full());
        assert!(!full.is_permission());
        let quota = PackagesError::Rename {
            path: PathBuf::from("x"),
            source: io::Error::from(io::ErrorKind::QuotaExceeded),
        };
        assert!(quota.is_storage_full());
        let denied = PackagesError::NotWritable {
            path: PathBuf::from("x"),
            source: io::Error::from(io::ErrorKind::PermissionDenied),
        };
        assert!(denied.is_permission());
        assert!(!PackagesError::unsafe_name("..").is_permission());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn raw_errno_maps_to_kinds() {
        // ENOSPC = 28, EDQUOT = 122, EACCES = 13, EROFS = 30 on Linux.
        for (code, full, perm) in [
            (28, true, false),
            (122, true, false),
            (13, false, true),
            (30, false, true),
        ] {
            let err = PackagesError::Write {
                path: PathBuf::from("x"),
                source: io::Error::from_raw_os_error(code),
            };
            assert_eq!(err.is_storage_full(), full, "errno {code}");
            assert_eq!(err.is_permission(), perm, "errno {code}");
        }
    }
}
