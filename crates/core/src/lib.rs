//! callsync's domain, with no I/O and no runtime: what the rest of callsync stores, reads,
//! sends and shows, and the rules between them. Everything here is a plain value or a pure
//! function, tested as tables.
//!
//! - [`phone`]: normalization to one key per number (`E164`, `PhoneKey`).
//! - [`record`]: Salesforce records as cached (`CachedRecord`, `RecordId`, `ObjectKind`).
//! - [`lookup`]: the seed's matching rules (`rank`) over index entries.
//! - [`event`]: what happens to a call (`CallEvent`) and the seed's call types.
//! - [`activity`]: a call's summary (`CallRecord::fold`) and the Task it becomes (`decide`).
//! - [`wire`]: Salesforce's answers as callsync reads them, and `SfError`.
//! - [`schedule`], [`state`], [`i18n`], [`pop`], [`errors`]: when to sync, what the agent
//!   shows, in which words, the screen pop, the integration error log's entries.

pub mod activity;
pub mod errors;
pub mod event;
pub mod i18n;
pub mod lookup;
pub mod phone;
pub mod pop;
pub mod record;
pub mod schedule;
pub mod state;
pub mod wire;
