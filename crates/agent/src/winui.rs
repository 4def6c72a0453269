//! Windows: the agent's UI thread, which is the main thread. It owns a hidden top-level window
//! and, unless the agent runs headless, the tray icon and its menu; one Win32 message loop
//! serves both. The rest of the agent (the core, the control pipe, the tray's [`drive`] loop)
//! runs on the tokio runtime and reaches this thread only through [`post`]: a queue and a
//! `PostMessageW` to the hidden window, so the `!Send` tray objects never leave their thread.
//!
//! The hidden window lets installers (the MSI's `CloseApplication`, the Restart Manager) and
//! logoff ask the agent to stop (`WM_CLOSE`, `WM_ENDSESSION`): a process with no window could
//! only be killed, and an MSI upgrade would wait on it.
//!
//! [`drive`]: crate::tray::drive

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::{mpsc, oneshot, Notify};
use windows_sys::Win32::Foundation::{HWND, LPARAM, LRESULT, POINT, WPARAM};
use windows_sys::Win32::Graphics::Gdi::ScreenToClient;
use windows_sys::Win32::System::LibraryLoader::GetModuleHandleW;
use windows_sys::Win32::UI::Shell::{
    DefSubclassProc, SetWindowSubclass, Shell_NotifyIconW, NIF_INFO, NIIF_INFO, NIM_MODIFY,
    NIN_BALLOONTIMEOUT, NIN_BALLOONUSERCLICK, NOTIFYICONDATAW,
};
use windows_sys::Win32::UI::WindowsAndMessaging::{
    CreateWindowExW, DefWindowProcW, DispatchMessageW, GetMessageW, PostMessageW, PostQuitMessage,
    RegisterClassW, SetForegroundWindow, TranslateMessage, MSG, WM_APP, WM_CLOSE, WM_ENDSESSION,
    WM_QUERYENDSESSION, WNDCLASSW, WS_OVERLAPPED,
};

use crate::tray::icon::Ui;
use crate::tray::{Shell, TrayError};
use callsync_core::i18n::Lang;
use callsync_core::state::View;

/// What the rest of the agent asks of the UI thread.
pub enum UiCmd {
    /// Build the tray showing `view`; its menu's clicks go to `clicks` (item ids, and
    /// `open:<url>` for a click on a balloon). `built` learns whether it worked.
    StartTray {
        view: View,
        lang: Lang,
        clicks: mpsc::UnboundedSender<String>,
        built: oneshot::Sender<Result<(), TrayError>>,
    },
    /// Show this view (from [`crate::tray::drive`]).
    Render(View),
    /// A balloon on the tray icon (Windows 10/11 show it as a toast); a click on it opens
    /// `url`. `shown` learns whether it was.
    Balloon {
        title: String,
        body: String,
        url: Option<String>,
        shown: Option<oneshot::Sender<Result<(), String>>>,
    },
    /// Test hook: open the tray menu at this screen point (Wine delivers no clicks to icons).
    Menu { x: i32, y: i32 },
    /// The agent stopped: remove the icon and leave the loop.
    Quit,
}

/// The posted message that says "the queue has commands".
const WM_UI_CMD: u32 = WM_APP + 1;
/// tray-icon's callback message for its icon (`WM_USER_TRAYICON` in tray-icon 0.26's Windows
/// backend): balloon clicks arrive with it, and tray-icon ignores them.
const TRAYICON_CALLBACK: u32 = 6002;
const BALLOON_SUBCLASS: usize = 0xCA11;

static QUEUE: Mutex<VecDeque<UiCmd>> = Mutex::new(VecDeque::new());
/// The hidden window (0: not created yet, or gone).
static WINDOW: AtomicUsize = AtomicUsize::new(0);
/// The UI thread could not start or has ended: nothing will serve the queue again.
static GONE: AtomicBool = AtomicBool::new(false);
static CLOSE: OnceLock<Arc<Notify>> = OnceLock::new();
/// Where a click on a balloon goes (the tray's click channel).
static CLICKS: OnceLock<mpsc::UnboundedSender<String>> = OnceLock::new();

