//! The tray: a thin shell on the UI thread. It renders the core's [`AgentState`] (through the
//! pure [`callsync_core::state::view`]) and turns clicks into [`Request`]s; it does no I/O and the core
//! never touches its objects (they are `!Send` anyway).
//!
//! The icon and menu are tray-icon's on both desktops ([`icon`]). Linux uses its pure-Rust
//! `ksni` backend (StatusNotifierItem over D-Bus): no GTK at build or run time, working
//! tooltips, and `Submenu::set_text` works (it is a no-op on the GTK backend, muda 0.21); the
//! loop ([`drive`]) is a plain future the main thread blocks on. Windows uses its
//! Shell_NotifyIcon backend on the main thread's Win32 message loop ([`crate::winui`]), and
//! [`drive`] renders by posting to it. Either way [`drive`] is woken by the state channel, the
//! click channel, and a 30 s tick that ages "synced N min ago".

use crate::control::Request;
use crate::core::Handle;
use callsync_core::i18n::Lang;
use callsync_core::state::{self, AgentState, View};

#[derive(Debug, thiserror::Error)]
pub enum TrayError {
    #[error("no desktop session bus ({0})")]
    NoSession(String),
    #[error("the tray is not available on this system yet")]
    Unsupported,
    #[error("no notification area in this session (no Explorer taskbar)")]
    NoTaskbar,
    #[error("cannot create the tray icon: {0}")]
    Build(String),
}

/// Where the tray can show: `Ok(true)` a tray host is running, `Ok(false)` a desktop session
/// without one (the icon appears when one starts), `Err` no desktop session at all.
pub fn probe() -> Result<bool, TrayError> {
    imp::probe()
}

/// Runs the tray until the core stops (its state channel closes).
pub async fn run(handle: Handle, lang: Lang) -> Result<(), TrayError> {
    imp::run(handle, lang).await
}

/// Decodes one of the icons in `assets/icons` (PNG → RGBA).
#[cfg_attr(not(any(target_os = "linux", windows)), allow(dead_code))] // no macOS tray yet
pub(crate) fn decode_png(bytes: &[u8]) -> Result<(Vec<u8>, u32, u32), String> {
    let mut dec = png::Decoder::new(std::io::Cursor::new(bytes));
    dec.set_transformations(
        png::Transformations::normalize_to_color8() | png::Transformations::ALPHA,
    );
    let mut reader = dec.read_info().map_err(|e| e.to_string())?;
    let mut buf = vec![0; reader.output_buffer_size().ok_or("icon too large")?];
    let info = reader.next_frame(&mut buf).map_err(|e| e.to_string())?;
    buf.truncate(info.buffer_size());
    if info.color_type != png::ColorType::Rgba || info.bit_depth != png::BitDepth::Eight {
        return Err(format!(
            "icon is {:?}/{:?}, not 8-bit RGBA",
            info.color_type, info.bit_depth
        ));
    }
    Ok((buf, info.width, info.height))
}

/// The embedded icon for a state (32 px: SNI hosts and Windows scale from it).
#[cfg_attr(not(any(target_os = "linux", windows)), allow(dead_code))] // no macOS tray yet
pub(crate) fn icon_png(h: callsync_core::state::Health) -> &'static [u8] {
    use callsync_core::state::Health;
    match h {
        Health::Ok => include_bytes!("../../../../assets/icons/ok-32.png"),
        Health::Working => include_bytes!("../../../../assets/icons/working-32.png"),
        Health::Attention => include_bytes!("../../../../assets/icons/attention-32.png"),
        Health::Error => include_bytes!("../../../../assets/icons/error-32.png"),
    }
}

/// Tooltip body: the status line, and the queue when there is one.
pub fn tooltip(v: &View) -> String {
    format!("{}\n{}", v.status, v.pending)
}

/// A tray backend: shows the [`View`] it is given, and sends the ids of clicked menu items
/// (`"sync"`, `"pause"`, `"error:3"` …) on the channel it was built with. Everything else —
/// when to render, what a click means — is [`drive`]'s, the same on every platform, and tested
/// with a fake backend.
pub trait Shell {
    fn render(&mut self, view: &View);
}

/// Pure: what a click on menu item `id` asks of the core, given the menu it was clicked in.
pub fn request(shown: &View, id: &str) -> Option<Request> {
    Some(match id {
        "sync" => Request::SyncNow,
        "pause" if shown.paused => Request::Resume,
        "pause" => Request::Pause,
        "sign" if shown.signed_in => Request::SignOut,
        "sign" => Request::SignIn,
        "logs" => Request::OpenLogs,
        "settings" => Request::OpenSettings,
        "quit" => Request::Quit,
        // A record in the "Current call" menu: the call's Task goes on it.
        other if other.starts_with("pick:") => {
            let call = shown.call.as_ref()?;
            let i: usize = other["pick:".len()..].parse().ok()?;
            Request::Pick {
                call_id: call.call_id.clone(),
                record_id: call.items.get(i)?.0.clone(),
            }
        }
        // A click on a balloon (Windows) that showed this record.
        other if other.starts_with("open:") => Request::OpenRecord {
            url: other["open:".len()..].to_owned(),
        },
        other => Request::Explain {
            index: other.strip_prefix("error:")?.parse().ok()?,
        },
    })
}

/// The tray loop: renders the core's state when it changes (and every 30 s, which ages
/// "synced N min ago"), and turns clicks into requests (`fire`). Ends when the core stops.
pub async fn drive(
    shell: &mut impl Shell,
    mut state: tokio::sync::watch::Receiver<AgentState>,
    mut clicks: tokio::sync::mpsc::UnboundedReceiver<String>,
    lang: Lang,
    fire: impl Fn(Request),
) {
    let now = || chrono::Utc::now().timestamp_millis();
    let mut shown = {
        let s = state.borrow_and_update().clone();
        state::view(&s, lang, now())
    };
    shell.render(&shown);
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(30));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.reset();
    loop {
        tokio::select! {
            changed = state.changed() => {
                if changed.is_err() {
                    break; // the core stopped
                }
                let s = state.borrow_and_update().clone();
                shown = state::view(&s, lang, now());
                shell.render(&shown);
            }
            Some(id) = clicks.recv() => {
                if let Some(req) = request(&shown, &id) {
                    tracing::info!(?req, "tray");
                    fire(req);
                }
            }
            _ = tick.tick() => {
                let s = state.borrow().clone();
                shown = state::view(&s, lang, now());
                shell.render(&shown);
            }
        }
    }
}

#[cfg(any(target_os = "linux", windows))]
pub(crate) mod icon;
#[cfg(target_os = "linux")]
#[path = "linux.rs"]
mod imp;
#[cfg(windows)]
#[path = "windows.rs"]
pub(crate) mod imp;

#[cfg(not(any(target_os = "linux", windows)))]
mod imp {
    //! macOS needs the tray on NSApp's event loop: until that lands the agent runs headless
    //! there, with the control socket and the CLI.
    use super::*;

    pub fn probe() -> Result<bool, TrayError> {
        Err(TrayError::Unsupported)
    }

    pub async fn run(_handle: Handle, _lang: Lang) -> Result<(), TrayError> {
        Err(TrayError::Unsupported)
    }
}

#[cfg(test)]
mod tests;
