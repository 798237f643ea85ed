//! One SQLite database, one server (operations.md): an exclusive advisory lock (`flock`) on
//! `<database>-lock`, held for the process's lifetime. The file holds the holder's pid and
//! listen address, so a second start can name it in its refusal.
//!
//! SQLite's own locks only serialise transactions: a second process on the same file would
//! open it happily, take over as the one instance, and mark the first one's robots offline
//! while they are connected. SQLite's exclusive locking mode is no answer either: it shuts out
//! the server's own readers.

use std::fs::File;
use std::io::{Read as _, Seek as _, Write as _};
use std::net::SocketAddr;
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};

/// The lock, released when dropped (or when the process ends, however it ends).
#[derive(Debug)]
pub(crate) struct DatabaseLock {
    _file: File,
}

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it: the text names it as it described itself.
    #[error("the database {database} is in use by another server ({holder}); stop it first")]
    Held { database: String, holder: String },
    /// The lock file cannot be created or written (an unwritable folder, most likely).
    #[error("cannot open the database at {database}: cannot create its lock file {lock}")]
    Open {
        database: String,
        lock: String,
        #[source]
        source: std::io::Error,
    },
}

/// The lock file of `database`: its name with `-lock` appended.
pub(crate) fn lock_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push("-lock");
    PathBuf::from(name)
}

impl DatabaseLock {
    /// Takes the lock of the SQLite database at `database` for a server listening on
    /// `listen`, creating its folder if needed. Fails at once, changing nothing, when another
    /// process holds it.
    pub(crate) fn acquire(database: &Path, listen: SocketAddr) -> Result<DatabaseLock, LockError> {
        let lock = lock_path(database);
        let open_error = |source| LockError::Open {
            database: database.display().to_string(),
            lock: lock.display().to_string(),
            source,
        };
        if let Some(folder) = database.parent().filter(|f| !f.as_os_str().is_empty()) {
            std::fs::create_dir_all(folder).map_err(open_error)?;
        }
        // Not truncated on open: the holder's description must stay readable to a second start.
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock)
            .map_err(open_error)?;
        // SAFETY: flock takes a descriptor this process owns (the file lives on) and flags.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if locked != 0 {
            let error = std::io::Error::last_os_error();
            if error.kind() != std::io::ErrorKind::WouldBlock {
                return Err(open_error(error));
            }
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(LockError::Held {
                database: database.display().to_string(),
                holder: if holder.is_empty() {
                    "it is starting".to_owned()
                } else {
                    crate::logging::escape(holder, 200).into_owned()
                },
            });
        }
        let description = crate::tasks::instance::describe(listen);
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{description}"))
            .and_then(|()| file.flush())
            .map_err(open_error)?;
        Ok(DatabaseLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_and_told_who_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("data/x.db");
        let listen: SocketAddr = "127.0.0.1:4321".parse().unwrap();
        let first = DatabaseLock::acquire(&database, listen).unwrap();
        let written = std::fs::read_to_string(lock_path(&database)).unwrap();
        assert_eq!(written.trim(), crate::tasks::instance::describe(listen));
        let refused = DatabaseLock::acquire(&database, "127.0.0.1:1".parse().unwrap())
            .unwrap_err()
            .to_string();
        assert!(refused.contains("in use by another server"), "{refused}");
        assert!(refused.contains("listening on 127.0.0.1:4321"), "{refused}");
        // The refusal did not overwrite the holder's description.
        let again = std::fs::read_to_string(lock_path(&database)).unwrap();
        assert_eq!(again, written);
        drop(first);
        DatabaseLock::acquire(&database, listen).unwrap();
    }
}