thread_local! {
    /// The tray, on the UI thread only.
    static TRAY: RefCell<Option<Ui>> = const { RefCell::new(None) };
    /// The record the balloon on show opens when clicked.
    static BALLOON_URL: RefCell<Option<String>> = const { RefCell::new(None) };
    /// tray-icon's `uID` for its icon, found once (it does not expose it).
    static ICON_ID: RefCell<Option<u32>> = const { RefCell::new(None) };
}

/// Fires when Windows asks the agent to close (installer, logoff).
pub fn close_requested() -> Arc<Notify> {
    CLOSE.get_or_init(|| Arc::new(Notify::new())).clone()
}

/// Hands `cmd` to the UI thread. Commands posted before its window exists wait for it; once
/// the thread is gone they are dropped (a waiter on one of their answers learns it).
pub fn post(cmd: UiCmd) {
    if GONE.load(Ordering::SeqCst) {
        return;
    }
    if let Ok(mut q) = QUEUE.lock() {
        q.push_back(cmd);
    }
    let hwnd = WINDOW.load(Ordering::SeqCst);
    if hwnd != 0 {
        // SAFETY: posting a message to a window handle is safe even if the window has gone.
        unsafe { PostMessageW(hwnd as HWND, WM_UI_CMD, 0, 0) };
    }
}

/// Runs the UI thread's message loop on the calling thread until [`UiCmd::Quit`].
pub fn run() {
    let class: Vec<u16> = "callsync-agent\0".encode_utf16().collect();
    // SAFETY: plain Win32 calls on this thread; `class` outlives the window, and the structs are
    // plain data for which all-zero is a valid starting value.
    let hwnd = unsafe {
        let instance = GetModuleHandleW(std::ptr::null());
        let mut wc: WNDCLASSW = std::mem::zeroed();
        wc.lpfnWndProc = Some(wndproc);
        wc.hInstance = instance;
        wc.lpszClassName = class.as_ptr();
        if RegisterClassW(&wc) == 0 {
            std::ptr::null_mut()
        } else {
            // Never shown: a top-level window (message-only windows miss WM_ENDSESSION
            // broadcasts).
            CreateWindowExW(
                0,
                class.as_ptr(),
                class.as_ptr(),
                WS_OVERLAPPED,
                0,
                0,
                0,
                0,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                instance,
                std::ptr::null(),
            )
        }
    };
    if hwnd.is_null() {
        tracing::warn!("cannot create the agent's window: no tray, and installers cannot ask the agent to stop");
        leave();
        return;
    }
    WINDOW.store(hwnd as usize, Ordering::SeqCst);
    // Commands posted before the window existed.
    serve_queue();
    // SAFETY: the standard message loop on the thread that owns the windows.
    unsafe {
        let mut msg: MSG = std::mem::zeroed();
        while GetMessageW(&mut msg, std::ptr::null_mut(), 0, 0) > 0 {
            TranslateMessage(&msg);
            DispatchMessageW(&msg);
        }
    }
    leave();
}

/// Nothing will serve the queue again: what is in it is dropped, which tells every waiter.
fn leave() {
    GONE.store(true, Ordering::SeqCst);
    WINDOW.store(0, Ordering::SeqCst);
    if let Ok(mut q) = QUEUE.lock() {
        q.clear();
    }
}

unsafe extern "system" fn wndproc(hwnd: HWND, msg: u32, wparam: WPARAM, lparam: LPARAM) -> LRESULT {
    match msg {
        WM_UI_CMD => {
            serve_queue();
            0
        }
        // Agree to end the session; WM_ENDSESSION follows.
        WM_QUERYENDSESSION => 1,
        // WM_ENDSESSION with wparam 0: the session is not ending after all.
        WM_CLOSE | WM_ENDSESSION if msg == WM_CLOSE || wparam != 0 => {
            close_requested().notify_one();
            0
        }
        // SAFETY: the arguments are the ones Windows passed to this window procedure.
        _ => unsafe { DefWindowProcW(hwnd, msg, wparam, lparam) },
    }
}

