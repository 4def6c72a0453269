//! The tray: a thin shell on the UI thread. It renders the core's [`AgentState`] (through the
//! pure [`callsync_core::state::view`]) and turns clicks into [`Request`]s; it does no I/O and the core
//! never touches its objects (they are `!Send` anyway).
//!
//! Linux uses tray-icon's pure-Rust `ksni` backend (StatusNotifierItem over D-Bus): no GTK at
//! build or run time, working tooltips, and `Submenu::set_text` works (it is a no-op on the GTK
//! backend, muda 0.21). No GTK main loop is needed, so the UI loop is a plain future the main
//! thread blocks on, woken by the state channel, the click channel, and a 30 s tick that ages
//! "synced N min ago".

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
#[cfg_attr(not(target_os = "linux"), allow(dead_code))] // only the Linux tray exists yet
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
#[cfg_attr(not(target_os = "linux"), allow(dead_code))] // only the Linux tray exists yet
pub(crate) fn icon_png(h: callsync_core::state::Health) -> &'static [u8] {
    use callsync_core::state::Health;
    match h {
        Health::Ok => include_bytes!("../../../assets/icons/ok-32.png"),
        Health::Working => include_bytes!("../../../assets/icons/working-32.png"),
        Health::Attention => include_bytes!("../../../assets/icons/attention-32.png"),
        Health::Error => include_bytes!("../../../assets/icons/error-32.png"),
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

#[cfg(target_os = "linux")]
mod imp {
    use std::collections::HashMap;

    use tray_icon::menu::{Menu, MenuEvent, MenuItem, PredefinedMenuItem, Submenu};
    use tray_icon::{Icon, TrayIcon, TrayIconBuilder};

    use super::*;
    use callsync_core::state::Health;

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
        lang: Lang,
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
            use callsync_core::i18n::{text, Msg};
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
                lang,
            };
            ui.render(v);
            Ok(ui)
        }
    }

    impl Shell for Ui {
        /// Applies what changed since the last render.
        fn render(&mut self, v: &View) {
            let lang = self.lang;
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
                        callsync_core::i18n::text(lang, &callsync_core::i18n::Msg::NoErrors),
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
    }

    pub async fn run(handle: Handle, lang: Lang) -> Result<(), TrayError> {
        let (click_tx, clicks) = tokio::sync::mpsc::unbounded_channel::<String>();
        // Runs on ksni's D-Bus thread: only forward.
        MenuEvent::set_event_handler(Some(move |e: MenuEvent| {
            let _ = click_tx.send(e.id.as_ref().to_owned());
        }));
        let first = {
            let s = handle.state.borrow().clone();
            state::view(&s, lang, chrono::Utc::now().timestamp_millis())
        };
        let mut ui = Ui::build(&first, lang)?;
        tracing::info!("tray icon up");
        drive(&mut ui, handle.state.clone(), clicks, lang, |r| {
            handle.fire(r)
        })
        .await;
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
    use callsync_core::state::Health;

    /// A tray that remembers what it was shown.
    #[derive(Default)]
    struct Fake {
        shown: Vec<View>,
    }

    impl Shell for Fake {
        fn render(&mut self, view: &View) {
            self.shown.push(view.clone());
        }
    }

    fn view(paused: bool, signed_in: bool) -> View {
        let mut s = AgentState::default();
        if signed_in {
            s.user = Some("agent@example.com".into());
        }
        if paused {
            s.paused = Some("user".into());
        }
        state::view(&s, Lang::En, 0)
    }

    #[test]
    fn clicks_ask_what_the_menu_says() {
        let cases: &[(&str, bool, bool, Option<Request>)] = &[
            ("sync", false, true, Some(Request::SyncNow)),
            ("pause", false, true, Some(Request::Pause)),
            ("pause", true, true, Some(Request::Resume)),
            ("sign", false, true, Some(Request::SignOut)),
            ("sign", false, false, Some(Request::SignIn)),
            ("logs", false, true, Some(Request::OpenLogs)),
            ("settings", false, true, Some(Request::OpenSettings)),
            ("quit", false, true, Some(Request::Quit)),
            ("error:3", false, true, Some(Request::Explain { index: 3 })),
            ("error:x", false, true, None),
            ("status", false, true, None),
        ];
        for (id, paused, signed_in, want) in cases {
            let got = request(&view(*paused, *signed_in), id);
            assert_eq!(
                format!("{got:?}"),
                format!("{want:?}"),
                "{id} paused={paused} signed_in={signed_in}"
            );
        }
    }

    #[tokio::test]
    async fn the_loop_renders_the_core_and_turns_clicks_into_requests() {
        let (state_tx, state_rx) = tokio::sync::watch::channel(AgentState {
            user: Some("agent@example.com".into()),
            ..Default::default()
        });
        let (click_tx, clicks) = tokio::sync::mpsc::unbounded_channel();
        let fired = std::sync::Mutex::new(Vec::new());
        let mut fake = Fake::default();
        let script = async {
            // The core pauses; then the user clicks the item that now reads "Resume sending".
            tokio::task::yield_now().await;
            state_tx.send_modify(|s| s.paused = Some("user".into()));
            tokio::task::yield_now().await;
            click_tx.send("pause".to_owned()).unwrap();
            click_tx.send("error:0".to_owned()).unwrap();
            for _ in 0..1000 {
                if fired.lock().unwrap().len() == 2 {
                    break;
                }
                tokio::task::yield_now().await;
            }
            drop(state_tx); // the core stops: the loop ends
        };
        let run = drive(&mut fake, state_rx, clicks, Lang::En, |r| {
            fired.lock().unwrap().push(format!("{r:?}"))
        });
        tokio::join!(run, script);
        let labels: Vec<&str> = fake.shown.iter().map(|v| v.pause_label.as_str()).collect();
        assert_eq!(labels, ["Pause sending", "Resume sending"]);
        assert!(fake.shown[1].paused);
        assert_eq!(
            *fired.lock().unwrap(),
            [
                format!("{:?}", Request::Resume),
                format!("{:?}", Request::Explain { index: 0 })
            ]
        );
    }

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
