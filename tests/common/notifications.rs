//! A desktop notification server for tests, on a private D-Bus session bus: it records every
//! `Notify` the agent makes (summary, body, the notification it replaces, its buttons) and can
//! press a button (`ActionInvoked`), as a user would. The agent reaches it through
//! `DBUS_SESSION_BUS_ADDRESS`, exactly as it reaches dunst or GNOME Shell. Linux only (its
//! users declare it under `#[cfg(target_os = "linux")]`).
// The bench reads fewer of its fields than the tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

const PATH: &str = "/org/freedesktop/Notifications";
const IFACE: &str = "org.freedesktop.Notifications";

/// One `Notify` call.
#[derive(Clone, Debug)]
pub struct Shown {
    pub id: u32,
    /// The notification it replaces (0: a new one).
    pub replaces: u32,
    pub summary: String,
    pub body: String,
    /// Action keys, and their labels (the buttons' texts).
    pub actions: Vec<String>,
    pub labels: Vec<String>,
    pub at: Instant,
}

struct Server {
    next: u32,
    shown: Arc<Mutex<Vec<Shown>>>,
}

#[zbus::interface(name = "org.freedesktop.Notifications")]
impl Server {
    #[allow(clippy::too_many_arguments)]
    fn notify(
        &mut self,
        _app_name: String,
        replaces_id: u32,
        _app_icon: String,
        summary: String,
        body: String,
        actions: Vec<String>,
        _hints: HashMap<String, zbus::zvariant::OwnedValue>,
        _expire_timeout: i32,
    ) -> u32 {
        let id = if replaces_id == 0 {
            self.next += 1;
            self.next
        } else {
            replaces_id
        };
        let (keys, labels) = actions
            .chunks(2)
            .map(|p| (p[0].clone(), p.get(1).cloned().unwrap_or_default()))
            .unzip();
        self.shown.lock().unwrap().push(Shown {
            id,
            replaces: replaces_id,
            summary,
            body,
            actions: keys,
            labels,
            at: Instant::now(),
        });
        id
    }

    fn get_capabilities(&self) -> Vec<String> {
        vec!["actions".into(), "body".into()]
    }

    fn get_server_information(&self) -> (String, String, String, String) {
        (
            "callsync-test".into(),
            "callsync".into(),
            "1".into(),
            "1.2".into(),
        )
    }

    fn close_notification(&self, _id: u32) {}
}

pub struct Notifications {
    daemon: Child,
    pub address: String,
    conn: zbus::blocking::Connection,
    shown: Arc<Mutex<Vec<Shown>>>,
}

impl Notifications {
    /// Starts a private bus and the server on it; `None` when dbus-daemon is not installed.
    pub fn start() -> Option<Notifications> {
        let mut daemon = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--nopidfile", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let mut line = String::new();
        std::io::BufReader::new(daemon.stdout.take()?)
            .read_line(&mut line)
            .ok()?;
        let address = line.trim().to_owned();
        let shown = Arc::new(Mutex::new(Vec::new()));
        let conn = zbus::blocking::connection::Builder::address(address.as_str())
            .ok()?
            .name(IFACE)
            .ok()?
            .serve_at(
                PATH,
                Server {
                    next: 0,
                    shown: shown.clone(),
                },
            )
            .ok()?
            .build()
            .ok()?;
        Some(Notifications {
            daemon,
            address,
            conn,
            shown,
        })
    }

    pub fn shown(&self) -> Vec<Shown> {
        self.shown.lock().unwrap().clone()
    }

    /// The user presses `action` on notification `id`.
    pub fn press(&self, id: u32, action: &str) {
        self.conn
            .emit_signal(
                None::<zbus::names::BusName<'_>>,
                PATH,
                IFACE,
                "ActionInvoked",
                &(id, action),
            )
            .unwrap();
    }
}

impl Drop for Notifications {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}