fn serve_queue() {
    loop {
        // One at a time, the lock released: a command may run a modal loop (the menu) that
        // serves the queue again.
        let cmd = QUEUE.lock().ok().and_then(|mut q| q.pop_front());
        match cmd {
            Some(cmd) => serve(cmd),
            None => break,
        }
    }
}

fn serve(cmd: UiCmd) {
    match cmd {
        UiCmd::StartTray {
            view,
            lang,
            clicks,
            built,
        } => {
            let r = start_tray(&view, lang, clicks);
            let _ = built.send(r);
        }
        UiCmd::Render(v) => TRAY.with(|t| {
            if let Ok(mut t) = t.try_borrow_mut() {
                if let Some(ui) = t.as_mut() {
                    ui.render(&v);
                }
            }
        }),
        UiCmd::Balloon {
            title,
            body,
            url,
            shown,
        } => {
            let r = balloon(&title, &body, url);
            if let Some(s) = shown {
                let _ = s.send(r);
            }
        }
        UiCmd::Menu { x, y } => open_menu(x, y),
        UiCmd::Quit => {
            // Dropping the tray removes its icon. (No borrow can be live here: every other use
            // of TRAY is short or released before a modal loop; try_ keeps a panic out of a
            // window procedure, where it would abort.)
            TRAY.with(|t| t.try_borrow_mut().ok().and_then(|mut t| t.take()));
            // SAFETY: ends this thread's message loop.
            unsafe { PostQuitMessage(0) };
        }
    }
}

fn start_tray(
    view: &View,
    lang: Lang,
    clicks: mpsc::UnboundedSender<String>,
) -> Result<(), TrayError> {
    use tray_icon::menu::MenuEvent;
    let ui = Ui::build(view, lang)?;
    // Menu events are raised on this thread, inside the message loop: only forward.
    let tx = clicks.clone();
    MenuEvent::set_event_handler(Some(move |e: MenuEvent| {
        let _ = tx.send(e.id.as_ref().to_owned());
    }));
    let _ = CLICKS.set(clicks);
    let icon_window = ui.tray.window_handle();
    // SAFETY: the tray's window belongs to this thread; the subclass procedure only forwards
    // balloon clicks and passes every message on.
    unsafe { SetWindowSubclass(icon_window, Some(balloon_proc), BALLOON_SUBCLASS, 0) };
    let kept = TRAY.with(|t| t.try_borrow_mut().map(|mut t| *t = Some(ui)).is_ok());
    if !kept {
        return Err(TrayError::Build("the UI thread was busy".into()));
    }
    tracing::info!("tray icon up");
    Ok(())
}

/// Catches what tray-icon drops: a click on the balloon opens its record.
unsafe extern "system" fn balloon_proc(
    hwnd: HWND,
    msg: u32,
    wparam: WPARAM,
    lparam: LPARAM,
    _id: usize,
    _data: usize,
) -> LRESULT {
    if msg == TRAYICON_CALLBACK {
        let event = lparam as u32 & 0xFFFF;
        if event == NIN_BALLOONUSERCLICK {
            let url = BALLOON_URL.with(|u| u.borrow_mut().take());
            if let (Some(url), Some(tx)) = (url, CLICKS.get()) {
                let _ = tx.send(format!("open:{url}"));
            }
            return 0;
        }
        if event == NIN_BALLOONTIMEOUT {
            BALLOON_URL.with(|u| u.borrow_mut().take());
        }
    }
    // SAFETY: the arguments are the ones Windows passed.
    unsafe { DefSubclassProc(hwnd, msg, wparam, lparam) }
}

