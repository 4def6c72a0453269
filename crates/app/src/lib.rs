//! What callsync's CLI and agent share, so that each rule has one home: the configuration and
//! data folder turned into stores and a Salesforce client, the sign-in rule, a sync, the status
//! report ([`app`]); call events into Tasks ([`pipeline`]) and the record a call goes on changed
//! afterwards ([`pick`]); the checks and the support bundle;
//! logging.

pub mod app;
pub mod checks;
pub mod doctor;
pub mod logging;
pub mod pick;
pub mod pipeline;
pub mod support;

pub use app::App;
