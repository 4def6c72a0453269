//! One agent per user, and a local channel to it.
//!
//! The instance lock is an OS file lock on `agent.lock` in the data folder: it is released by the
//! kernel when the process dies (even by `kill -9`), so a crash never leaves a stale lock. The
//! control socket sits next to it, in the private (0700) data folder, is itself 0600, and the
//! server also checks the peer's user id. The protocol is one JSON line each way.

use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use callsync_core::state::AgentState;
use callsync_store::paths::DataDir;

/// What other processes (the CLI, a second start) and the tray ask of the core.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    Status,
    /// A second start: tell the user the agent is already running.
    Show,
    SyncNow,
    Pause,
    Resume,
    SignIn,
    SignOut,
    OpenLogs,
    OpenSettings,
    /// Explain the n-th error listed in the menu (newest first).
    Explain {
        index: usize,
    },
    /// Open a record in Salesforce (a screen pop's action).
    OpenRecord {
        url: String,
    },
    Quit,
    /// Stop gracefully, then start again with the same arguments (to apply changed settings).
    Restart,
    /// Another process (`callsync connect`) stored a new sign-in: adopt it now (cache, queue).
    SignedIn {
        #[serde(default)]
        send_queue_here: bool,
    },
    /// The Task queue (`callsync queue` while the agent holds it).
    Queue,
    /// Parked items back to pending (`callsync queue retry`): one, or all.
    QueueRetry {
        #[serde(default)]
        id: Option<u64>,
    },
    /// A lookup from the agent's cache (`callsync lookup` while the agent holds it).
    Lookup {
        number: String,
    },
    /// Cache counts and sizes (`callsync cache stats` while the agent holds it).
    CacheStats,
    /// The record a call's Task goes on, chosen among its number's matches (the pop's
    /// buttons, the tray's "Current call" menu, `callsync calls pick`).
    Pick {
        call_id: String,
        record_id: String,
    },
    /// Test hook: open the tray menu at a screen point (Windows under Wine, which delivers no
    /// clicks to tray icons). Refused unless the agent runs with `CALLSYNC_TEST_HOOKS=1`.
    TrayMenu {
        x: i32,
        y: i32,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<AgentState>,
    /// What a query request asked for (the queue, a lookup, stats).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

impl Response {
    pub fn ok(state: AgentState) -> Response {
        Response {
            ok: true,
            error: None,
            state: Some(state),
            data: None,
        }
    }
    pub fn error(msg: impl Into<String>) -> Response {
        Response {
            ok: false,
            error: Some(msg.into()),
            state: None,
            data: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("the agent is not running")]
    NotRunning,
    #[error("another callsync agent is running for this user (pid {0})")]
    AlreadyRunning(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("the agent answered something unreadable: {0}")]
    Protocol(String),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> ControlError {
    let what = what.into();
    move |source| ControlError::Io { what, source }
}

/// Held for the agent's lifetime; dropping it (or dying) releases the instance.
#[derive(Debug)]
pub struct InstanceLock {
    lock: callsync_fs::FileLock,
}

impl InstanceLock {
    pub fn acquire(data: &DataDir) -> Result<InstanceLock, ControlError> {
        let path = data.root().join("agent.lock");
        let mut lock = match callsync_fs::FileLock::try_acquire(&path) {
            Ok(l) => l,
            Err(callsync_fs::LockError::Held) => {
                let pid = std::fs::read_to_string(&path).unwrap_or_default();
                return Err(ControlError::AlreadyRunning(pid.trim().to_owned()));
            }
            Err(callsync_fs::LockError::Io(e)) => {
                return Err(io_err(format!("cannot lock {}", path.display()))(e))
            }
        };
        let file = lock.file();
        file.set_len(0)
            .and_then(|_| write!(file, "{}", std::process::id()))
            .map_err(io_err(format!("cannot write {}", path.display())))?;
        Ok(InstanceLock { lock })
    }

    pub fn path(&self) -> &Path {
        self.lock.path()
    }
}

/// The socket's path: in the data folder, or (when that path is too long for a Unix socket
/// address) in the runtime/temp folder under a name derived from the data folder.
pub fn socket_path(data: &DataDir) -> PathBuf {
    let p = data.root().join("agent.sock");
    if p.as_os_str().len() < 100 {
        return p;
    }
    use sha2::Digest;
    let h = sha2::Sha256::digest(data.root().as_os_str().as_encoded_bytes());
    let name: String = h.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let dir = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    dir.join(format!("callsync-{name}.sock"))
}

/// Asks the running agent; `NotRunning` when nobody listens.
pub fn call(data: &DataDir, req: &Request, timeout: Duration) -> Result<Response, ControlError> {
    imp::call(&socket_path(data), req, timeout)
}

fn encode(req: &impl Serialize) -> Result<Vec<u8>, ControlError> {
    let mut line = serde_json::to_vec(req).map_err(|e| ControlError::Protocol(e.to_string()))?;
    line.push(b'\n');
    Ok(line)
}

fn read_reply(r: impl io::Read) -> Result<Response, ControlError> {
    let mut line = String::new();
    BufReader::new(r)
        .read_line(&mut line)
        .map_err(io_err("reading the agent's answer"))?;
    serde_json::from_str(&line).map_err(|e| ControlError::Protocol(e.to_string()))
}

/// A request from the socket with the way back.
pub type Envelope = (Request, tokio::sync::oneshot::Sender<Response>);

/// Hands one request line to the core and waits for its answer.
async fn answer(core: &tokio::sync::mpsc::Sender<Envelope>, line: &str) -> Response {
    match serde_json::from_str::<Request>(line) {
        Ok(req) => {
            let (tx, rx) = tokio::sync::oneshot::channel();
            if core.send((req, tx)).await.is_err() {
                return Response::error("the agent is stopping");
            }
            rx.await
                .unwrap_or_else(|_| Response::error("the agent is stopping"))
        }
        Err(e) => Response::error(format!("unknown request: {e}")),
    }
}

#[cfg(unix)]
mod imp {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::os::unix::net::UnixStream;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

    pub fn call(path: &Path, req: &Request, timeout: Duration) -> Result<Response, ControlError> {
        let mut s = match UnixStream::connect(path) {
            Ok(s) => s,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                ) =>
            {
                return Err(ControlError::NotRunning)
            }
            Err(e) => return Err(io_err(format!("cannot reach {}", path.display()))(e)),
        };
        s.set_read_timeout(Some(timeout))
            .and_then(|_| s.set_write_timeout(Some(timeout)))
            .map_err(io_err("socket timeout"))?;
        s.write_all(&encode(req)?)
            .map_err(io_err("asking the agent"))?;
        read_reply(s)
    }

    /// The bound socket; removed again on drop.
    pub struct Listener {
        inner: tokio::net::UnixListener,
        path: PathBuf,
        uid: u32,
    }

    impl Drop for Listener {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.path);
        }
    }

    /// Binds the socket. Call only while holding the `InstanceLock`: an existing socket file is
    /// then a dead agent's and is replaced.
    pub fn bind(path: &Path) -> Result<Listener, ControlError> {
        let _ = std::fs::remove_file(path);
        let inner = tokio::net::UnixListener::bind(path)
            .map_err(io_err(format!("cannot listen on {}", path.display())))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(io_err(format!("cannot make {} private", path.display())))?;
        let uid = std::fs::metadata(path)
            .map_err(io_err(format!("cannot read {}", path.display())))?
            .uid();
        Ok(Listener {
            inner,
            path: path.to_owned(),
            uid,
        })
    }

    impl Listener {
        /// Serves until the core's receiver is gone.
        pub async fn serve(self, core: tokio::sync::mpsc::Sender<Envelope>) {
            loop {
                let Ok((stream, _)) = self.inner.accept().await else {
                    continue;
                };
                if stream.peer_cred().map(|c| c.uid()).ok() != Some(self.uid) {
                    tracing::warn!("control socket: refused a peer of another user");
                    continue;
                }
                let core = core.clone();
                tokio::spawn(async move {
                    let (r, mut w) = stream.into_split();
                    let mut line = String::new();
                    let mut r = tokio::io::BufReader::new(r);
                    let read = tokio::time::timeout(Duration::from_secs(5), r.read_line(&mut line));
                    if !matches!(read.await, Ok(Ok(n)) if n > 0) {
                        return;
                    }
                    if let Ok(bytes) = encode(&answer(&core, &line).await) {
                        let _ = w.write_all(&bytes).await;
                    }
                });
            }
        }
    }
}

