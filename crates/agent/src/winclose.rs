//! Windows: a hidden top-level window, so that installers (the MSI's `CloseApplication`, the
//! Restart Manager) and logoff can ask the agent to stop (`WM_CLOSE`, `WM_ENDSESSION`). A process
//! with no window could only be killed, and an MSI upgrade would wait on it.

use std::sync::{Arc, OnceLock};

use tokio::sync::Notify;
use windows_sys::Win32::Foundation::{HWND, LPARAM, LRESULT, WPARAM};
use windows_sys::Win32::System::LibraryLoader::GetModuleHandleW;
use windows_sys::Win32::UI::WindowsAndMessaging::{
    CreateWindowExW, DefWindowProcW, DispatchMessageW, GetMessageW, RegisterClassW,
    TranslateMessage, MSG, WM_CLOSE, WM_ENDSESSION, WM_QUERYENDSESSION, WNDCLASSW, WS_OVERLAPPED,
};

static CLOSE: OnceLock<Arc<Notify>> = OnceLock::new();

/// Starts the window on its own thread; the returned `Notify` fires when Windows asks to close.
pub fn install() -> Arc<Notify> {
    let n = CLOSE.get_or_init(|| Arc::new(Notify::new())).clone();
    if let Err(e) = std::thread::Builder::new()
        .name("close-window".into())
        .spawn(run_window)
    {
        tracing::warn!(error = %e, "no close window: installers cannot ask the agent to stop");
    }
    n
}

unsafe extern "system" fn wndproc(hwnd: HWND, msg: u32, wparam: WPARAM, lparam: LPARAM) -> LRESULT {
    match msg {
        // Agree to end the session; WM_ENDSESSION follows.
        WM_QUERYENDSESSION => 1,
        // WM_ENDSESSION with wparam 0: the session is not ending after all.
        WM_CLOSE | WM_ENDSESSION if msg == WM_CLOSE || wparam != 0 => {
            if let Some(n) = CLOSE.get() {
                n.notify_one();
            }
            0
        }
        // SAFETY: the arguments are the ones Windows passed to this window procedure.
        _ => unsafe { DefWindowProcW(hwnd, msg, wparam, lparam) },
    }
}

fn run_window() {
    let class: Vec<u16> = "callsync-agent\0".encode_utf16().collect();
    // SAFETY: plain Win32 calls on this thread; `class` outlives the window, and the structs are
    // plain data for which all-zero is a valid starting value.
    unsafe {
        let instance = GetModuleHandleW(std::ptr::null());
        let mut wc: WNDCLASSW = std::mem::zeroed();
        wc.lpfnWndProc = Some(wndproc);
        wc.hInstance = instance;
        wc.lpszClassName = class.as_ptr();
        if RegisterClassW(&wc) == 0 {
            tracing::warn!("cannot register the close window's class");
            return;
        }
        // Never shown: a top-level window (message-only windows miss WM_ENDSESSION broadcasts).
        let hwnd = CreateWindowExW(
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
        );
        if hwnd.is_null() {
            tracing::warn!("cannot create the close window");
            return;
        }
        let mut msg: MSG = std::mem::zeroed();
        while GetMessageW(&mut msg, std::ptr::null_mut(), 0, 0) > 0 {
            TranslateMessage(&msg);
            DispatchMessageW(&msg);
        }
    }
}
