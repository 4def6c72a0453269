//! Salesforce for callsync: the REST client ([`client`]), signing in and where the sign-in is
//! kept ([`auth`]), the sync engine that fills the cache ([`sync`]), and the writer that sends
//! the outbox ([`writer`]). What Salesforce answers, and the typed error, are
//! `callsync_core::wire`'s.

pub mod auth;
pub mod client;
pub mod sync;
pub mod writer;

pub use callsync_core::wire::{Secret, SfError, TokenResponse};
pub use client::{Client, ClientConfig, NetSettings};
