//! Windows: the icon lives on the UI thread ([`crate::winui`], the main thread's Win32 message
//! loop); [`drive`] runs here on the runtime like on Linux and renders by posting the view to
//! that thread.

use tokio::sync::{mpsc, oneshot};

use super::*;
use crate::winui::{self, UiCmd};

/// The notification area is Explorer's taskbar window: in a session without one (a service,
/// SSH, Wine without a display) the agent runs headless. At login the Run key is started by
/// Explorer once its shell is up; a few seconds' grace covers a taskbar still being made.
/// (tray-icon adds the icon again when Explorer restarts.)
pub fn probe() -> Result<bool, TrayError> {
    use windows_sys::Win32::UI::WindowsAndMessaging::FindWindowW;
    let class: Vec<u16> = "Shell_TrayWnd\0".encode_utf16().collect();
    for _ in 0..25 {
        // SAFETY: a NUL-terminated class name and no window name.
        if !unsafe { FindWindowW(class.as_ptr(), std::ptr::null()) }.is_null() {
            return Ok(true);
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    Err(TrayError::NoTaskbar)
}

/// A [`Shell`] on the UI thread, reached by posting.
struct Posted;

impl Shell for Posted {
    fn render(&mut self, view: &View) {
        winui::post(UiCmd::Render(view.clone()));
    }
}

pub async fn run(handle: Handle, lang: Lang) -> Result<(), TrayError> {
    let (clicks_tx, clicks) = mpsc::unbounded_channel::<String>();
    let (built_tx, built) = oneshot::channel();
    let view = {
        let s = handle.state.borrow().clone();
        state::view(&s, lang, chrono::Utc::now().timestamp_millis())
    };
    winui::post(UiCmd::StartTray {
        view,
        lang,
        clicks: clicks_tx,
        built: built_tx,
    });
    built.await.map_err(|_| TrayError::Unsupported)??;
    drive(&mut Posted, handle.state.clone(), clicks, lang, |r| {
        handle.fire(r)
    })
    .await;
    Ok(())
}
