//! A PostgreSQL database per test. When `RPA_TEST_POSTGRES` names a server
//! (`postgres://user@host:port`), tests run on a database of their own there, created fresh and
//! dropped afterwards; CI runs the store and end-to-end suites both ways (`.ci/run`).
//!
//! Databases are made and dropped with `psql`, so that nothing here links libpq: a build without
//! the `postgres` feature still compiles the kit.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::error::{Error, Result};

/// The variable naming the PostgreSQL server the tests may use.
pub const SERVER_VAR: &str = "RPA_TEST_POSTGRES";

/// The server of `RPA_TEST_POSTGRES`, if set.
pub fn server_url() -> Option<String> {
    std::env::var(SERVER_VAR).ok()
}

/// A database of its own on the test server, dropped (with its connections) when this is.
#[derive(Debug)]
pub struct TestDatabase {
    server: String,
    name: String,
    url: String,
}

impl TestDatabase {
    /// A fresh, empty database named `{prefix}_{pid}_{n}` on `server`.
    pub fn create(server: &str, prefix: &str) -> Result<TestDatabase> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "{prefix}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let admin = admin_url(server);
        // A database of that name may survive a crashed run with the same process id.
        psql(
            &admin,
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        )?;
        psql(&admin, &format!("CREATE DATABASE {name}"))?;
        Ok(TestDatabase {
            url: format!("{server}/{name}"),
            server: server.to_owned(),
            name,
        })
    }

    /// A fresh database on the server of `RPA_TEST_POSTGRES`; `None` when it is not set.
    pub fn from_env(prefix: &str) -> Result<Option<TestDatabase>> {
        server_url()
            .map(|server| TestDatabase::create(&server, prefix))
            .transpose()
    }

    /// `postgres://user@host:port/name`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let _ = psql(
            &admin_url(&self.server),
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

fn admin_url(server: &str) -> String {
    format!("{server}/postgres")
}

/// Runs one SQL command with `psql` on the database at `url`.
pub fn psql(url: &str, command: &str) -> Result<()> {
    let output = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d"])
        .arg(url)
        .args(["-c", command])
        .output()?;
    if !output.status.success() {
        return Err(Error::Psql {
            command: command.to_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

/// The databases of [`database_for`], by folder.
static BY_FOLDER: Mutex<Option<HashMap<PathBuf, TestDatabase>>> = Mutex::new(None);

/// The database of a server folder: made on first use, so that a server started again in the
/// same folder finds its data; `None` when `RPA_TEST_POSTGRES` is not set. It lives until
/// [`drop_database_for`] (a folder that outlives its test keeps it).
pub fn database_for(dir: &Path) -> Result<Option<String>> {
    let Some(server) = server_url() else {
        return Ok(None);
    };
    let mut made = BY_FOLDER.lock().unwrap_or_else(PoisonError::into_inner);
    let made = made.get_or_insert_with(HashMap::new);
    if let Some(database) = made.get(dir) {
        return Ok(Some(database.url().to_owned()));
    }
    let database = TestDatabase::create(&server, "rpa_e2e")?;
    let url = database.url().to_owned();
    made.insert(dir.to_owned(), database);
    Ok(Some(url))
}

/// Drops the database [`database_for`] made for `dir`, if it made one.
pub fn drop_database_for(dir: &Path) {
    let database = BY_FOLDER
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_mut()
        .and_then(|made| made.remove(dir));
    drop(database);
}