#[cfg(windows)]
mod imp {
    //! A named pipe per data folder. `reject_remote_clients` keeps it local; the default DACL of
    //! a pipe gives full access to the creating user, LocalSystem and Administrators.
    use super::*;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    use tokio::net::windows::named_pipe::ServerOptions;

    fn pipe_name(path: &Path) -> String {
        use sha2::Digest;
        let h = sha2::Sha256::digest(path.as_os_str().as_encoded_bytes());
        let name: String = h.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!(r"\\.\pipe\callsync-{name}")
    }

    pub fn call(path: &Path, req: &Request, _timeout: Duration) -> Result<Response, ControlError> {
        let mut f = match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(pipe_name(path))
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ControlError::NotRunning),
            Err(e) => return Err(io_err("cannot reach the agent")(e)),
        };
        f.write_all(&encode(req)?)
            .map_err(io_err("asking the agent"))?;
        read_reply(f)
    }

    pub struct Listener {
        name: String,
    }

    pub fn bind(path: &Path) -> Result<Listener, ControlError> {
        let name = pipe_name(path);
        // Fails when another process already owns the name.
        ServerOptions::new()
            .first_pipe_instance(true)
            .reject_remote_clients(true)
            .create(&name)
            .map_err(io_err(format!("cannot create {name}")))?;
        Ok(Listener { name })
    }

    impl Listener {
        pub async fn serve(self, core: tokio::sync::mpsc::Sender<Envelope>) {
            loop {
                let Ok(server) = ServerOptions::new()
                    .reject_remote_clients(true)
                    .create(&self.name)
                else {
                    return;
                };
                if server.connect().await.is_err() {
                    continue;
                }
                let core = core.clone();
                tokio::spawn(async move {
                    let (r, mut w) = tokio::io::split(server);
                    let mut r = tokio::io::BufReader::new(r);
                    let mut line = String::new();
                    if !matches!(r.read_line(&mut line).await, Ok(n) if n > 0) {
                        return;
                    }
                    if let Ok(bytes) = encode(&answer(&core, &line).await) {
                        let _ = w.write_all(&bytes).await;
                    }
                });
            }
        }
    }
}

