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

/// Hands freed memory back to the OS. glibc keeps freed memory in per-thread arenas (the HTTP,
/// JSON, conversion and sled threads each have one), so without this an idle agent's RSS creeps
/// up by the peak of every sync cycle, and a 1M-record import's peak doubled (133 → 226 MiB at
/// 300k records, and slower); the Windows process heap likewise keeps freed blocks committed
/// until it is compacted.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: glibc's malloc_trim only returns free heap pages to the kernel; it takes no
        // pointers and is thread-safe.
        unsafe {
            malloc_trim(0);
        }
    }
    #[cfg(windows)]
    {
        use windows_sys::Win32::System::Memory::{GetProcessHeap, HeapCompact};
        // SAFETY: HeapCompact coalesces the process heap's free blocks and decommits the large
        // ones; it takes no pointers of ours and the process heap is serialized.
        unsafe {
            HeapCompact(GetProcessHeap(), 0);
        }
    }
}
