//! The tray icon and its menu, built with `tray-icon` (and its `muda` menus) the same way on
//! Linux (ksni backend) and Windows (Shell_NotifyIcon): one [`Ui`] renders a [`View`]. Its
//! objects are `!Send`: it lives on the thread that built it (the UI thread).

use std::collections::HashMap;

use tray_icon::menu::{CheckMenuItem, Menu, MenuItem, PredefinedMenuItem, Submenu};
use tray_icon::{Icon, TrayIcon, TrayIconBuilder};

use super::{decode_png, icon_png, tooltip, Shell, TrayError};
use callsync_core::i18n::{text, Lang, Msg};
use callsync_core::state::{Health, View};

pub(crate) struct Ui {
    pub(crate) tray: TrayIcon,
    /// The menu (a shared handle): Windows opens it from code where no click reaches the icon.
    #[cfg_attr(not(windows), allow(dead_code))]
    pub(crate) menu: Menu,
    status: MenuItem,
    records: MenuItem,
    pending: MenuItem,
    errors: Submenu,
    error_items: Vec<MenuItem>,
    /// The "Current call" menu, while the last call has several matches.
    call: Option<Submenu>,
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
        let icon = Icon::from_rgba(rgba, w, hgt).map_err(|e| TrayError::Build(e.to_string()))?;
        m.insert(h, icon);
    }
    Ok(m)
}

fn b<T>(r: Result<T, impl std::fmt::Display>) -> Result<T, TrayError> {
    r.map_err(|e| TrayError::Build(e.to_string()))
}

impl Ui {
    pub(crate) fn build(v: &View, lang: Lang) -> Result<Ui, TrayError> {
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
        let settings = MenuItem::with_id("settings", text(lang, &Msg::OpenSettings), true, None);
        b(menu.append(&logs))?;
        b(menu.append(&settings))?;
        b(menu.append(&PredefinedMenuItem::separator()))?;
        let quit = MenuItem::with_id("quit", text(lang, &Msg::Quit), true, None);
        b(menu.append(&quit))?;
        let icons = icons()?;
        let tray = TrayIconBuilder::new()
            .with_id("callsync")
            .with_menu(Box::new(menu.clone()))
            .with_icon(icons[&v.health].clone())
            .with_title(&v.tooltip_title)
            .with_tooltip(tooltip(v))
            .build()
            .map_err(|e| TrayError::Build(e.to_string()))?;
        let mut ui = Ui {
            tray,
            menu,
            status,
            records,
            pending,
            errors,
            error_items: Vec::new(),
            call: None,
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
        if old.as_ref().map(|o| &o.call) != Some(&v.call) {
            if let Some(sub) = self.call.take() {
                let _ = self.menu.remove(&sub);
            }
            if let Some(c) = &v.call {
                let sub = Submenu::with_id("call", &c.title, true);
                for (i, (_, label, ticked)) in c.items.iter().enumerate() {
                    let item =
                        CheckMenuItem::with_id(format!("pick:{i}"), label, true, *ticked, None);
                    let _ = sub.append(&item);
                }
                // Under the error list, above the separator.
                let _ = self.menu.insert(&sub, 4);
                self.call = Some(sub);
            }
        }
        if old.as_ref().map(|o| &o.errors) != Some(&v.errors) {
            for item in self.error_items.drain(..) {
                let _ = self.errors.remove(&item);
            }
            if v.errors.is_empty() {
                let none = MenuItem::with_id("error-none", text(lang, &Msg::NoErrors), false, None);
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
