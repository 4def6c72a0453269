//! The tray: a thin shell on the UI thread. It renders the core's [`AgentState`] (through the
//! pure [`crate::state::view`]) and turns clicks into [`Request`]s; it does no I/O and the core
//! never touches its objects (they are `!Send` anyway).
//!
//! Linux uses tray-icon's pure-Rust `ksni` backend (StatusNotifierItem over D-Bus): no GTK at
//! build or run time, working tooltips, and `Submenu::set_text` works (it is a no-op on the GTK
//! backend, muda 0.21). No GTK main loop is needed, so the UI loop is a plain future the main
//! thread blocks on, woken by the state channel, the click channel, and a 30 s tick that ages
//! "synced N min ago".

use crate::agent::Handle;
use crate::i18n::Lang;
use crate::state::View;

#[derive(Debug, thiserror::Error)]
pub enum TrayError {
    #[error("no desktop session bus ({0})")]
    NoSession(String),
    #[error("the tray is not available on this system yet")]
    Unsupported,
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
pub fn decode_png(bytes: &[u8]) -> Result<(Vec<u8>, u32, u32), String> {
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
pub fn icon_png(h: crate::state::Health) -> &'static [u8] {
    use crate::state::Health;
    match h {
        Health::Ok => include_bytes!("../assets/icons/ok-32.png"),
        Health::Working => include_bytes!("../assets/icons/working-32.png"),
        Health::Attention => include_bytes!("../assets/icons/attention-32.png"),
        Health::Error => include_bytes!("../assets/icons/error-32.png"),
    }
}

/// Tooltip body: the status line, and the queue when there is one.
pub fn tooltip(v: &View) -> String {
    format!("{}\n{}", v.status, v.pending)
}

#[cfg(target_os = "linux")]
mod imp {
    use std::collections::HashMap;
    use std::time::Duration;

    use tray_icon::menu::{Menu, MenuEvent, MenuId, MenuItem, PredefinedMenuItem, Submenu};
    use tray_icon::{Icon, TrayIcon, TrayIconBuilder};

    use super::*;
    use crate::control::Request;
    use crate::state::{self, Health};

    const WATCHER: &str = "org.kde.StatusNotifierWatcher";

    pub fn probe() -> Result<bool, TrayError> {
        let conn = zbus::blocking::Connection::session()
            .map_err(|e| TrayError::NoSession(e.to_string()))?;
        let dbus = zbus::blocking::fdo::DBusProxy::new(&conn)
            .map_err(|e| TrayError::NoSession(e.to_string()))?;
        let name = zbus::names::BusName::try_from(WATCHER)
            .map_err(|e| TrayError::NoSession(e.to_string()))?;
        dbus.name_has_owner(name)
            .map_err(|e| TrayError::NoSession(e.to_string()))
    }

    struct Ui {
        tray: TrayIcon,
        status: MenuItem,
        records: MenuItem,
        pending: MenuItem,
        errors: Submenu,
        error_items: Vec<MenuItem>,
        pause: MenuItem,
        sign: MenuItem,
        icons: HashMap<Health, Icon>,
        shown: Option<View>,
    }

    fn icons() -> Result<HashMap<Health, Icon>, TrayError> {
        let mut m = HashMap::new();
        for h in [
            Health::Ok,
            Health::Working,
            Health::Attention,
            Health::Error,
        ] {
            let (rgba, w, hgt) = decode_png(icon_png(h)).map_err(TrayError::Build)?;
            let icon =
                Icon::from_rgba(rgba, w, hgt).map_err(|e| TrayError::Build(e.to_string()))?;
            m.insert(h, icon);
        }
        Ok(m)
    }

    fn b<T>(r: Result<T, impl std::fmt::Display>) -> Result<T, TrayError> {
        r.map_err(|e| TrayError::Build(e.to_string()))
    }

    impl Ui {
        fn build(v: &View, lang: Lang) -> Result<Ui, TrayError> {
            use crate::i18n::{text, Msg};
            let status = MenuItem::with_id("status", &v.status, false, None);
            let records = MenuItem::with_id("records", &v.records, false, None);
            let pending = MenuItem::with_id("pending", &v.pending, false, None);
            let errors = Submenu::with_id("errors", &v.errors_label, true);
            let pause = MenuItem::with_id("pause", &v.pause_label, true, None);
            let sign = MenuItem::with_id("sign", &v.sign_label, true, None);
            let menu = Menu::new();
            b(menu.append(&status))?;
            b(menu.append(&records))?;
            b(menu.append(&pending))?;
            b(menu.append(&errors))?;
            b(menu.append(&PredefinedMenuItem::separator()))?;
            let sync = MenuItem::with_id("sync", text(lang, &Msg::SyncNow), true, None);
            b(menu.append(&sync))?;
            b(menu.append(&pause))?;
            b(menu.append(&sign))?;
            let logs = MenuItem::with_id("logs", text(lang, &Msg::OpenLogs), true, None);
            let settings =
                MenuItem::with_id("settings", text(lang, &Msg::OpenSettings), true, None);
            b(menu.append(&logs))?;
            b(menu.append(&settings))?;
            b(menu.append(&PredefinedMenuItem::separator()))?;
            let quit = MenuItem::with_id("quit", text(lang, &Msg::Quit), true, None);
            b(menu.append(&quit))?;
            let icons = icons()?;
            let tray = TrayIconBuilder::new()
                .with_id("callsync")
                .with_menu(Box::new(menu))
                .with_icon(icons[&v.health].clone())
                .with_title(&v.tooltip_title)
                .with_tooltip(tooltip(v))
                .build()
                .map_err(|e| TrayError::Build(e.to_string()))?;
            let mut ui = Ui {
                tray,
                status,
                records,
                pending,
                errors,
                error_items: Vec::new(),
                pause,
                sign,
                icons,
                shown: None,
            };
            ui.render(v, lang);
            Ok(ui)
        }

