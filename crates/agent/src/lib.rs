//! The callsync agent: one process per user that follows the call logs, turns calls into
//! Tasks, sends them, keeps the cache in sync and pops the caller's name. Its core ([`core`])
//! publishes one state and takes requests; the tray ([`tray`]) and the control socket or pipe
//! ([`control`]) are its clients; [`popup`] shows screen pops and notices.

pub mod control;
mod core;
pub mod popup;
pub mod tray;
#[cfg(windows)]
pub mod winui;

pub use crate::core::{endpoints, run, AgentError, Endpoints, Handle};
