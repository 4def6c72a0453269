//! Files as callsync writes them: private folders and atomic, private writes (the data folder
//! holds call data and credentials), JSON Lines, a file's identity, and the one OS file lock
//! every store and the agent take (released by the kernel when the process dies, even by
//! `kill -9`: a crash never leaves a stale lock).

use std::io::{self, Write};
use std::path::Path;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// Creates `dir` (and parents) readable only by the user on Unix.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        let mut perm = std::fs::metadata(dir)?.permissions();
        if perm.mode() & 0o077 != 0 {
            perm.set_mode(0o700);
            std::fs::set_permissions(dir, perm)?;
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir)
    }
}

/// Writes `bytes` to `path` atomically (temp file, fsync, rename) with mode 0600 on Unix, so a
/// crash leaves either the old or the new content, never half of it.
pub fn write_private_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    #[cfg(unix)]
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Appends `value` as one JSON line and syncs it (the error log, the sign-in history).
pub fn append_json_line<T: serde::Serialize>(path: &Path, value: &T) -> io::Result<()> {
    append_json_lines(path, std::slice::from_ref(value))
}

/// Appends values as JSON Lines with one write and one fsync.
pub fn append_json_lines<T: serde::Serialize>(path: &Path, values: &[T]) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        create_private_dir(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let mut text = Vec::new();
    for v in values {
        serde_json::to_writer(&mut text, v).map_err(io::Error::other)?;
        text.push(b'\n');
    }
    f.write_all(&text)?;
    f.sync_data()
}

/// Every line of a JSON Lines file that parses (a torn last line is skipped); none if the file
/// does not exist.
pub fn read_json_lines<T: serde::de::DeserializeOwned>(path: &Path) -> io::Result<Vec<T>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(s
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// A file's identity: a renamed (rotated) file keeps it, a replaced one gets a new one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    /// The identity of the file at `path`, whose metadata is `meta`.
    ///
    /// Windows: the volume serial number and the NTFS file index, read through a handle opened
    /// for metadata only and shared for read, write and delete (a softphone or logrotate working
    /// on the file is never blocked). Not the creation time: Windows "tunnels" it, giving a file
    /// created under a name that was just renamed away the old file's creation time, which is
    /// exactly what a rotation does.
    pub fn of(path: &Path, meta: &std::fs::Metadata) -> FileId {
        #[cfg(unix)]
        {
            let _ = path;
            use std::os::unix::fs::MetadataExt;
            FileId {
                dev: meta.dev(),
                ino: meta.ino(),
            }
        }
        #[cfg(windows)]
        {
            windows_id(path).unwrap_or_else(|| FileId {
                dev: 0,
                ino: created_ns(meta),
            })
        }
        #[cfg(not(any(unix, windows)))]
        {
            let _ = path;
            FileId {
                dev: 0,
                ino: created_ns(meta),
            }
        }
    }
}

#[cfg(not(unix))]
fn created_ns(meta: &std::fs::Metadata) -> u64 {
    meta.created()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

#[cfg(windows)]
fn windows_id(path: &Path) -> Option<FileId> {
    use std::os::windows::fs::OpenOptionsExt;
    use std::os::windows::io::AsRawHandle;
    use windows_sys::Win32::Storage::FileSystem::{
        GetFileInformationByHandle, BY_HANDLE_FILE_INFORMATION, FILE_FLAG_BACKUP_SEMANTICS,
        FILE_SHARE_DELETE, FILE_SHARE_READ, FILE_SHARE_WRITE,
    };
    let file = std::fs::OpenOptions::new()
        .access_mode(0)
        .share_mode(FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE)
        // Folders open only with this flag.
        .custom_flags(FILE_FLAG_BACKUP_SEMANTICS)
        .open(path)
        .ok()?;
    // SAFETY: an all-zero BY_HANDLE_FILE_INFORMATION is valid (plain integers).
    let mut info: BY_HANDLE_FILE_INFORMATION = unsafe { std::mem::zeroed() };
    // SAFETY: the handle is open for the duration of the call and `info` is writable.
    let ok = unsafe { GetFileInformationByHandle(file.as_raw_handle() as _, &mut info) };
    (ok != 0).then(|| FileId {
        dev: u64::from(info.dwVolumeSerialNumber),
        ino: (u64::from(info.nFileIndexHigh) << 32) | u64::from(info.nFileIndexLow),
    })
}

/// A file's identity with its length and modification time: unchanged means neither replaced
/// nor written since (cheap to take: one `stat`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStamp {
    pub id: FileId,
    pub len: u64,
    pub modified: Option<SystemTime>,
}

impl FileStamp {
    pub fn of(path: &Path, meta: &std::fs::Metadata) -> FileStamp {
        FileStamp {
            id: FileId::of(path, meta),
            len: meta.len(),
            modified: meta.modified().ok(),
        }
    }

    /// `None`: there is no such file.
    pub fn of_path(path: &Path) -> io::Result<Option<FileStamp>> {
        match std::fs::metadata(path) {
            Ok(m) => Ok(Some(FileStamp::of(path, &m))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn private_modes() {
        let d = tempfile::tempdir().unwrap();
        let sub = d.path().join("a/b");
        create_private_dir(&sub).unwrap();
        assert_eq!(
            std::fs::metadata(&sub).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let f = sub.join("secret");
        write_private_atomic(&f, b"one").unwrap();
        write_private_atomic(&f, b"two").unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"two");
        assert_eq!(
            std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}

/// An exclusive OS lock on a file, held until dropped.
#[derive(Debug)]
pub struct FileLock {
    file: std::fs::File,
    path: std::path::PathBuf,
}

/// Why a lock was not taken.
#[derive(Debug)]
pub enum LockError {
    /// Another process holds it.
    Held,
    Io(io::Error),
}

impl FileLock {
    /// Takes the lock on `path` (created, in a new private folder if the folder is missing)
    /// without waiting. An existing folder is left as it is: a cache opened at `/tmp/x` once
    /// made `/tmp` itself 0700 here, which broke every other user of `/tmp`.
    pub fn try_acquire(path: &Path) -> Result<FileLock, LockError> {
        if let Some(dir) = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty() && !d.exists())
        {
            create_private_dir(dir).map_err(LockError::Io)?;
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(LockError::Io)?;
        match file.try_lock() {
            Ok(()) => Ok(FileLock {
                file,
                path: path.to_owned(),
            }),
            Err(std::fs::TryLockError::WouldBlock) => Err(LockError::Held),
            Err(std::fs::TryLockError::Error(e)) => Err(LockError::Io(e)),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The locked file (the agent writes its process id into its lock).
    pub fn file(&mut self) -> &mut std::fs::File {
        &mut self.file
    }
}