        /// Applies what changed since the last render.
        fn render(&mut self, v: &View, lang: Lang) {
            let old = self.shown.take();
            let changed = |f: fn(&View) -> &String| old.as_ref().map(f) != Some(f(v));
            if old.as_ref().map(|o| o.health) != Some(v.health) {
                let _ = self.tray.set_icon(self.icons.get(&v.health).cloned());
            }
            if changed(|v| &v.tooltip_title) {
                self.tray.set_title(Some(&v.tooltip_title));
            }
            if old.as_ref().map(tooltip) != Some(tooltip(v)) {
                let _ = self.tray.set_tooltip(Some(tooltip(v)));
            }
            if changed(|v| &v.status) {
                self.status.set_text(&v.status);
            }
            if changed(|v| &v.records) {
                self.records.set_text(&v.records);
            }
            if changed(|v| &v.pending) {
                self.pending.set_text(&v.pending);
            }
            if changed(|v| &v.errors_label) {
                self.errors.set_text(&v.errors_label);
            }
            if changed(|v| &v.pause_label) {
                self.pause.set_text(&v.pause_label);
            }
            if changed(|v| &v.sign_label) {
                self.sign.set_text(&v.sign_label);
            }
            if old.as_ref().map(|o| &o.errors) != Some(&v.errors) {
                for item in self.error_items.drain(..) {
                    let _ = self.errors.remove(&item);
                }
                if v.errors.is_empty() {
                    let none = MenuItem::with_id(
                        "error-none",
                        crate::i18n::text(lang, &crate::i18n::Msg::NoErrors),
                        false,
                        None,
                    );
                    let _ = self.errors.append(&none);
                    self.error_items.push(none);
                }
                for (i, line) in v.errors.iter().enumerate() {
                    let item = MenuItem::with_id(format!("error:{i}"), line, true, None);
                    let _ = self.errors.append(&item);
                    self.error_items.push(item);
                }
            }
            self.shown = Some(v.clone());
        }

        /// What a click asks of the core.
        fn request(&self, id: &MenuId) -> Option<Request> {
            let shown = self.shown.as_ref()?;
            Some(match id.as_ref() {
                "sync" => Request::SyncNow,
                "pause" if shown.paused => Request::Resume,
                "pause" => Request::Pause,
                "sign" if shown.signed_in => Request::SignOut,
                "sign" => Request::SignIn,
                "logs" => Request::OpenLogs,
                "settings" => Request::OpenSettings,
                "quit" => Request::Quit,
                other => Request::Explain {
                    index: other.strip_prefix("error:")?.parse().ok()?,
                },
            })
        }
    }

    pub async fn run(handle: Handle, lang: Lang) -> Result<(), TrayError> {
        let (click_tx, mut clicks) = tokio::sync::mpsc::unbounded_channel::<MenuId>();
        // Runs on ksni's D-Bus thread: only forward.
        MenuEvent::set_event_handler(Some(move |e: MenuEvent| {
            let _ = click_tx.send(e.id);
        }));
        let mut state = handle.state.clone();
        let now = || chrono::Utc::now().timestamp_millis();
        let current = state.borrow_and_update().clone();
        let mut ui = Ui::build(&state::view(&current, lang, now()), lang)?;
        tracing::info!("tray icon up");
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                changed = state.changed() => {
                    if changed.is_err() {
                        break; // the core stopped
                    }
                    let s = state.borrow_and_update().clone();
                    ui.render(&state::view(&s, lang, now()), lang);
                }
                Some(id) = clicks.recv() => {
                    if let Some(req) = ui.request(&id) {
                        tracing::info!(?req, "tray");
                        handle.fire(req);
                    }
                }
                _ = tick.tick() => {
                    let s = state.borrow().clone();
                    ui.render(&state::view(&s, lang, now()), lang);
                }
            }
        }
        MenuEvent::set_event_handler(None::<fn(MenuEvent)>);
        Ok(())
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    //! Windows and macOS need the tray on a native event loop (Win32 message pump, NSApp);
    //! until that lands the agent runs headless there, with the control socket and CLI.
    use super::*;

    pub fn probe() -> Result<bool, TrayError> {
        Err(TrayError::Unsupported)
    }

    pub async fn run(_handle: Handle, _lang: Lang) -> Result<(), TrayError> {
        Err(TrayError::Unsupported)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Health;

    #[test]
    fn embedded_icons_decode() {
        for h in [
            Health::Ok,
            Health::Working,
            Health::Attention,
            Health::Error,
        ] {
            let (rgba, w, hgt) = decode_png(icon_png(h)).unwrap();
            assert_eq!((w, hgt), (32, 32));
            assert_eq!(rgba.len(), 32 * 32 * 4);
            // The centre of the disc is drawn (not transparent).
            let c = ((16 * 32 + 16) * 4) as usize;
            assert!(rgba[c + 3] > 0, "{h:?}");
        }
    }
}
