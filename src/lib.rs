//! callsync: joins a call-center softphone to Salesforce. A local cache of Contacts, Accounts
//! (person accounts too) and Leads keyed by normalized phone number identifies callers
//! instantly and offline.
//!
//! Data flows one way: Salesforce → sync → [`cache`] → [`lookup`]; call log → call event →
//! activity (Task) → outbox → Salesforce.

pub mod activity;
pub mod agent;
pub mod app;
pub mod auth;
pub mod cache;
pub mod calllog;
pub mod config;
pub mod control;
pub mod doctor;
pub mod errorlog;
pub mod fsutil;
pub mod i18n;
pub mod import;
pub mod logging;
pub mod lookup;
pub mod outbox;
pub mod paths;
pub mod phone;
pub mod pipeline;
pub mod policy;
pub mod record;
pub mod salesforce;
pub mod schedule;
pub mod screenpop;
pub mod settings;
pub mod sim;
pub mod state;
pub mod support;
pub mod sync;
pub mod synth;
pub mod tray;
#[cfg(windows)]
pub mod winclose;