pub use imp::{bind, Listener};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        for r in [
            Request::Status,
            Request::SyncNow,
            Request::Explain { index: 2 },
            Request::OpenRecord {
                url: "https://x/lightning/r/Contact/003/view".into(),
            },
        ] {
            let line = encode(&r).unwrap();
            let back: Request = serde_json::from_slice(&line).unwrap();
            assert_eq!(back, r);
        }
        assert_eq!(
            String::from_utf8(encode(&Request::SyncNow).unwrap()).unwrap(),
            "{\"cmd\":\"sync_now\"}\n"
        );
    }

    #[test]
    fn second_lock_is_refused_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        let first = InstanceLock::acquire(&data).unwrap();
        match InstanceLock::acquire(&data) {
            Err(ControlError::AlreadyRunning(pid)) => {
                assert_eq!(pid, std::process::id().to_string())
            }
            other => panic!("{other:?}"),
        }
        drop(first);
        InstanceLock::acquire(&data).unwrap();
    }

    #[test]
    fn long_data_dirs_get_a_short_socket() {
        let long = "d".repeat(120);
        let p = socket_path(&DataDir::new(std::path::Path::new("/tmp").join(long)));
        assert!(p.as_os_str().len() < 100, "{}", p.display());
        let short = socket_path(&DataDir::new("/tmp/x"));
        assert_eq!(short, PathBuf::from("/tmp/x/agent.sock"));
    }

    #[tokio::test]
    async fn not_running_then_answers() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        assert!(matches!(
            call(&data, &Request::Status, Duration::from_secs(1)),
            Err(ControlError::NotRunning)
        ));
        let _lock = InstanceLock::acquire(&data).unwrap();
        let listener = bind(&socket_path(&data)).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(socket_path(&data))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Envelope>(4);
        tokio::spawn(listener.serve(tx));
        tokio::spawn(async move {
            while let Some((req, back)) = rx.recv().await {
                let st = AgentState {
                    pending: if req == Request::Status { 7 } else { 0 },
                    ..Default::default()
                };
                let _ = back.send(Response::ok(st));
            }
        });
        let d = data.clone();
        let r =
            tokio::task::spawn_blocking(move || call(&d, &Request::Status, Duration::from_secs(5)))
                .await
                .unwrap()
                .unwrap();
        assert!(r.ok);
        assert_eq!(r.state.unwrap().pending, 7);
    }
}
