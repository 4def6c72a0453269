//! Whether a folder's filesystem tells watchers about changes. Local disks do (inotify,
//! ReadDirectoryChangesW). Network shares, cluster and user-space (FUSE) filesystems and WSL's
//! view of Windows drives (9p) report at most the changes made on this machine, so a call log
//! written by a softphone elsewhere must be polled there.

use std::path::Path;

/// `Some(true)`: changes are reported; `Some(false)`: they may not be; `None`: unknown here.
pub(crate) fn reports_changes(dir: &Path) -> Option<bool> {
    imp::reports_changes(dir)
}

#[cfg(target_os = "linux")]
mod imp {
    use std::path::Path;

    /// `statfs` magic numbers of filesystems whose changes can come from elsewhere.
    const POLLED: &[(u32, &str)] = &[
        (0x6969, "nfs"),
        (0x517B, "smb"),
        (0xFF53_4D42, "cifs"),
        (0xFE53_4D42, "smb2"),
        (0x6573_5546, "fuse"),
        (0x0102_1997, "9p"),
        (0x7375_7245, "coda"),
        (0x5346_414F, "afs"),
        (0x6B41_4653, "kafs"),
        (0x00C3_6400, "ceph"),
        (0x0116_1970, "gfs2"),
        (0x0BD0_0BD0, "lustre"),
        (0x564C, "ncp"),
        (0x7461_636F, "ocfs2"),
    ];

    pub(crate) fn reports_changes(dir: &Path) -> Option<bool> {
        let fs = rustix::fs::statfs(dir).ok()?;
        // The magic numbers are 32-bit; the field is wider on 64-bit targets.
        let magic = fs.f_type as u32;
        Some(!POLLED.iter().any(|(m, _)| *m == magic))
    }
}

#[cfg(windows)]
mod imp {
    use std::os::windows::ffi::OsStrExt;
    use std::path::{Component, Path, Prefix};

    /// `GetDriveTypeW`'s answer for a network drive.
    const DRIVE_REMOTE: u32 = 4;

    pub(crate) fn reports_changes(dir: &Path) -> Option<bool> {
        let Some(Component::Prefix(p)) = dir.components().next() else {
            return None;
        };
        let letter = match p.kind() {
            Prefix::UNC(..) | Prefix::VerbatimUNC(..) => return Some(false),
            Prefix::Disk(l) | Prefix::VerbatimDisk(l) => l,
            _ => return None,
        };
        let root: Vec<u16> = std::ffi::OsStr::new(&format!("{}:\\", char::from(letter)))
            .encode_wide()
            .chain(Some(0))
            .collect();
        // SAFETY: `root` is a NUL-terminated UTF-16 string that outlives the call.
        let kind = unsafe { windows_sys::Win32::Storage::FileSystem::GetDriveTypeW(root.as_ptr()) };
        Some(kind != DRIVE_REMOTE)
    }
}

#[cfg(not(any(target_os = "linux", windows)))]
mod imp {
    pub(crate) fn reports_changes(_dir: &std::path::Path) -> Option<bool> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(any(target_os = "linux", windows))]
    fn a_local_folder_reports_changes() {
        let d = tempfile::tempdir().unwrap();
        // The test's temporary folder is on a local disk on the machines this runs on.
        assert_eq!(reports_changes(d.path()), Some(true));
    }

    #[test]
    fn a_missing_folder_is_unknown() {
        assert_eq!(reports_changes(Path::new("/no/such/callsync/dir")), None);
    }
}
