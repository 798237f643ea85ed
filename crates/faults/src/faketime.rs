//! libfaketime (Debian package `faketime`): the server runs with it preloaded and reads its
//! clock offset from a file the harness rewrites (`FAKETIME_TIMESTAMP_FILE`, re-read on every
//! clock call with `FAKETIME_NO_CACHE=1`), so the server's clock can jump while it runs.
//!
//! libfaketime also fakes `CLOCK_MONOTONIC` unless `FAKETIME_DONT_FAKE_MONOTONIC=1`: a real
//! clock step (NTP, an operator) moves only the wall clock, so that is how a jump is made by
//! default; the monotonic variant shows what happens when tokio's clock jumps as well.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use anyhow::Result;
use rpa_testkit::ServerCommand;

/// Where Debian and a source install put the library.
const CANDIDATES: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/faketime/libfaketimeMT.so.1",
    "/usr/local/lib/faketime/libfaketimeMT.so.1",
];

/// The multi-threaded libfaketime (the server is multi-threaded), if installed.
pub fn find_library() -> Option<PathBuf> {
    CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
}

/// The offset file and the offset the harness believes the server has.
pub struct FakeClock {
    path: PathBuf,
    library: PathBuf,
    fake_monotonic: bool,
    /// The server's offset from the real clock, µs (shared with robots that stamp deliveries).
    pub offset_us: Arc<AtomicI64>,
}

impl FakeClock {
    pub fn new(
        library: &Path,
        dir: &Path,
        fake_monotonic: bool,
        offset_us: Arc<AtomicI64>,
    ) -> Result<FakeClock> {
        let clock = FakeClock {
            path: dir.join("faketime.rc"),
            library: library.to_owned(),
            fake_monotonic,
            offset_us,
        };
        clock.write(clock.offset_us.load(Ordering::Relaxed) / 1_000_000)?;
        Ok(clock)
    }

    /// The server's environment for libfaketime.
    pub fn apply(&self, spec: ServerCommand) -> ServerCommand {
        let spec = spec
            .env("LD_PRELOAD", self.library.display())
            .env("FAKETIME_TIMESTAMP_FILE", self.path.display())
            .env("FAKETIME_NO_CACHE", 1);
        if self.fake_monotonic {
            spec
        } else {
            spec.env("FAKETIME_DONT_FAKE_MONOTONIC", 1)
        }
    }

    fn write(&self, seconds: i64) -> Result<()> {
        // Written whole and renamed, so the server never reads half a file.
        let temp = self.path.with_extension("tmp");
        std::fs::write(&temp, format!("{seconds:+}\n"))?;
        std::fs::rename(&temp, &self.path)?;
        Ok(())
    }

    pub fn offset_s(&self) -> i64 {
        self.offset_us.load(Ordering::Relaxed) / 1_000_000
    }

    /// Moves the server's clock to `seconds` from the real one. The harness's own offset is the
    /// larger of the old and new ones while the jump happens, so that a package received in
    /// between is never stamped earlier than the server's clock (a false "early").
    pub async fn set(&self, seconds: i64) -> Result<()> {
        let old = self.offset_s();
        if seconds >= old {
            self.offset_us.store(seconds * 1_000_000, Ordering::Relaxed);
            self.write(seconds)?;
        } else {
            self.write(seconds)?;
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            self.offset_us.store(seconds * 1_000_000, Ordering::Relaxed);
        }
        Ok(())
    }
}