/// `text` as a NUL-terminated UTF-16 field of `N` units, cut if longer.
fn wide<const N: usize>(text: &str) -> [u16; N] {
    let mut out = [0u16; N];
    for (slot, unit) in out.iter_mut().take(N - 1).zip(text.encode_utf16()) {
        *slot = unit;
    }
    out
}

/// The icon's `uID`. tray-icon numbers its icons from a process-wide counter it does not
/// expose; `NIM_MODIFY` with no flags succeeds only for an icon that exists.
fn icon_id(hwnd: HWND) -> Option<u32> {
    if let Some(id) = ICON_ID.with(|i| *i.borrow()) {
        return Some(id);
    }
    let found = (1..=64).find(|id| {
        let nid = NOTIFYICONDATAW {
            cbSize: std::mem::size_of::<NOTIFYICONDATAW>() as u32,
            hWnd: hwnd,
            uID: *id,
            ..Default::default()
        };
        // SAFETY: a fully initialised NOTIFYICONDATAW; nothing is changed (no flags).
        unsafe { Shell_NotifyIconW(NIM_MODIFY, &nid) != 0 }
    });
    ICON_ID.with(|i| *i.borrow_mut() = found);
    found
}

fn balloon(title: &str, body: &str, url: Option<String>) -> Result<(), String> {
    let hwnd = TRAY
        .with(|t| {
            t.try_borrow()
                .ok()
                .and_then(|t| t.as_ref().map(|ui| ui.tray.window_handle()))
        })
        .ok_or("no tray icon to show a balloon on (the agent runs headless)")?;
    let id = icon_id(hwnd).ok_or("the tray icon is not in the notification area")?;
    let mut nid = NOTIFYICONDATAW {
        cbSize: std::mem::size_of::<NOTIFYICONDATAW>() as u32,
        hWnd: hwnd,
        uID: id,
        uFlags: NIF_INFO,
        szInfo: wide(body),
        szInfoTitle: wide(title),
        dwInfoFlags: NIIF_INFO,
        ..Default::default()
    };
    nid.Anonymous.uTimeout = 30_000;
    BALLOON_URL.with(|u| *u.borrow_mut() = url);
    // SAFETY: a fully initialised NOTIFYICONDATAW for the tray's own icon.
    if unsafe { Shell_NotifyIconW(NIM_MODIFY, &nid) } == 0 {
        return Err("Shell_NotifyIcon refused the balloon".into());
    }
    Ok(())
}

fn open_menu(x: i32, y: i32) {
    use tray_icon::menu::ContextMenu;
    // The menu runs a modal loop: take what it needs and release the tray first, so that
    // renders during it still apply.
    let Some((menu, hwnd)) = TRAY.with(|t| {
        t.try_borrow().ok().and_then(|t| {
            t.as_ref()
                .map(|ui| (ui.menu.clone(), ui.tray.window_handle()))
        })
    }) else {
        return;
    };
    let mut pt = POINT { x, y };
    // SAFETY: the tray's window belongs to this thread; muda's position is window-relative.
    unsafe {
        ScreenToClient(hwnd, &mut pt);
        // A popup menu closes properly only when its window is in the foreground.
        SetForegroundWindow(hwnd);
        menu.show_context_menu_for_hwnd(
            hwnd as isize,
            Some(tray_icon::dpi::PhysicalPosition::new(pt.x, pt.y).into()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::wide;

    /// Balloon texts are fixed UTF-16 fields: cut to fit, always NUL-terminated.
    #[test]
    fn texts_fit_their_fields() {
        let t: [u16; 8] = wide("山田 太郎");
        assert_eq!(String::from_utf16_lossy(&t[..5]), "山田 太郎");
        assert_eq!(t[5], 0);
        let long: [u16; 4] = wide("abcdefgh");
        assert_eq!(long, [97, 98, 99, 0]);
        let empty: [u16; 2] = wide("");
        assert_eq!(empty, [0, 0]);
    }
}
