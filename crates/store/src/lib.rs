//! callsync's stores, each in the data folder: the record cache (sled; disposable, repaired by
//! rebuilding), the Task queue and call store (sled; never discarded), the integration error
//! log (JSON Lines), and where everything lives.

pub mod cache;
pub mod errorlog;
pub mod import;
pub mod lookup;
pub mod outbox;
pub mod paths;

use std::path::{Path, PathBuf};

/// A store's lock file, beside it (`<data>/cache.lock` for `<data>/cache`): moving a damaged
/// store aside never moves its lock.
fn lock_path(store: &Path, default: &str) -> PathBuf {
    let name = store
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(default);
    store.with_file_name(format!("{name}.lock"))
}

/// Opens a sled database, waiting while sled reports its own lock: with our [`FileLock`] held
/// that can only be this process's previous handle still shutting down (sled's threads outlive
/// the handle for a moment).
///
/// [`FileLock`]: callsync_fs::FileLock
fn open_sled(mut open: impl FnMut() -> sled::Result<sled::Db>) -> sled::Result<sled::Db> {
    let mut attempt = 0;
    loop {
        match open() {
            Err(sled::Error::Io(e))
                if attempt < 100
                    && (e.kind() == std::io::ErrorKind::WouldBlock
                        || e.to_string().contains("lock")) =>
            {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}
