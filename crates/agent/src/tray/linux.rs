//! Linux: tray-icon's pure-Rust `ksni` backend (StatusNotifierItem over D-Bus). No GTK main
//! loop is needed, so the tray is a plain future on the main thread ([`drive`]).

use tray_icon::menu::MenuEvent;

use super::icon::Ui;
use super::*;

const WATCHER: &str = "org.kde.StatusNotifierWatcher";

pub fn probe() -> Result<bool, TrayError> {
    let conn =
        zbus::blocking::Connection::session().map_err(|e| TrayError::NoSession(e.to_string()))?;
    let dbus = zbus::blocking::fdo::DBusProxy::new(&conn)
        .map_err(|e| TrayError::NoSession(e.to_string()))?;
    let name =
        zbus::names::BusName::try_from(WATCHER).map_err(|e| TrayError::NoSession(e.to_string()))?;
    dbus.name_has_owner(name)
        .map_err(|e| TrayError::NoSession(e.to_string()))
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
