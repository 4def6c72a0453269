//! Where callsync keeps its files. `--data-dir` / `CALLSYNC_DATA_DIR` and `--config` /
//! `CALLSYNC_CONFIG` override the per-user defaults (tests and second profiles use them).

use std::path::{Path, PathBuf};

use directories::ProjectDirs;

/// The data directory and what lives in it.
#[derive(Clone, Debug)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DataDir { root: root.into() }
    }

    /// The per-user default: `~/.local/share/callsync` on Linux,
    /// `%LOCALAPPDATA%\callsync\data` on Windows, `~/Library/Application Support/callsync` on macOS.
    pub fn default_location() -> Option<PathBuf> {
        project_dirs().map(|p| p.data_local_dir().to_owned())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn cache(&self) -> PathBuf {
        self.root.join("cache")
    }

    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// Task writes not yet in Salesforce (never deleted by callsync).
    pub fn outbox(&self) -> PathBuf {
        self.root.join("outbox")
    }

    /// The integration settings store (`callsync settings`).
    pub fn settings(&self) -> PathBuf {
        self.root.join("settings.json")
    }

    /// The backup `callsync disconnect` takes of the integration settings.
    pub fn settings_backup(&self) -> PathBuf {
        self.root.join("settings-backup.json")
    }

    /// The integration error log (JSON lines).
    pub fn error_log(&self) -> PathBuf {
        self.root.join("errors.jsonl")
    }

    /// Sign-ins and sign-outs (JSON lines, no secrets).
    pub fn auth_history(&self) -> PathBuf {
        self.root.join("auth-history.jsonl")
    }
}

fn project_dirs() -> Option<ProjectDirs> {
    ProjectDirs::from("", "", "callsync")
}

/// The user's configuration file: `~/.config/callsync/config.toml` on Linux,
/// `%APPDATA%\callsync\config\config.toml` on Windows,
/// `~/Library/Application Support/callsync/config.toml` on macOS.
pub fn default_user_config() -> Option<PathBuf> {
    project_dirs().map(|p| p.config_dir().join("config.toml"))
}
