//! The integration tests, in one binary (one link instead of eleven): real sled files, real
//! HTTP against the simulated org, real call logs written, rotated and followed, real
//! `callsync` processes started and killed. The system tests (the .deb, the tray on a real
//! desktop) are the `system` binary.

#[path = "../common/mod.rs"]
mod common;
#[cfg(target_os = "linux")]
#[path = "../common/notifications.rs"]
mod notifications;
#[path = "../common/soak.rs"]
mod soak;

mod agent;
mod agent_org;
mod agent_softphones;
mod cache_index;
mod callers;
mod calllog;
mod calllog_model;
mod cli;
mod cli_sync;
mod crash;
mod follower_model;
mod lifecycle;
mod linphone_db_model;
mod linphone_live;
mod microsip_model;
mod network;
mod outbox;
mod packaging;
mod proxy;
mod schedule;
mod sync;
mod sync_model;
